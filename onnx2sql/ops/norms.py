"""Normalizations of convolutional networks: InstanceNormalization, GroupNormalization, LRN,
LpNormalization and MeanVarianceNormalization.

Instance and group statistics are LayerNormalization's (normalization/layer_norm.sql.j2): the
chunk rows sharing their first leading indices form a group. LRN sums squares over a window of
channels with a window function; the others compose reductions with an elementwise step.
"""
from __future__ import annotations

import math

import numpy as np

from onnx2sql.emit.sql import literal
from onnx2sql.graph.symbolic import as_dim, product, to_sql
from onnx2sql.graph.values import Value, shape_of
from onnx2sql.ops.context import LowerContext, NodeView
from onnx2sql.ops.elementwise import emit_elementwise
from onnx2sql.ops.nn import DOUBLE, channel_vector
from onnx2sql.ops.reduce import REDUCERS, emit_reduction, input_value
from onnx2sql.ops.registry import register
from onnx2sql.ops.shape import normalize_axes, normalize_axis, reshape_value


def normalize_groups(ctx: LowerContext, x: Value, groups: int, epsilon: float) -> Value:
    """(x - mean) / sqrt(var + epsilon) over the axes after the first `groups` (x at least that rank + 1)."""
    shape = shape_of(x)
    return ctx.emit("normalization/layer_norm.sql.j2", x.dtype, shape, src=ctx.ref(x), groups=groups,
                    count=product(shape[groups:]), epsilon=literal(epsilon, DOUBLE))


def scale_and_shift(ctx: LowerContext, y: Value, scale: Value, bias: Value, dtype: np.dtype) -> Value:
    """y * scale + bias, both broadcast as they are."""
    return emit_elementwise(ctx, "scale", [y, ctx.runtime(scale), ctx.runtime(bias)], dtype, expr="{0} * {1} + {2}")


@register("InstanceNormalization", since=6)
def lower_instance_norm(node: NodeView, ctx: LowerContext) -> list[Value]:
    x, scale, bias = (input_value(node, k) for k in range(3))
    if x.rank < 3:
        raise node.fail(f"the input must be [N, C, spatial...], got rank {x.rank}")
    y = normalize_groups(ctx, x, 2, float(node.attr("epsilon", 1e-5)))  # type: ignore[arg-type]
    return [scale_and_shift(ctx, y, channel_vector(ctx, scale, x.rank), channel_vector(ctx, bias, x.rank), x.dtype)]


@register("GroupNormalization", since=18)
def lower_group_norm(node: NodeView, ctx: LowerContext) -> list[Value]:
    """Channels split into num_groups groups, each normalized over its channels and spatial axes.
    Scale and bias hold one value per channel (opset 21) or per group (opset 18)."""
    x, scale, bias = (input_value(node, k) for k in range(3))
    if x.rank < 3:
        raise node.fail(f"the input must be [N, C, spatial...], got rank {x.rank}")
    groups = int(node.attr("num_groups"))  # type: ignore[arg-type]
    shape = shape_of(x)
    per_group = as_dim(shape[1]) / groups
    spatial = product(shape[2:])
    grouped = reshape_value(ctx, x, (shape[0], as_dim(groups), per_group * spatial))
    y = normalize_groups(ctx, grouped, 2, float(node.attr("epsilon", 1e-5)))  # type: ignore[arg-type]
    # [N, G, C / G, spatial] so that a per-group ([G, 1, 1]) or per-channel ([G, C / G, 1]) scale broadcasts.
    y = reshape_value(ctx, y, (shape[0], as_dim(groups), per_group, spatial))
    params_shape = (as_dim(groups), per_group if node.version >= 21 else as_dim(1), as_dim(1))
    params = [reshape_value(ctx, v, params_shape) for v in (scale, bias)]
    return [reshape_value(ctx, scale_and_shift(ctx, y, *params, x.dtype), shape)]


# ---------------------------------------------------------------- LRN

@register("LRN", since=1)
def lower_lrn(node: NodeView, ctx: LowerContext) -> list[Value]:
    """x / (bias + alpha / size * sum of squares over channels c - (size-1)//2 .. c + ceil((size-1)/2))^beta."""
    x = input_value(node)
    if x.rank < 3:
        raise node.fail(f"the input must be [N, C, spatial...], got rank {x.rank}")
    size = int(node.attr("size"))  # type: ignore[arg-type]
    alpha, beta, bias = (float(node.attr(name)) for name in ("alpha", "beta", "bias"))  # type: ignore[arg-type]
    return [ctx.emit("nn/lrn.sql.j2", x.dtype, shape_of(x), src=ctx.ref(x),
                     before=(size - 1) // 2, after=math.ceil((size - 1) / 2),
                     others=["i0"] + [f"i{k}" for k in range(2, x.rank)],
                     bias=literal(bias, DOUBLE), scale=literal(alpha / size, DOUBLE), beta=literal(beta, DOUBLE))]


# ---------------------------------------------------------------- LpNormalization, MeanVarianceNormalization

def reduce_kept(ctx: LowerContext, x: Value, axes: list[int], reducer: str, dtype: np.dtype) -> Value:
    """A REDUCERS aggregate over `axes`, kept as size-1 axes, as a `dtype` table."""
    rule = REDUCERS[reducer]
    fast = x.rank - 1 in axes
    count = to_sql(product([shape_of(x)[k] for k in axes]))
    agg = (rule.chunked if fast else rule.element).format(n=count, div="/")
    return emit_reduction(ctx, ctx.ref(x), axes, True, dtype, agg, fast)


@register("LpNormalization", since=1)
def lower_lp_norm(node: NodeView, ctx: LowerContext) -> list[Value]:
    x = input_value(node)
    axis = normalize_axis(node, int(node.attr("axis", -1)), x.rank)  # type: ignore[arg-type]
    p = int(node.attr("p", 2))  # type: ignore[arg-type]
    if p not in (1, 2):
        raise node.fail(f"p={p} is not 1 or 2")
    norm = reduce_kept(ctx, x, [axis], "ReduceL1" if p == 1 else "ReduceL2", DOUBLE)
    return [emit_elementwise(ctx, "LpNormalization", [ctx.runtime(x), norm], x.dtype,
                             expr="CASE WHEN {1} = 0 THEN 0 ELSE {0} / {1} END")]  # a zero vector stays zero


@register("MeanVarianceNormalization", since=9)
def lower_mean_variance_norm(node: NodeView, ctx: LowerContext) -> list[Value]:
    """(x - E[x]) / (sqrt(E[x^2] - E[x]^2) + 1e-9) over `axes`, statistics in DOUBLE."""
    x = input_value(node)
    axes = sorted(normalize_axes(node, list(node.attr("axes", [0, 2, 3])), x.rank))  # type: ignore[arg-type]
    mean = reduce_kept(ctx, x, axes, "ReduceMean", DOUBLE)
    square_sum = reduce_kept(ctx, x, axes, "ReduceSumSquare", DOUBLE)
    count = to_sql(product([shape_of(x)[k] for k in axes]))
    expr = f"({{0}} - {{1}}) / (sqrt(greatest({{2}} / {count} - {{1}} * {{1}}, 0)) + 1e-9)"
    return [emit_elementwise(ctx, "MeanVarianceNormalization", [ctx.runtime(x), mean, square_sum], x.dtype,
                             expr=expr)]
