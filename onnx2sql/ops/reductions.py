"""More reductions: ReduceProd, ReduceL1/L2, ReduceLogSum(Exp), ReduceSumSquare as rows of
reduce.REDUCERS (they share its lowering), and the running and one-hot ops CumSum, CumProd and
Hardmax, which number the elements of each line with a window function.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from onnx2sql.dialects import current
from onnx2sql.emit.sql import double_type, literal
from onnx2sql.graph.values import Known, Value, shape_of
from onnx2sql.ops.context import LowerContext, NodeView
from onnx2sql.ops.reduce import REDUCERS, Reducer, foldable, input_value, lower_reduce_axes_attribute, \
    lower_reduce_axes_input
from onnx2sql.ops.registry import register
from onnx2sql.ops.shape import normalize_axis, static_ints


def _of_mapped(reduce_fn: Callable[..., np.ndarray], element_fn: Callable[[np.ndarray], np.ndarray],
               outer: Callable[[np.ndarray], np.ndarray] = lambda y: y) -> Callable[..., np.ndarray]:
    """outer(reduce(element_fn(a))), computed in float64 for float inputs."""
    def run(array: np.ndarray, axis: tuple[int, ...], keepdims: bool) -> np.ndarray:
        wide = array.astype(np.float64) if array.dtype.kind == "f" else array
        return outer(reduce_fn(element_fn(wide), axis=axis, keepdims=keepdims))
    return run


def _mapped_sum(element: Callable[[str], str]) -> tuple[str, str]:
    """Sums of element(x) (SQL) over whole chunk lists s.v and over exploded elements s.x."""
    return f"sum(list_sum({current().map('s.v', element('x'))}))", f"sum({element('s.x')})"


def _square(x: str) -> str:
    return f"CAST({x} AS {double_type()}) * {x}"


def _exp(x: str) -> str:
    return f"exp(CAST({x} AS {double_type()}))"


REDUCERS.update({
    "ReduceProd": Reducer("product(list_aggregate(s.v, 'product'))", "product(s.x)", np.prod),
    "ReduceL1": Reducer(*_mapped_sum(lambda x: f"abs({x})"), _of_mapped(np.sum, np.abs)),
    "ReduceSumSquare": Reducer(*_mapped_sum(_square), _of_mapped(np.sum, np.square)),
    "ReduceL2": Reducer(*(f"sqrt({s})" for s in _mapped_sum(_square)), _of_mapped(np.sum, np.square, np.sqrt)),
    "ReduceLogSum": Reducer("ln(sum(list_sum(s.v)))", "ln(sum(s.x))", _of_mapped(np.sum, lambda a: a, np.log)),
    "ReduceLogSumExp": Reducer(*(f"ln({s})" for s in _mapped_sum(_exp)), _of_mapped(np.sum, np.exp, np.log)),
})

_MORE_REDUCTIONS = ["ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"]
register(_MORE_REDUCTIONS, since=1)(lower_reduce_axes_attribute)
register(_MORE_REDUCTIONS, since=18)(lower_reduce_axes_input)


# ---------------------------------------------------------------- CumSum, CumProd

CUMULATIVE = {"CumSum": ("sum", 0, np.cumsum), "CumProd": ("product", 1, np.cumprod)}


@register("CumSum", since=11)
@register("CumProd", since=26)
def lower_cumulative(node: NodeView, ctx: LowerContext) -> list[Value]:
    x = input_value(node)
    if x.rank == 0:
        raise node.fail("the input must have rank >= 1")
    axis_value = node.known_input(1, "axis")
    if axis_value is None or axis_value.array.size != 1:
        raise node.fail("axis must be a known tensor of one element")
    axis = normalize_axis(node, static_ints(node, axis_value.ints(), "axis")[0], x.rank)
    exclusive, reverse = bool(node.attr("exclusive", 0)), bool(node.attr("reverse", 0))
    agg, empty, fold = CUMULATIVE[node.op_type]
    arrays = foldable([x], shape_of(x))
    if arrays is not None:
        return [Known.of(_fold_cumulative(arrays[0], axis, exclusive, reverse, fold, empty), x.dtype)]
    return [ctx.emit("reductions/cumulative.sql.j2", x.dtype, shape_of(x), src=ctx.ref(x), axis=axis,
                     others=[f"i{k}" for k in range(x.rank) if k != axis], agg=agg,
                     empty=literal(empty, x.dtype), exclusive=exclusive, reverse=reverse)]


def _fold_cumulative(array: np.ndarray, axis: int, exclusive: bool, reverse: bool,
                     fold: Callable[..., np.ndarray], empty: int) -> np.ndarray:
    a = np.flip(array, axis) if reverse else array
    result = fold(a, axis=axis)
    if exclusive:
        # Shift by one along the axis: element k holds the run up to k - 1.
        start = np.full_like(np.take(result, [0], axis=axis), empty)
        result = np.concatenate([start, np.delete(result, -1, axis=axis)], axis=axis)
    return np.flip(result, axis) if reverse else result


# ---------------------------------------------------------------- Hardmax

@register("Hardmax", since=13)
def lower_hardmax(node: NodeView, ctx: LowerContext) -> list[Value]:
    x = input_value(node)
    axis = normalize_axis(node, int(node.attr("axis", -1)), x.rank)  # type: ignore[arg-type]
    arrays = foldable([x], shape_of(x))
    if arrays is not None:
        first = np.expand_dims(np.argmax(arrays[0], axis=axis), axis)
        one_hot = np.arange(arrays[0].shape[axis]).reshape([-1 if k == axis else 1 for k in range(x.rank)]) == first
        return [Known.of(one_hot.astype(x.dtype), x.dtype)]
    return [ctx.emit("reductions/hardmax.sql.j2", x.dtype, shape_of(x), src=ctx.ref(x), axis=axis,
                     others=[f"i{k}" for k in range(x.rank) if k != axis])]
