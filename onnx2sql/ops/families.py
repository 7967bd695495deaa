"""Imports every op-family module so that their lowerings register."""
from onnx2sql.ops import (  # noqa: F401
    constant,
    conv,
    elementwise,
    gather,
    indexing,
    generators,
    matmul,
    nn,
    norms,
    normalization,
    parametric,
    pool,
    rearrange,
    reduce,
    reductions,
    shape,
)
