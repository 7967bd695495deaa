"""The reference: a greedy loop in onnxruntime over the same ONNX file, past fed back each step."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from decoder_feeds import feeds, presents_as_past


def ort_greedy(model_dir: Path, prompt_ids: list[int], new_tokens: int) -> tuple[list[int], list[np.ndarray]]:
    model = model_dir / "model.onnx"
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    ids, past, mask = np.array([prompt_ids], dtype=np.int64), None, np.ones((1, len(prompt_ids)), np.int64)
    tokens, rows = [], []
    for _ in range(new_tokens):
        out = dict(zip(names, sess.run(names, feeds(model, ids, mask, past))))
        row = out["logits"][0, -1]
        rows.append(row)
        token = int(np.argmax(row))
        tokens.append(token)
        past, ids = presents_as_past(out), np.array([[token]], dtype=np.int64)
        mask = np.ones((1, mask.shape[1] + 1), np.int64)
    return tokens, rows
