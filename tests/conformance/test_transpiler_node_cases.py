"""Every onnx backend node case whose ops are all in the transpiler's op set runs in DuckDB and
matches the case's expected outputs (the onnx reference results) at the case's own tolerance."""
from __future__ import annotations

import pytest

import onnx2sql
from node_cases import TRANSPILER_OPS, all_cases, assert_matches, cases_within, feeds_and_expected, \
    uses_unsupported_type

# Cases left out, each with its reason. Beyond these, every case whose graph uses float16, bfloat16,
# float8, float4, int4/uint4, int2/uint2, string or complex tensors is left out (uses_unsupported_type):
# DuckDB has no column type for them, and the product targets float32 and integer models.
EXCLUDED: dict[str, str] = {
    "test_identity_opt": "optional-typed input: onnx2sql tensors are never optional values",
    "test_identity_sequence": "sequence-typed input: onnx2sql has no sequence values",
    "test_cast_FLOAT_to_STRING": "string tensors",
}

ALL = cases_within(TRANSPILER_OPS)
CASES = [name for name in ALL if name not in EXCLUDED and not uses_unsupported_type(all_cases()[name].model)]


def test_the_case_list_is_substantial() -> None:
    assert len(CASES) >= 450, f"only {len(CASES)} of {len(ALL)} cases run"


@pytest.mark.parametrize("name", CASES)
def test_node_case(name: str) -> None:
    case = all_cases()[name]
    feeds, expected = feeds_and_expected(case)
    assert_matches(case, onnx2sql.run(case.model, feeds, chunk_size=4), expected)
