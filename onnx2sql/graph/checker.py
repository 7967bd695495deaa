"""Structural validation before lowering: onnx's checker, plus what onnxruntime refuses and the
checker lets through (a graph with no outputs, an opset newer than any onnx defines)."""
from __future__ import annotations

from pathlib import Path

import onnx
import onnx.checker
import onnx.defs

from onnx2sql.errors import ModelError

PROTOBUF_LIMIT = 2**31  # a model serialises (and onnx's checker takes it in memory) only below 2 GB


def validate_model(proto: onnx.ModelProto, path: Path | None = None) -> None:
    """ModelError naming what is wrong, or nothing when the model is well formed."""
    where = f"{str(path)!r}" if path is not None else "the model"
    if not proto.graph.output:
        raise ModelError(f"{where} is not a valid ONNX model: its graph has no outputs")
    _check_opsets(proto, where)
    try:
        _run_checker(proto, path)
    except onnx.checker.ValidationError as exc:
        # The checker's first line says what is wrong; its "==> Context:" line names the node.
        found = "; ".join(line.strip().removeprefix("==> ") for line in str(exc).splitlines() if line.strip())
        raise ModelError(f"{where} is not a valid ONNX model: onnx's checker found: {found}") from exc


def _check_opsets(proto: onnx.ModelProto, where: str) -> None:
    newest = onnx.defs.onnx_opset_version()
    for opset in proto.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version > newest:
            raise ModelError(f"{where} imports ONNX opset {opset.version}, which does not exist "
                             f"(the newest is {newest})")


def serialized_size(proto: onnx.ModelProto) -> int:
    """The model's protobuf size; past 2 GB protobuf refuses to compute it, so that counts as 2 GB."""
    try:
        return proto.ByteSize()
    except Exception:  # protobuf's EncodeError: the message is over its 2 GB limit
        return PROTOBUF_LIMIT


def _run_checker(proto: onnx.ModelProto, path: Path | None) -> None:
    if serialized_size(proto) >= PROTOBUF_LIMIT:
        if path is not None:
            onnx.checker.check_model(str(path))  # reads the graph, with its external data, from disk
        return
    # The checker wants a type and a shape on every graph input and output; onnxruntime (and
    # onnx2sql) take a value of unknown type or shape, so those are filled in just while it runs.
    untyped, unshaped = [], []
    for value in list(proto.graph.input) + list(proto.graph.output):
        if not value.HasField("type"):
            untyped.append(value)
            value.type.tensor_type.elem_type = onnx.TensorProto.UNDEFINED
            value.type.tensor_type.shape.SetInParent()
        elif value.type.HasField("tensor_type") and not value.type.tensor_type.HasField("shape"):
            unshaped.append(value)
            value.type.tensor_type.shape.SetInParent()
    try:
        onnx.checker.check_model(proto)
    finally:
        for value in untyped:
            value.ClearField("type")
        for value in unshaped:
            value.type.tensor_type.ClearField("shape")
