"""tiny-llama3 in DuckDB equals onnxruntime on the same ONNX file: logits and every present.* within
1e-4, for prefill (past 0), decode (past > 0), several lengths and batch 2 with left padding. One
compiled database serves every case: nothing is recompiled per length."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import onnx2sql
from decoder_feeds import assert_same, feeds, ort_outputs, presents_as_past

@pytest.fixture(scope="module")
def compiled(tiny_llama3_dir: Path, tmp_path_factory) -> Path:
    # chunk 16: hidden 64 and head_dim 16 span several chunks, so chunked joins are exercised.
    return onnx2sql.compile(tiny_llama3_dir / "model.onnx", tmp_path_factory.mktemp("tiny") / "sql", chunk_size=16)


def tokens(batch: int, seq: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(3, 300, (batch, seq)).astype(np.int64)


@pytest.mark.parametrize("seq", [1, 5, 17])
def test_prefill(compiled: Path, tiny_llama3_dir: Path, seq: int) -> None:
    model = tiny_llama3_dir / "model.onnx"
    step = feeds(model, tokens(1, seq, seq))
    assert_same(onnx2sql.run(compiled, step), ort_outputs(model, step))


@pytest.mark.parametrize("prompt,new", [(6, 1), (4, 3)])
def test_decode_with_past(compiled: Path, tiny_llama3_dir: Path, prompt: int, new: int) -> None:
    model = tiny_llama3_dir / "model.onnx"
    past = presents_as_past(ort_outputs(model, feeds(model, tokens(1, prompt, 1))))
    step = feeds(model, tokens(1, new, 2), past=past)
    assert_same(onnx2sql.run(compiled, step), ort_outputs(model, step))


def test_batch_two_left_padded(compiled: Path, tiny_llama3_dir: Path) -> None:
    model = tiny_llama3_dir / "model.onnx"
    ids = tokens(2, 5, 3)
    mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], dtype=np.int64)
    ids[0, :2] = 0
    prefill = feeds(model, ids, mask)
    want = ort_outputs(model, prefill)
    assert_same(onnx2sql.run(compiled, prefill), want)
    # and one decode step on top of the padded batch
    step = feeds(model, tokens(2, 1, 4), np.concatenate([mask, np.ones((2, 1), np.int64)], axis=1),
                 past=presents_as_past(want))
    assert_same(onnx2sql.run(compiled, step), ort_outputs(model, step))
