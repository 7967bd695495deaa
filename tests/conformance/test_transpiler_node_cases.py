"""Every onnx backend node case whose ops are all in the transpiler's op set runs in DuckDB and
matches the case's expected outputs (the onnx reference results) at the case's own tolerance."""
from __future__ import annotations

import numpy as np
import pytest

import onnx2sql
from node_cases import TRANSPILER_OPS, all_cases, cases_within, feeds_and_expected

# Cases left out, each with its reason.
EXCLUDED: dict[str, str] = {
}

CASES = [name for name in cases_within(TRANSPILER_OPS) if name not in EXCLUDED]


def test_the_case_list_is_substantial() -> None:
    assert len(CASES) >= 300


@pytest.mark.parametrize("name", CASES)
def test_node_case(name: str) -> None:
    case = all_cases()[name]
    feeds, expected = feeds_and_expected(case)
    got = onnx2sql.run(case.model, feeds, chunk_size=4)
    assert list(got) == list(expected)
    for key, want in expected.items():
        have = got[key]
        assert have.shape == want.shape, f"{key}: shape {have.shape} != {want.shape}"
        assert have.dtype == want.dtype, f"{key}: dtype {have.dtype} != {want.dtype}"
        if want.dtype.kind in "fc":
            np.testing.assert_allclose(have, want, rtol=max(case.rtol, 1e-5), atol=max(case.atol, 1e-6), err_msg=key)
        else:
            np.testing.assert_array_equal(have, want, err_msg=key)
