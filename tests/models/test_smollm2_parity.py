"""SmolLM2-135M in DuckDB equals onnxruntime on the same ONNX file: logits and present.* within 1e-3
for a prompt (past 0) and a decode step on top of it."""
from __future__ import annotations

from pathlib import Path

import numpy as np

import onnx2sql
from decoder_feeds import feeds, ort_outputs, presents_as_past

PROMPT_IDS = np.array([[504, 3575, 282, 4649, 314]], dtype=np.int64)  # "The capital of France is"


def assert_close(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert list(got) == list(want)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-3, atol=1e-3, err_msg=name)


def test_prefill_and_decode_step(smollm2_dir: Path, smollm2_compiled: Path) -> None:
    model = smollm2_dir / "model.onnx"
    prefill = feeds(model, PROMPT_IDS)
    want = ort_outputs(model, prefill)
    got = onnx2sql.run(smollm2_compiled, prefill)
    assert_close(got, want)
    assert int(np.argmax(got["logits"][0, -1])) == int(np.argmax(want["logits"][0, -1]))
    step = feeds(model, np.array([[int(np.argmax(want["logits"][0, -1]))]]),
                 np.ones((1, 6), np.int64), presents_as_past(want))
    assert_close(onnx2sql.run(smollm2_compiled, step), ort_outputs(model, step))
