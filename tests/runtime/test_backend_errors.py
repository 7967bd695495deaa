"""Bad input gets the same clear error on every backend: a missing or unknown feed, a wrong element
type or rank, a token id beyond the vocabulary (checked before any SQL runs), on tiny-llama3."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import onnx2sql
from decoder_feeds import feeds, prompt


def _drop(step: dict[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    return {k: v for k, v in step.items() if k != name}


BAD_FEEDS = [
    ("missing", lambda s: _drop(s, "position_ids"), r"missing feed\(s\) for graph input\(s\) \['position_ids'\]"),
    ("unknown", lambda s: {**s, "extra": np.zeros(1)}, r"feed\(s\) \['extra'\] name no graph input"),
    ("dtype", lambda s: {**s, "input_ids": s["input_ids"].astype(np.int32)}, "input 'input_ids' must be int64, got int32"),
    ("rank", lambda s: {**s, "attention_mask": s["attention_mask"][0]}, "input 'attention_mask' must have rank 2"),
    ("vocabulary", lambda s: {**s, "input_ids": s["input_ids"] + 10_000_000}, "input_ids"),
]


@pytest.mark.parametrize("backend", [
    "duckdb",
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("postgres", marks=pytest.mark.postgres),
])
@pytest.mark.parametrize(("case", "spoil", "message"), BAD_FEEDS, ids=[c[0] for c in BAD_FEEDS])
def test_bad_feeds_get_the_same_error_on_every_backend(tiny_llama3_dir: Path, request: pytest.FixtureRequest,
                                                       backend: str, case: str, spoil, message: str) -> None:
    model = tiny_llama3_dir / "model.onnx"
    db = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    step = spoil(feeds(model, prompt(1, 3, 1)))
    with pytest.raises(onnx2sql.InputError, match=message) as raised:
        onnx2sql.run(model, step, backend=backend, db=db)
    if backend != "duckdb":
        with pytest.raises(onnx2sql.InputError) as on_duckdb:
            onnx2sql.run(model, step)
        assert str(raised.value) == str(on_duckdb.value)
