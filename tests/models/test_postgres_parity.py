"""tiny-llama3 compiled for PostgreSQL and run in a real server equals onnxruntime on the same ONNX
file: logits and every present.* within 1e-4 for prefill, decode with a past, and batch 2 with left
padding; and eight greedy tokens, step by step through the KV cache, are onnxruntime's. Products
run through pgvector unless kernels="sql" is asked for."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import onnx2sql
from decoder_feeds import assert_same, feeds, greedy, ort_outputs, presents_as_past, prompt

# A real PostgreSQL server; not run again by the pure-SQL pass of `make test` (no DuckDB kernels here).
pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("kernels", ["pgvector", "sql"])
@pytest.mark.parametrize("seq", [1, 7])
def test_prefill(tiny_llama3_dir: Path, postgres_url: str, seq: int, kernels: str) -> None:
    """Products through pgvector (the default) and in plain SQL."""
    model = tiny_llama3_dir / "model.onnx"
    step = feeds(model, prompt(1, seq, seq))
    assert_same(onnx2sql.run(model, step, backend="postgres", db=postgres_url, kernels=kernels),
                ort_outputs(model, step))


def test_decode_with_a_left_padded_batch(tiny_llama3_dir: Path, postgres_url: str) -> None:
    model = tiny_llama3_dir / "model.onnx"
    mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], dtype=np.int64)
    first = feeds(model, prompt(2, 5, 3), mask)
    past = presents_as_past(ort_outputs(model, first))
    step = feeds(model, prompt(2, 1, 4), np.concatenate([mask, np.ones((2, 1), np.int64)], axis=1), past)
    assert_same(onnx2sql.run(model, step, backend="postgres", db=postgres_url, chunk_size=16), ort_outputs(model, step))


def test_greedy_tokens_are_onnxruntimes(tiny_llama3_dir: Path, postgres_url: str) -> None:
    model = tiny_llama3_dir / "model.onnx"
    ids = prompt(1, 6, 11)
    want = greedy(model, ids, 8, lambda step: ort_outputs(model, step))
    got = greedy(model, ids, 8, lambda step: onnx2sql.run(model, step, backend="postgres", db=postgres_url))
    assert got == want
