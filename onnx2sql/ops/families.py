"""Imports every op-family module so that their lowerings register."""
from onnx2sql.ops import elementwise  # noqa: F401
