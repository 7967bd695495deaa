"""Reading ONNX models: from a path (external data, >2 GB) or a ModelProto, with clear errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper

from onnx2sql.errors import ModelError


def load_model(model: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    path = Path(model)
    if path.is_dir():
        raise ModelError(f"model {str(path)!r} is a folder, not an .onnx file")
    if not path.is_file():
        raise ModelError(f"model file {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise ModelError(f"model file {str(path)!r} is empty (0 bytes), not an ONNX model")
    try:
        # External data is loaded from beside the file; >2 GB models are fine this way.
        return onnx.load(str(path), load_external_data=True)
    except Exception as exc:  # onnx raises DecodeError, OSError, ValueError ...
        raise ModelError(f"cannot read ONNX model {str(path)!r}: {exc}") from exc


def model_opsets(model: onnx.ModelProto) -> dict[str, int]:
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
    if "" not in opsets:
        raise ModelError("the model imports no default ONNX opset")
    return opsets


def initializer_array(tensor: onnx.TensorProto) -> np.ndarray:
    try:
        return onnx.numpy_helper.to_array(tensor)
    except Exception as exc:
        raise ModelError(f"initializer {tensor.name!r} cannot be read: {exc}") from exc
