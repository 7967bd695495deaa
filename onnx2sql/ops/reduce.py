"""Reductions: ReduceSum/Mean/Max/Min, ArgMax/ArgMin, Softmax/LogSoftmax and TopK.

A reduction groups the rows of a tensor table by the axes it keeps. When the last axis is among
the reduced ones the chunk lists are aggregated whole (`sum(list_sum(v))`), with no explode;
otherwise the tensor is exploded to one row per element and grouped by the kept axes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from onnx2sql.graph.symbolic import Shape, as_dim, product, static_value, to_sql
from onnx2sql.graph.values import Known, Runtime, Value, shape_of
from onnx2sql.ops.context import LowerContext, NodeView, TableRef
from onnx2sql.ops.elementwise import FOLD_LIMIT
from onnx2sql.ops.registry import register
from onnx2sql.ops.shape import normalize_axes, normalize_axis

INT64 = np.dtype(np.int64)


# ---------------------------------------------------------------- shared by the op families

def foldable(values: Sequence[Value | None], out_shape: Shape) -> list[np.ndarray | None] | None:
    """The numeric arrays of the inputs when all are known and the result is small enough to
    compute now; None when the op must run in SQL. Absent inputs stay None."""
    present = [v for v in values if v is not None]
    if not all(isinstance(v, Known) and not v.symbolic for v in present):
        return None
    size = product(out_shape)
    if static_value(size) is None or static_value(size) > FOLD_LIMIT:
        return None
    return [v.array if isinstance(v, Known) else None for v in values]


def reduced_shape(shape: Shape, axes: Sequence[int], keepdims: bool) -> Shape:
    return tuple(as_dim(1) if k in axes else d for k, d in enumerate(shape) if keepdims or k not in axes)


def input_value(node: NodeView, k: int = 0) -> Value:
    value = node.input(k)
    if value is None:
        raise node.fail(f"input {k} is required")
    return value


# ---------------------------------------------------------------- ReduceSum / Mean / Max / Min

@dataclass(frozen=True)
class Reducer:
    """An aggregate over whole chunk lists `s.v` and over exploded elements `s.x`. `{n}` stands
    for the number of reduced elements, `{div}` for the division of the element type (integer
    division truncates, like onnxruntime's); `fold` computes the same with numpy."""

    chunked: str
    element: str
    fold: Callable[..., np.ndarray]


def _fold_extreme(fn: Callable[..., np.ndarray], low: bool) -> Callable[..., np.ndarray]:
    # ONNX (since 18) defines an empty Max as the lowest value of the type, an empty Min the highest.
    def run(array: np.ndarray, axis: tuple[int, ...], keepdims: bool) -> np.ndarray:
        if array.dtype.kind == "f":
            initial = -np.inf if low else np.inf
        elif array.dtype == np.bool_:
            initial = not low
        else:
            info = np.iinfo(array.dtype)
            initial = info.min if low else info.max
        return fn(array, axis=axis, keepdims=keepdims, initial=initial)
    return run


def _fold_mean(array: np.ndarray, axis: tuple[int, ...], keepdims: bool) -> np.ndarray:
    # onnxruntime's mean of an empty set is 0, and an integer mean truncates.
    count = max(int(np.prod([array.shape[k] for k in axis])), 1)
    mean = np.sum(array, axis=axis, keepdims=keepdims, dtype=np.float64) / count
    return mean if array.dtype.kind == "f" else np.trunc(mean)


REDUCERS: dict[str, Reducer] = {
    "ReduceSum": Reducer("sum(list_sum(s.v))", "sum(s.x)", np.sum),
    "ReduceMean": Reducer("sum(list_sum(s.v)) {div} {n}", "sum(s.x) {div} {n}", _fold_mean),
    "ReduceMax": Reducer("max(list_max(s.v))", "max(s.x)", _fold_extreme(np.max, low=True)),
    "ReduceMin": Reducer("min(list_min(s.v))", "min(s.x)", _fold_extreme(np.min, low=False)),
}


@register(["ReduceMean", "ReduceMax", "ReduceMin"], since=11)
@register("ReduceSum", since=11)
def lower_reduce_axes_attribute(node: NodeView, ctx: LowerContext) -> list[Value]:
    axes = node.attr("axes")
    return [reduce(node, ctx, list(axes) if axes is not None else [], noop_when_empty=False)]


@register("ReduceSum", since=13)
@register(["ReduceMean", "ReduceMax", "ReduceMin"], since=18)
def lower_reduce_axes_input(node: NodeView, ctx: LowerContext) -> list[Value]:
    axes = node.known_input(1, "axes")
    noop = bool(node.attr("noop_with_empty_axes", 0))
    return [reduce(node, ctx, axes.ints() if axes is not None else [], noop_when_empty=noop)]


def reduce(node: NodeView, ctx: LowerContext, axes: list[int], noop_when_empty: bool) -> Value:
    data = input_value(node)
    rank = len(shape_of(data))
    if not axes and (noop_when_empty or rank == 0):
        return data  # nothing to reduce: noop_with_empty_axes, or a scalar
    if any(not isinstance(a, int) for a in axes):
        raise node.fail("axes must be integers known at compile time")
    axes = sorted(normalize_axes(node, axes, rank)) if axes else list(range(rank))
    keepdims = bool(node.attr("keepdims", 1))
    reducer = REDUCERS[node.op_type]
    out_shape = reduced_shape(shape_of(data), axes, keepdims)
    folded = _fold_reduction(node, data, axes, keepdims, reducer, out_shape)
    if folded is not None:
        return folded
    count = product([shape_of(data)[k] for k in axes])
    src = ctx.ref(data)
    fast = (rank - 1) in axes
    division = "/" if data.dtype.kind == "f" else "//"
    agg = (reducer.chunked if fast else reducer.element).format(n=to_sql(count), div=division)
    return emit_reduction(ctx, src, axes, keepdims, data.dtype, agg, fast)


def _fold_reduction(node: NodeView, data: Value, axes: list[int], keepdims: bool, reducer: Reducer,
                    out_shape: Shape) -> Known | None:
    arrays = foldable([data], out_shape)
    if arrays is None:
        if any(static_value(shape_of(data)[k]) == 0 for k in axes):
            # An empty reduced axis leaves no rows to aggregate; only a static shape can be filled now.
            arrays = _empty_input(node, data)
        else:
            return None
    with np.errstate(all="ignore"):
        result = reducer.fold(arrays[0], axis=tuple(axes), keepdims=keepdims)
    return Known.of(np.asarray(result).astype(data.dtype), data.dtype)


def _empty_input(node: NodeView, data: Value) -> list[np.ndarray]:
    dims = [static_value(d) for d in shape_of(data)]
    if any(d is None for d in dims):
        raise node.fail("reducing an empty axis of a tensor with symbolic dims is not supported")
    return [np.zeros(dims, dtype=data.dtype)]


def emit_reduction(ctx: LowerContext, src: TableRef, axes: list[int], keepdims: bool, dtype: np.dtype,
                   agg: str, fast: bool) -> Runtime:
    """One statement: `agg` over the rows of `src` grouped by the axes not in `axes`.
    `fast`: the last axis is reduced and `agg` reads whole chunk lists `s.v`; otherwise it reads
    the exploded elements `s.x` (and may name the index columns `s.i<k>`)."""
    rank = src.rank
    columns = ["0" if k in axes else f"s.i{k}" for k in range(rank) if keepdims or k not in axes]
    group = [f"s.i{k}" for k in range(rank) if k not in axes]
    return ctx.emit(
        "reduce/reduce.sql.j2", dtype, reduced_shape(src.shape, axes, keepdims),
        src=src, columns=columns, group=group, agg=agg, fast=fast,
        unit_last=keepdims and (rank - 1) in axes, recomputable=True,
    )


# ---------------------------------------------------------------- ArgMax / ArgMin

@register(["ArgMax", "ArgMin"], since=11)
def lower_arg_extreme(node: NodeView, ctx: LowerContext) -> list[Value]:
    data = input_value(node)
    rank = len(shape_of(data))
    axis = normalize_axis(node, int(node.attr("axis", 0)), rank)
    keepdims = bool(node.attr("keepdims", 1))
    last = bool(node.attr("select_last_index", 0))
    largest = node.op_type == "ArgMax"
    out_shape = reduced_shape(shape_of(data), [axis], keepdims)
    if static_value(shape_of(data)[axis]) == 0:
        raise node.fail(f"{node.op_type} over an empty axis has no answer")
    arrays = foldable([data], out_shape)
    if arrays is not None:
        return [Known.of(_fold_arg(arrays[0], axis, keepdims, largest, last), INT64)]
    # Ties go to the first index (or the last with select_last_index), as onnxruntime does.
    agg = f"first(s.i{axis} ORDER BY s.x {'DESC' if largest else 'ASC'}, s.i{axis} {'DESC' if last else 'ASC'})"
    return [emit_reduction(ctx, ctx.ref(data), [axis], keepdims, INT64, agg, fast=False)]


def _fold_arg(array: np.ndarray, axis: int, keepdims: bool, largest: bool, last: bool) -> np.ndarray:
    pick = np.argmax if largest else np.argmin
    if last:
        flipped = np.flip(array, axis=axis)
        result = array.shape[axis] - 1 - pick(flipped, axis=axis)
    else:
        result = pick(array, axis=axis)
    return np.expand_dims(result, axis) if keepdims else result


# ---------------------------------------------------------------- Softmax / LogSoftmax

@register(["Softmax", "LogSoftmax"], since=13)
def lower_softmax(node: NodeView, ctx: LowerContext) -> list[Value]:
    data = input_value(node)
    shape = shape_of(data)
    axis = normalize_axis(node, int(node.attr("axis", -1)), len(shape))
    log = node.op_type == "LogSoftmax"
    arrays = foldable([data], shape)
    if arrays is not None:
        return [Known.of(_fold_softmax(arrays[0], axis, log), data.dtype)]
    src = ctx.ref(data)
    # Every row subtracts its max before exp: exp never overflows, masked (-inf) entries give 0.
    return [ctx.emit("reduce/softmax.sql.j2", data.dtype, shape, src=src, axis=axis, log=log,
                     others=[f"i{k}" for k in range(src.rank) if k != axis])]


def _fold_softmax(array: np.ndarray, axis: int, log: bool) -> np.ndarray:
    with np.errstate(all="ignore"):
        shifted = array.astype(np.float64) - np.max(array, axis=axis, keepdims=True)
        total = np.sum(np.exp(shifted), axis=axis, keepdims=True)
        return shifted - np.log(total) if log else np.exp(shifted) / total


# ---------------------------------------------------------------- TopK

@register("TopK", since=11)
def lower_topk(node: NodeView, ctx: LowerContext) -> list[Value]:
    data = input_value(node)
    shape = shape_of(data)
    axis = normalize_axis(node, int(node.attr("axis", -1)), len(shape))
    k_value = node.known_input(1, "K")
    if k_value is None or k_value.array.size != 1:
        raise node.fail("K must be a known tensor of one element")
    k = as_dim(k_value.ints()[0])
    size = static_value(shape[axis])
    if static_value(k) is not None and (static_value(k) < 0 or (size is not None and static_value(k) > size)):
        raise node.fail(f"K = {k} is outside [0, {shape[axis]}]")
    largest = bool(node.attr("largest", 1))
    out_shape = tuple(k if j == axis else d for j, d in enumerate(shape))
    arrays = foldable([data], out_shape)
    if arrays is not None:
        values, indices = _fold_topk(arrays[0], int(k), axis, largest)
        return [Known.of(values, data.dtype), Known.of(indices, INT64)]
    # sorted=0 leaves the order free; the sorted order is one valid answer.
    src = ctx.ref(data)
    params = dict(src=src, axis=axis, k=k, largest=largest, others=[f"i{j}" for j in range(src.rank) if j != axis])
    return [ctx.emit("reduce/topk.sql.j2", data.dtype, out_shape, want="values", **params),
            ctx.emit("reduce/topk.sql.j2", INT64, out_shape, want="indices", **params)]


def _fold_topk(array: np.ndarray, k: int, axis: int, largest: bool) -> tuple[np.ndarray, np.ndarray]:
    # A stable sort keeps equal values in index order: ties go to the lower index. Descending:
    # sort the reversed axis ascending and reverse the result, which restores the index order.
    if largest:
        flipped = np.argsort(np.flip(array, axis=axis), axis=axis, kind="stable")
        order = array.shape[axis] - 1 - np.flip(flipped, axis=axis)
    else:
        order = np.argsort(array, axis=axis, kind="stable")
    indices = np.take(order, np.arange(k), axis=axis)
    return np.take_along_axis(array, indices, axis=axis), indices.astype(INT64)
