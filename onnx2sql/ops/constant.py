"""Constant: a value known at compile time, from whichever attribute holds it."""
from __future__ import annotations

import numpy as np
import onnx.numpy_helper

from onnx2sql.graph.values import Known, Value
from onnx2sql.ops.context import LowerContext, NodeView
from onnx2sql.ops.registry import register

_SCALAR_ATTRS = {"value_float": np.float32, "value_int": np.int64}
_LIST_ATTRS = {"value_floats": np.float32, "value_ints": np.int64}


@register("Constant", since=1)
def lower_constant(node: NodeView, ctx: LowerContext) -> list[Value]:
    if node.has_attr("value"):
        array = onnx.numpy_helper.to_array(node.attr("value"))
        return [Known.of(array, array.dtype)]
    for name, dtype in _SCALAR_ATTRS.items():
        if node.has_attr(name):
            return [Known.of(np.array(node.attr(name), dtype=dtype), dtype)]
    for name, dtype in _LIST_ATTRS.items():
        if node.has_attr(name):
            return [Known.of(np.array(list(node.attr(name)), dtype=dtype), dtype)]
    present = [a.name for a in node.node.attribute]
    raise node.fail(f"value attribute {present or 'missing'} is not supported (tensor, float(s) and int(s) are)")
