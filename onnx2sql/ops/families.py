"""Imports every op-family module so that their lowerings register."""
from onnx2sql.ops import (  # noqa: F401
    constant,
    elementwise,
    gather,
    generators,
    matmul,
    normalization,
    reduce,
    shape,
)
