"""The inputs of a batch of sequences of different lengths, as the exporters' reference code builds
them: prompts padded on the left, the padding masked, and positions that count each sequence's own
tokens. Shared by generation in DuckDB and by the benchmark's onnxruntime engine, so both run the
same batch."""
from __future__ import annotations

from typing import Sequence

import numpy as np

PAD_ID = 0  # the padding's token id: any id the embedding has, since the mask hides it


def left_padded(prompts: Sequence[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids [batch, longest prompt], each prompt at the right end, and the attention mask (0 on
    the padding)."""
    width = max(len(p) for p in prompts)
    ids = np.full((len(prompts), width), PAD_ID, np.int64)
    mask = np.zeros((len(prompts), width), np.int64)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = prompt
        mask[row, width - len(prompt):] = 1
    return ids, mask


def positions(mask: np.ndarray, new: int) -> np.ndarray:
    """Position ids of the last `new` columns of `mask`: a sequence's own tokens counted from 0; the
    padding takes position 1 (its rows are masked anyway)."""
    counted = np.cumsum(mask, axis=1) - 1
    counted[mask == 0] = 1
    return counted[:, mask.shape[1] - new:]


def grown(mask: np.ndarray) -> np.ndarray:
    """The mask after every sequence took one more token."""
    return np.concatenate([mask, np.ones((mask.shape[0], 1), np.int64)], axis=1)
