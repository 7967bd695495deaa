"""int8 weights with a float32 scale per group of GROUP consecutive values of a row (symmetric,
round to nearest): the row layout the native kernel onnx2sql_tile_matvec_q8 multiplies
(kernels/onnx2sql_kernels.h). Weight i of a row is q[i] * scale[i // GROUP]."""
from __future__ import annotations

import numpy as np

GROUP = 32  # O2S_Q8_GROUP in kernels/onnx2sql_kernels.h
LEVELS = 127  # q in [-127, 127]: symmetric, so -scale * 127 and +scale * 127 are both exact


def group_count(k: int) -> int:
    return -(-k // GROUP)


def row_bytes(k: int) -> int:
    """Bytes of one int8 row of k weights: its float32 scales, then its int8 values."""
    return 4 * group_count(k) + k


def quantize_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(q int8 [n, k], scales float32 [n, groups]) of a float matrix [n, k]."""
    n, k = matrix.shape
    groups = group_count(k)
    padded = np.zeros((n, groups * GROUP), dtype=np.float32)
    padded[:, :k] = matrix
    blocks = padded.reshape(n, groups, GROUP)
    scales = (np.abs(blocks).max(axis=-1) / LEVELS).astype(np.float32)
    # An all-zero group keeps scale 0 and q 0 (no division by zero).
    safe = np.where(scales > 0, scales, np.float32(1))[..., None]
    q = np.clip(np.rint(blocks / safe), -LEVELS, LEVELS).astype(np.int8)
    return q.reshape(n, groups * GROUP)[:, :k], scales


def dequantize_rows(q: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The float32 weights an int8 matrix stands for."""
    n, k = q.shape
    return (q.astype(np.float32) * np.repeat(scales, GROUP, axis=1)[:, :k]).astype(np.float32)


def encode_rows(matrix: np.ndarray) -> np.ndarray:
    """The matrix [n, k] as n int8 rows of row_bytes(k) bytes each (uint8 [n, row_bytes(k)])."""
    q, scales = quantize_rows(matrix)
    return np.concatenate([scales.astype("<f4").view(np.uint8), q.view(np.uint8)], axis=1)
