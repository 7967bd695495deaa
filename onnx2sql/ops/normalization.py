"""LayerNormalization and Trilu.

LayerNormalization over axes [axis, rank) groups the chunk rows by their first `axis` leading
indices: the statistics are aggregates of whole chunk lists, with no explode. Scale and bias are
a broadcast elementwise step.
"""
from __future__ import annotations

import numpy as np
import onnx

from onnx2sql.emit.sql import literal
from onnx2sql.graph.symbolic import as_dim, product
from onnx2sql.graph.values import Known, Value, shape_of
from onnx2sql.ops.context import LowerContext, NodeView
from onnx2sql.ops.elementwise import emit_elementwise
from onnx2sql.ops.reduce import foldable, input_value
from onnx2sql.ops.registry import register
from onnx2sql.ops.shape import normalize_axis

# Statistics run in DOUBLE: at least as precise as the float or double stash types.
STASH_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE}


@register("LayerNormalization", since=17)
def lower_layer_norm(node: NodeView, ctx: LowerContext) -> list[Value]:
    x, scale, bias = input_value(node, 0), input_value(node, 1), node.input(2)
    if int(node.attr("stash_type", 1)) not in STASH_TYPES:
        raise node.fail(f"stash_type {node.attr('stash_type')} is not float or double")
    shape = shape_of(x)
    axis = normalize_axis(node, int(node.attr("axis", -1)), len(shape))
    epsilon = float(node.attr("epsilon", 1e-5))
    arrays = foldable([x, scale, bias], shape)
    if arrays is not None:
        return [Known.of(y, x.dtype) for y in _fold_layer_norm(*arrays, axis, epsilon)]
    src = ctx.ref(x)
    stats = dict(src=src, groups=axis, count=product(shape[axis:]), epsilon=literal(epsilon, np.dtype(np.float64)))
    normalized = ctx.emit("normalization/layer_norm.sql.j2", x.dtype, shape, **stats)
    inputs = [normalized, scale] + ([bias] if bias is not None else [])
    expr = "{0} * {1}" + (" + {2}" if bias is not None else "")
    outputs: list[Value] = [emit_elementwise(ctx, "LayerNormalization", inputs, x.dtype, expr=expr)]
    stat_shape = tuple(shape[:axis]) + (as_dim(1),) * (len(shape) - axis)
    for k, stat in ((1, "mean"), (2, "inv_std")):
        if node.wants_output(k):
            outputs.append(ctx.emit("normalization/layer_norm_stat.sql.j2", x.dtype, stat_shape, stat=stat, **stats))
    return outputs


def _fold_layer_norm(x: np.ndarray, scale: np.ndarray, bias: np.ndarray | None, axis: int,
                     epsilon: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y, Mean and InvStdDev."""
    axes = tuple(range(axis, x.ndim))
    wide = x.astype(np.float64)
    mean = wide.mean(axis=axes, keepdims=True)
    inv_std = 1 / np.sqrt(((wide - mean) ** 2).mean(axis=axes, keepdims=True) + epsilon)
    y = (wide - mean) * inv_std * scale
    return (y + bias if bias is not None else y), mean, inv_std


@register("Trilu", since=14)
def lower_trilu(node: NodeView, ctx: LowerContext) -> list[Value]:
    x = input_value(node)
    if x.rank < 2:
        raise node.fail(f"the input must have rank >= 2, got {x.rank}")
    k_value = node.known_input(1, "k")
    if k_value is not None and k_value.array.size != 1:
        raise node.fail("k must hold one element")
    k = as_dim(k_value.ints()[0]) if k_value is not None else as_dim(0)
    upper = bool(node.attr("upper", 1))
    arrays = foldable([x], shape_of(x))
    if arrays is not None and k.is_Integer:
        return [Known.of((np.triu if upper else np.tril)(arrays[0], int(k)), x.dtype)]
    return [ctx.emit("normalization/trilu.sql.j2", x.dtype, shape_of(x), src=ctx.ref(x), upper=upper, k=k,
                     zero=literal(0, x.dtype))]
