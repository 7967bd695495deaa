"""Reading ONNX models: from a path (external data, >2 GB) or a ModelProto, with clear errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper

from onnx2sql.errors import ModelError


def load_model(model: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    return load_model_with_data_files(model)[0]


def load_model_with_data_files(model: str | Path | onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """The model, with the external data files it names (relative to its folder) loaded into it."""
    if isinstance(model, onnx.ModelProto):
        return model, []
    path = Path(model)
    if path.is_dir():
        raise ModelError(f"model {str(path)!r} is a folder, not an .onnx file")
    if not path.is_file():
        raise ModelError(f"model file {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise ModelError(f"model file {str(path)!r} is empty (0 bytes), not an ONNX model")
    try:
        proto = onnx.load(str(path), load_external_data=False)
        files = external_data_files(proto)  # loading the data forgets where it came from
        # External data is loaded from beside the file; >2 GB models are fine this way.
        onnx.load_external_data_for_model(proto, str(path.parent))
    except Exception as exc:  # onnx raises DecodeError, OSError, ValueError ...
        raise ModelError(f"cannot read ONNX model {str(path)!r}: {exc}") from exc
    return proto, files


def external_data_files(proto: onnx.ModelProto) -> list[str]:
    """The files a model's tensors keep their data in, relative to the model's folder."""
    locations = set()
    for tensor in _all_tensors(proto.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            locations.update(entry.value for entry in tensor.external_data if entry.key == "location")
    return sorted(locations)


def _all_tensors(graph: onnx.GraphProto):
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            for sub in list(attribute.graphs) + ([attribute.g] if attribute.HasField("g") else []):
                yield from _all_tensors(sub)


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
