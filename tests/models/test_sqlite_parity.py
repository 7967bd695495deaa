"""tiny-llama3 compiled for SQLite (JSON arrays) equals onnxruntime on the same ONNX file: logits
and every present.* within 1e-4 for prefill, decode with a past, and batch 2 with left padding;
and eight greedy tokens, step by step through the KV cache, are onnxruntime's. Products run
through the SQLite extension built from kernels/ unless kernels="sql" is asked for."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import onnx2sql
from decoder_feeds import assert_same, feeds, greedy, ort_outputs, presents_as_past, prompt

pytestmark = pytest.mark.sqlite  # runs once: DuckDB's kernels play no part here


@pytest.mark.parametrize("kernels", ["native", "sql"])
@pytest.mark.parametrize("seq", [1, 7])
def test_prefill(tiny_llama3_dir: Path, seq: int, kernels: str) -> None:
    model = tiny_llama3_dir / "model.onnx"
    step = feeds(model, prompt(1, seq, seq))
    assert_same(onnx2sql.run(model, step, backend="sqlite", kernels=kernels), ort_outputs(model, step))


def test_decode_with_a_left_padded_batch(tiny_llama3_dir: Path) -> None:
    model = tiny_llama3_dir / "model.onnx"
    mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], dtype=np.int64)
    first = feeds(model, prompt(2, 5, 3), mask)
    past = presents_as_past(ort_outputs(model, first))
    step = feeds(model, prompt(2, 1, 4), np.concatenate([mask, np.ones((2, 1), np.int64)], axis=1), past)
    assert_same(onnx2sql.run(model, step, backend="sqlite", chunk_size=16), ort_outputs(model, step))


def test_greedy_tokens_are_onnxruntimes(tiny_llama3_dir: Path) -> None:
    model = tiny_llama3_dir / "model.onnx"
    ids = prompt(1, 6, 11)
    want = greedy(model, ids, 8, lambda step: ort_outputs(model, step))
    got = greedy(model, ids, 8, lambda step: onnx2sql.run(model, step, backend="sqlite"))
    assert got == want


def test_a_database_file_keeps_nothing_of_a_run(tiny_llama3_dir: Path, tmp_path: Path) -> None:
    """run() in a database file: its weights and tensors are temporary, the user's tables stay."""
    import apsw

    db = tmp_path / "user.sqlite"
    con = apsw.Connection(str(db))
    con.execute("CREATE TABLE mine (x INTEGER); INSERT INTO mine VALUES (7)")
    con.close()
    model = tiny_llama3_dir / "model.onnx"
    step = feeds(model, prompt(1, 3, 5))
    assert_same(onnx2sql.run(model, step, backend="sqlite", db=str(db)), ort_outputs(model, step))
    con = apsw.Connection(str(db))
    assert [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["mine"]
    assert list(con.execute("SELECT x FROM mine")) == [(7,)]
