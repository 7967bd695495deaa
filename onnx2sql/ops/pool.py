"""Pools: MaxPool (with its Indices output), AveragePool, LpPool and the global pools.

A windowed pool crosses the grid of output indices with the kernel offsets and joins the input
element each offset reads (see conv.Window); padding positions find no element, so MAX and the
average without count_include_pad simply skip them. The global pools are reductions over the
spatial axes.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from onnx2sql.dialects import current
from onnx2sql.emit.sql import double_type, in_dialect
from onnx2sql.graph.symbolic import product, to_sql
from onnx2sql.graph.values import Known, Value, shape_of
from onnx2sql.ops.context import LowerContext, NodeView
from onnx2sql.ops.conv import Window, windows
from onnx2sql.ops.reduce import emit_reduction, foldable, input_value, reduced_shape
from onnx2sql.ops.registry import register
from onnx2sql.ops.shape import static_ints

INT64 = np.dtype(np.int64)


def pool_geometry(node: NodeView, x: Value) -> list[Window]:
    if x.rank < 3:
        raise node.fail(f"the input must be [N, C, spatial...], got rank {x.rank}")
    kernel = static_ints(node, list(node.attr("kernel_shape") or []), "kernel_shape")  # type: ignore[arg-type]
    if len(kernel) != x.rank - 2:
        raise node.fail(f"kernel_shape {kernel} does not match {x.rank - 2} spatial axes")
    return windows(node, shape_of(x)[2:], kernel, ceil_mode=bool(node.attr("ceil_mode", 0)))


def sources(geometry: Sequence[Window]) -> list[str]:
    return [w.source(f"o{k}.j", f"k{k}.j") for k, w in enumerate(geometry)]


def emit_pool(ctx: LowerContext, x: Value, geometry: Sequence[Window], agg: str, dtype: np.dtype) -> Value:
    shape = shape_of(x)
    out_shape = shape[:2] + tuple(w.out for w in geometry)
    return ctx.emit(
        "pool/pool.sql.j2", dtype, out_shape,
        x=ctx.ref(x), batch=to_sql(shape[0]), channels=to_sql(shape[1]),
        out_counts=[to_sql(w.out) for w in geometry], kernel=[w.kernel for w in geometry],
        sources=sources(geometry), agg=agg,
    )


@register("MaxPool", since=1)
def lower_max_pool(node: NodeView, ctx: LowerContext) -> list[Value]:
    x = input_value(node)
    geometry = pool_geometry(node, x)
    outputs = [emit_pool(ctx, x, geometry, "max(x.x)", x.dtype)]
    if node.wants_output(1):
        # The first largest element in window order (row-major), as onnxruntime picks it.
        position = _flat_index(shape_of(x), geometry, column_major=False)
        index = _flat_index(shape_of(x), geometry, column_major=bool(node.attr("storage_order", 0)))
        agg = f"first({index} ORDER BY x.x DESC NULLS LAST, {position})"
        outputs.append(emit_pool(ctx, x, geometry, agg, INT64))
    return outputs


def _flat_index(shape: tuple, geometry: Sequence[Window], column_major: bool) -> str:
    """SQL of an element's position in the flattened input: (n * C + c) * spatial size plus its
    spatial position, row-major or (storage_order=1) with the first spatial axis fastest."""
    spatial = list(shape[2:])
    channel = f"(n.j * {to_sql(shape[1])} + ch.j) * {to_sql(product(spatial))}"
    axes = range(len(spatial))
    terms = []
    for k in axes:
        faster = spatial[:k] if column_major else spatial[k + 1:]
        terms.append(f"({sources(geometry)[k]}) * {to_sql(product(faster))}")
    return f"({channel} + {' + '.join(terms)})"


@register("AveragePool", since=1)
def lower_average_pool(node: NodeView, ctx: LowerContext) -> list[Value]:
    x = input_value(node)
    geometry = pool_geometry(node, x)
    if node.attr("count_include_pad", 0):
        # The divisor counts the explicit padding but not ceil_mode's overhang past it.
        inside = " AND ".join(w.in_padded_range(s) for w, s in zip(geometry, sources(geometry)))
        agg = f"sum(CAST(x.x AS {double_type()})) / count(*) FILTER (WHERE {inside})"
    else:
        agg = "avg(x.x)"
    return [emit_pool(ctx, x, geometry, agg, x.dtype)]


@register("LpPool", since=2)
def lower_lp_pool(node: NodeView, ctx: LowerContext) -> list[Value]:
    x = input_value(node)
    p = float(node.attr("p", 2))  # type: ignore[arg-type]
    agg = f"power(sum(power(abs(CAST(x.x AS {double_type()})), {p!r})), 1 / {p!r})"
    return [emit_pool(ctx, x, pool_geometry(node, x), agg, x.dtype)]


# ---------------------------------------------------------------- global pools

GLOBAL_POOLS = {
    # (aggregate of whole chunk lists s.v, numpy fold)
    "GlobalAveragePool": ("sum(list_sum(CAST(s.v AS DOUBLE[]))) / {n}", np.mean),
    "GlobalMaxPool": ("max(list_max(s.v))", np.max),
}


@register(["GlobalAveragePool", "GlobalMaxPool"], since=1)
def lower_global_pool(node: NodeView, ctx: LowerContext) -> list[Value]:
    agg, fold = GLOBAL_POOLS[node.op_type]
    return [global_pool(node, ctx, in_dialect(agg), lambda a, axes: fold(a, axis=axes, keepdims=True))]


@register("GlobalLpPool", since=2)
def lower_global_lp_pool(node: NodeView, ctx: LowerContext) -> list[Value]:
    p = float(node.attr("p", 2))  # type: ignore[arg-type]
    element = f"power(abs(CAST(x AS {double_type()})), {p!r})"
    agg = f"power(sum(list_sum({current().map('s.v', element, 'x', 'q')})), 1 / {p!r})"
    return [global_pool(node, ctx, agg, lambda a, axes: np.sum(np.abs(a) ** p, axis=axes, keepdims=True) ** (1 / p))]


def global_pool(node: NodeView, ctx: LowerContext, agg: str,
                fold: Callable[[np.ndarray, tuple[int, ...]], np.ndarray]) -> Value:
    """`agg` over every spatial axis of [N, C, spatial...], which stay as size 1."""
    x = input_value(node)
    if x.rank < 3:
        raise node.fail(f"the input must be [N, C, spatial...], got rank {x.rank}")
    axes = list(range(2, x.rank))
    shape = shape_of(x)
    arrays = foldable([x], reduced_shape(shape, axes, True))
    if arrays is not None:
        return Known.of(np.asarray(fold(arrays[0], tuple(axes))).astype(x.dtype), x.dtype)
    count = to_sql(product(shape[2:]))
    return emit_reduction(ctx, ctx.ref(x), axes, True, x.dtype, agg.format(n=count), fast=True)
