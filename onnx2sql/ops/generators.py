"""Generators: Range and ConstantOfShape. They fold into known values when the result is small
and its size is a number; otherwise one statement builds the chunks from range tables."""
from __future__ import annotations

import math

import numpy as np
import onnx.numpy_helper
import sympy

from onnx2sql.emit.sql import is_supported_dtype, literal
from onnx2sql.graph.symbolic import Dim, as_dim, static_value, to_sql
from onnx2sql.graph.values import Known, Value
from onnx2sql.ops.context import LowerContext, NodeView
from onnx2sql.ops.shape import foldable, int_input, register_versions, simplified, static_shape


def scalar_input(node: NodeView, k: int, what: str) -> object:
    """A compile-time scalar: a number, or a sympy expression of the symbolic dims."""
    value = node.known_input(k, what)
    if value is None or value.array.size != 1:
        raise node.fail(f"{what} must be a scalar known at compile time")
    x = value.array.reshape(-1)[0]
    if isinstance(x, sympy.Basic):
        return int(x) if x.is_Integer else x
    return x.item() if isinstance(x, np.generic) else x


def range_length(node: NodeView, start: object, limit: object, delta: object, dtype: np.dtype) -> Dim:
    """max(ceil((limit - start) / delta), 0), symbolic when start or limit is."""
    if dtype.kind == "f":
        span = float(np.asarray(limit, dtype) - np.asarray(start, dtype))
        return as_dim(max(math.ceil(span / float(delta)), 0))  # type: ignore[arg-type]
    if static_value(as_dim(delta)) is None:
        raise node.fail("delta must be a number known at compile time")
    return simplified(sympy.Max(sympy.ceiling((as_dim(limit) - as_dim(start)) / as_dim(delta)), 0))


def number_literal(x: object, dtype: np.dtype) -> str:
    """SQL of a range bound: floats in DOUBLE (rounded once at the end), ints as dims."""
    return literal(x, np.dtype(np.float64)) if dtype.kind == "f" else to_sql(as_dim(x))


def range_values(start: object, delta: object, n: int, dtype: np.dtype) -> np.ndarray:
    """start + k * delta for k < n; floats computed in float64 and rounded once, as in SQL."""
    if dtype.kind == "f":
        return (np.float64(start) + np.arange(n, dtype=np.float64) * np.float64(delta)).astype(dtype)
    return (int(start) + np.arange(n, dtype=np.int64) * int(delta)).astype(dtype)  # type: ignore[call-overload]


@register_versions("Range", 11)
def lower_range(node: NodeView, ctx: LowerContext) -> list[Value]:
    start, limit, delta = (scalar_input(node, k, what) for k, what in enumerate(("start", "limit", "delta")))
    dtype = node.inputs[0].dtype  # type: ignore[union-attr]
    if not isinstance(delta, sympy.Basic) and delta == 0:
        raise node.fail("delta must not be 0")
    length = range_length(node, start, limit, delta, dtype)
    if foldable((length,)) and not any(isinstance(x, sympy.Basic) for x in (start, delta)):
        return [Known.of(range_values(start, delta, int(length), dtype), dtype)]
    return [ctx.emit("generators/range.sql.j2", dtype, (length,), length=to_sql(length),
                     start=number_literal(start, dtype), delta=number_literal(delta, dtype))]


@register_versions("ConstantOfShape", 9, 20, 21)
def lower_constant_of_shape(node: NodeView, ctx: LowerContext) -> list[Value]:
    dims = [as_dim(d) for d in int_input(node, 0, "shape") or []]
    if any(static_value(d) is not None and static_value(d) < 0 for d in dims):  # type: ignore[operator]
        raise node.fail(f"shape {[str(d) for d in dims]} has a negative dim")
    tensor = node.attr("value")
    array = onnx.numpy_helper.to_array(tensor) if tensor is not None else np.zeros(1, np.float32)
    if array.size != 1:
        raise node.fail(f"value must hold one element, it holds {array.size}")
    if not is_supported_dtype(array.dtype):
        raise node.fail(f"value of element type {array.dtype.name} is not supported")
    x = array.reshape(-1)[0]
    if not dims or foldable(dims):  # a scalar has no axis to build in SQL
        return [Known.of(np.full(static_shape(dims), x, dtype=array.dtype), array.dtype)]
    return [ctx.emit("generators/constant_of_shape.sql.j2", array.dtype, tuple(dims),
                     ranges=[to_sql(d) for d in dims[:-1]], length=to_sql(dims[-1]),
                     value=literal(x, array.dtype))]
