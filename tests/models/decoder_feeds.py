"""Feeds for an Optimum text-generation-with-past export, and an onnxruntime reference run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort


def past_specs(model_path: Path) -> list[tuple[str, int, int]]:
    """(name, kv_heads, head_dim) of every past_key_values.* input."""
    model = onnx.load(str(model_path), load_external_data=False)
    specs = []
    for inp in model.graph.input:
        if inp.name.startswith("past_key_values."):
            dims = inp.type.tensor_type.shape.dim
            specs.append((inp.name, dims[1].dim_value, dims[3].dim_value))
    return specs


def feeds(model_path: Path, input_ids: np.ndarray, mask: np.ndarray | None = None,
          past: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Feeds for a step: left-padding aware position ids (as transformers computes them)."""
    batch, seq = input_ids.shape
    past_len = next(iter(past.values())).shape[2] if past else 0
    if mask is None:
        mask = np.ones((batch, past_len + seq), dtype=np.int64)
    positions = np.cumsum(mask, axis=1) - 1
    positions[mask == 0] = 1
    out = {"input_ids": input_ids.astype(np.int64), "attention_mask": mask.astype(np.int64),
           "position_ids": positions[:, -seq:].astype(np.int64)}
    for name, heads, head_dim in past_specs(model_path):
        out[name] = past[name] if past else np.zeros((batch, heads, 0, head_dim), dtype=np.float32)
    return out


def presents_as_past(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k.replace("present.", "past_key_values."): v for k, v in outputs.items() if k.startswith("present.")}


def ort_outputs(model_path: Path, step_feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, step_feeds)))


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray], tol: float = 1e-4) -> None:
    """The same outputs, in the same order and shapes, every value within `tol` (rtol and atol)."""
    assert list(got) == list(want)
    for name, value in want.items():
        assert got[name].shape == value.shape, name
        np.testing.assert_allclose(got[name], value, err_msg=name, rtol=tol, atol=tol)

def prompt(batch: int, seq: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(3, 300, (batch, seq)).astype(np.int64)


def greedy(model: Path, ids: np.ndarray, count: int, run) -> list[int]:
    """`count` greedy tokens, each step feeding the previous step's presents back as the past."""
    step, out_ids = feeds(model, ids), []
    for _ in range(count):
        outputs = run(step)
        token = int(np.argmax(outputs["logits"][0, -1]))
        out_ids.append(token)
        mask = np.ones((1, step["attention_mask"].shape[1] + 1), dtype=np.int64)
        step = feeds(model, np.array([[token]], dtype=np.int64), mask, presents_as_past(outputs))
    return out_ids
