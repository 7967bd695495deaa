"""Layers of convolutional networks around Conv and the pools: BatchNormalization, Clip, Pad, Dropout.

Per-channel parameters ([C]) are reshaped to [C, 1, ...] so that they broadcast over the
channel axis of [N, C, spatial...]; the layer is then one elementwise statement.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from onnx2sql.dialects import current
from onnx2sql.emit.sql import double_type, literal
from onnx2sql.graph.symbolic import Dim, as_dim, product, static_value, to_sql
from onnx2sql.graph.values import Known, Value, shape_of
from onnx2sql.ops.context import LowerContext, NodeView
from onnx2sql.ops.elementwise import emit_elementwise
from onnx2sql.ops.parametric import apply_expression
from onnx2sql.ops.reduce import emit_reduction, input_value
from onnx2sql.ops.registry import register
from onnx2sql.ops.shape import normalize_axes, reshape_value, static_ints

DOUBLE = np.dtype(np.float64)
BOOL = np.dtype(np.bool_)


def channel_vector(ctx: LowerContext, value: Value, rank: int) -> Value:
    """A per-channel vector [C] shaped [C, 1, ...] to broadcast against a rank-`rank` [N, C, ...] tensor."""
    return reshape_value(ctx, value, shape_of(value) + (as_dim(1),) * (rank - 2))


def text_attr(node: NodeView, name: str) -> str:
    value = node.attr(name)
    return value.decode() if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------- BatchNormalization

def _fold_batch_norm(epsilon: float) -> Callable[..., np.ndarray]:
    return lambda x, scale, bias, mean, var: (x - mean) / np.sqrt(var + epsilon) * scale + bias


def normalize_channels(ctx: LowerContext, x: Value, scale: Value, bias: Value, mean: Value, var: Value,
                       epsilon: float) -> Value:
    """(x - mean) / sqrt(var + epsilon) * scale + bias, every parameter per channel (axis 1)."""
    params = [channel_vector(ctx, v, x.rank) for v in (scale, bias, mean, var)]
    sql = f"({{0}} - {{3}}) / sqrt({{4}} + {literal(epsilon, DOUBLE)}) * {{1}} + {{2}}"
    return apply_expression(ctx, "BatchNormalization", [x, *params], x.dtype, sql, _fold_batch_norm(epsilon))


@register("BatchNormalization", since=6)
def lower_batch_norm(node: NodeView, ctx: LowerContext) -> list[Value]:
    x, scale, bias, mean, var = (input_value(node, k) for k in range(5))
    if x.rank < 2:
        raise node.fail(f"the input must have rank >= 2 ([N, C, ...]), got {x.rank}")
    if node.version < 7 and not node.attr("is_test", 0):
        raise node.fail("is_test=0 (training statistics of opset 6) is not supported")
    if node.has_attr("spatial") and not node.attr("spatial"):
        raise node.fail("spatial=0 (statistics per element, not per channel) is not supported")
    epsilon = float(node.attr("epsilon", 1e-5))  # type: ignore[arg-type]
    if node.version >= 14 and node.attr("training_mode", 0):
        return _batch_norm_training(node, ctx, x, scale, bias, mean, var, epsilon)
    if node.output_count > 1:
        raise node.fail("the running statistics outputs exist only in training mode")
    return [normalize_channels(ctx, x, scale, bias, mean, var, epsilon)]


def _batch_norm_training(node: NodeView, ctx: LowerContext, x: Value, scale: Value, bias: Value, mean: Value,
                         var: Value, epsilon: float) -> list[Value]:
    """Training mode normalizes with the batch's own statistics and returns the running ones:
    input * momentum + batch * (1 - momentum)."""
    momentum = float(node.attr("momentum", 0.9))  # type: ignore[arg-type]
    batch_mean, batch_var = channel_statistic(ctx, x, "mean"), channel_statistic(ctx, x, "var")
    outputs = [normalize_channels(ctx, x, scale, bias, batch_mean, batch_var, epsilon)]
    running = f"{{0}} * {literal(momentum, DOUBLE)} + {{1}} * {literal(1 - momentum, DOUBLE)}"
    for k, (given, batch) in enumerate(((mean, batch_mean), (var, batch_var)), start=1):
        if node.wants_output(k):
            outputs.append(emit_elementwise(ctx, "BatchNormalization", [ctx.runtime(given), batch], x.dtype,
                                            expr=running))
    return outputs


def channel_statistic(ctx: LowerContext, x: Value, stat: str) -> Value:
    """The mean or the (population) variance of each channel of [N, C, ...]: shape [C]."""
    shape = shape_of(x)
    axes = [k for k in range(len(shape)) if k != 1]
    n = to_sql(product([shape[k] for k in axes]))
    fast = len(shape) > 2  # the last axis is reduced: aggregate whole chunk lists
    double = double_type()
    total = f"sum(list_sum({current().cast_list('s.v', double)}))" if fast else f"sum(CAST(s.x AS {double}))"
    squares = (f"sum(list_sum({current().map('s.v', f'CAST(x AS {double}) * x')}))" if fast
               else f"sum(CAST(s.x AS {double}) * s.x)")
    agg = f"{total} / {n}" if stat == "mean" else f"{squares} / {n} - ({total} / {n}) * ({total} / {n})"
    return emit_reduction(ctx, ctx.ref(x), axes, False, x.dtype, agg, fast)


# ---------------------------------------------------------------- Clip

def _bounded(ctx: LowerContext, x: Value, low: Value | None, high: Value | None) -> Value:
    """least(greatest(x, low), high) with either bound absent; low > high gives high, as ONNX says."""
    inputs, sql = [x], "{0}"
    for bound, fn in ((low, "greatest"), (high, "least")):
        if bound is not None:
            inputs.append(bound)
            sql = f"{fn}({sql}, {{{len(inputs) - 1}}})"

    def fold(a: np.ndarray, *bounds: np.ndarray) -> np.ndarray:
        given = iter(bounds)
        a = np.maximum(a, next(given)) if low is not None else a
        return np.minimum(a, next(given)) if high is not None else a

    return apply_expression(ctx, "Clip", inputs, x.dtype, sql, fold)


@register("Clip", since=6)
def lower_clip_attributes(node: NodeView, ctx: LowerContext) -> list[Value]:
    x = input_value(node)
    low, high = (Known.of(np.array(node.attr(name)), x.dtype) for name in ("min", "max"))
    return [_bounded(ctx, x, low, high)]


@register("Clip", since=11)
def lower_clip(node: NodeView, ctx: LowerContext) -> list[Value]:
    return [_bounded(ctx, input_value(node), node.input(1), node.input(2))]


# ---------------------------------------------------------------- Pad

def pad_source(mode: str, column: str, begin: Dim, dim: Dim) -> str:
    """SQL of the input index that output index `column` reads along an axis padded by `begin`."""
    t, d = f"({column} - {to_sql(begin)})", to_sql(dim)
    if mode == "constant":
        return t  # outside [0, dim) nothing is read: the constant fills in
    if mode == "edge":
        return f"least(greatest({t}, 0), {d} - 1)"
    if mode == "reflect":
        return f"CASE WHEN {t} < 0 THEN -{t} WHEN {t} >= {d} THEN 2 * ({d} - 1) - {t} ELSE {t} END"
    return f"(({t} % {d}) + {d}) % {d}"  # wrap


def pad_amounts(node: NodeView, rank: int) -> tuple[list[int], list[int]]:
    """Pads before and after each axis, from the attribute (opset < 11) or the inputs."""
    if node.version < 11:
        pads, axes = list(node.attr("pads")), list(range(rank))  # type: ignore[arg-type]
    else:
        given = node.known_input(1, "pads")
        pads = static_ints(node, given.ints() if given is not None else [], "pads")
        axes_value = node.known_input(3, "axes")
        axes = (normalize_axes(node, static_ints(node, axes_value.ints(), "axes"), rank)
                if axes_value is not None else list(range(rank)))
    if len(pads) != 2 * len(axes):
        raise node.fail(f"{len(pads)} pads for {len(axes)} axes (two per axis are needed)")
    begin, end = [0] * rank, [0] * rank
    for k, axis in enumerate(axes):
        begin[axis], end[axis] = pads[k], pads[len(axes) + k]
    return begin, end


def pad_fill(node: NodeView, dtype: np.dtype) -> str:
    if node.version < 11:
        return literal(node.attr("value", 0.0), dtype)
    value = node.known_input(2, "constant_value")
    if value is None or value.array.size == 0:
        return literal(0, dtype)
    return literal(value.array.reshape(-1)[0], dtype)


@register("Pad", since=2)
def lower_pad(node: NodeView, ctx: LowerContext) -> list[Value]:
    x = input_value(node)
    shape = shape_of(x)
    mode = text_attr(node, "mode")
    if mode not in ("constant", "reflect", "edge", "wrap") or (mode == "wrap" and node.version < 19):
        raise node.fail(f"mode={mode!r} is not supported")
    begin, end = pad_amounts(node, len(shape))
    if not any(begin) and not any(end):
        return [x]
    if mode == "reflect" and any(_too_wide(b, e, d) for b, e, d in zip(begin, end, shape)):
        raise node.fail("reflect padding must be narrower than the padded axis")
    out_shape = tuple(d + b + e for d, b, e in zip(shape, begin, end))
    sources = [pad_source(mode, f"r{k}.j", as_dim(b), d) if b or e else f"r{k}.j"
               for k, (b, e, d) in enumerate(zip(begin, end, shape))]
    fill = pad_fill(node, x.dtype) if mode == "constant" else ""
    return [ctx.emit("nn/pad.sql.j2", x.dtype, out_shape, src=ctx.ref(x), counts=[to_sql(d) for d in out_shape],
                     sources=sources, fill=fill)]


def _too_wide(begin: int, end: int, dim: Dim) -> bool:
    size = static_value(dim)
    return size is not None and max(begin, end) >= size


# ---------------------------------------------------------------- Dropout

@register("Dropout", since=7)
def lower_dropout(node: NodeView, ctx: LowerContext) -> list[Value]:
    """Inference: the input unchanged and a mask of ones. Training with a ratio above 0 draws a
    random mask, which a compiled program cannot reproduce."""
    x = input_value(node)
    if node.version >= 12:
        ratio, training = node.known_input(1, "ratio"), node.known_input(2, "training_mode")
        if training is not None and bool(training.array.reshape(-1)[0]) and \
                (ratio is None or float(ratio.array.reshape(-1)[0]) > 0):
            raise node.fail("training mode draws a random mask")
    outputs: list[Value] = [x]
    if node.wants_output(1):
        mask_type = BOOL if node.version >= 10 else x.dtype
        outputs.append(_ones_like(ctx, x, mask_type))
    return outputs


def _ones_like(ctx: LowerContext, x: Value, dtype: np.dtype) -> Value:
    dims = [static_value(d) for d in shape_of(x)]
    if isinstance(x, Known) and None not in dims:
        return Known.of(np.ones(dims, dtype=dtype), dtype)
    return emit_elementwise(ctx, "Dropout", [ctx.runtime(x)], dtype, expr=literal(1, dtype))

