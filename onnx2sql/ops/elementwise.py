"""Elementwise ops: one SQL expression each, broadcast joins, and compile-time folding.

Each op is a row of a table: its element expression over {0}, {1}, ... and its numpy/sympy
folding rule for inputs known at compile time (shape arithmetic is mostly these ops).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import onnx
import onnx.helper
import sympy

from onnx2sql.emit.sql import in_dialect, int_div, literal
from onnx2sql.graph.symbolic import Shape
from onnx2sql.graph.values import Known, Runtime, Value, shape_of
from onnx2sql.ops.broadcast import broadcast_shapes
from onnx2sql.ops.fusion import Recipe, emit_recipe
from onnx2sql.ops.context import LowerContext, LoweringProblem, NodeView
from onnx2sql.ops.registry import register

FOLD_LIMIT = 1 << 20  # fold known values up to this many elements; larger ones run in SQL

BOOL = np.dtype(np.bool_)

# Element expressions. Float maths runs in DOUBLE where DuckDB promotes, then rounds to the
# output type once: for + - * / of float32 inputs that gives exactly the IEEE float32 result.
FLOAT_EXPR: dict[str, str] = {
    "Add": "{0} + {1}", "Sub": "{0} - {1}", "Mul": "{0} * {1}", "Div": "{0} / {1}",
    "Pow": "pow({0}, {1})",
    "Neg": "-{0}", "Abs": "abs({0})", "Sqrt": "sqrt({0})", "Exp": "exp({0})",
    "Log": "CASE WHEN {0} > 0 THEN ln({0}) WHEN {0} = 0 THEN '-inf'::DOUBLE ELSE 'nan'::DOUBLE END",
    "Cos": "cos({0})", "Sin": "sin({0})", "Tanh": "tanh({0})", "Reciprocal": "1 / {0}",
    "Sigmoid": "1 / (1 + exp(-CAST({0} AS DOUBLE)))", "Relu": "greatest({0}, 0)",
    "Erf": "onnx_erf({0})", "Floor": "floor({0})", "Ceil": "ceil({0})",
    "IsNaN": "isnan({0})", "IsInf": "isinf({0})",
    "Softplus": "ln(1 + exp(CAST({0} AS DOUBLE)))",
    "Acos": "acos({0})", "Asin": "asin({0})", "Atan": "atan({0})", "Tan": "tan({0})",
    "Cosh": "cosh({0})", "Sinh": "sinh({0})", "Acosh": "acosh({0})", "Asinh": "asinh({0})",
    "Atanh": "atanh({0})", "Sign": "sign({0})", "Round": "round_even({0}, 0)",
    "Softsign": "{0} / (1 + abs({0}))", "HardSwish": "{0} * greatest(0, least(1, {0} / 6 + 0.5))",
    "Mish": "{0} * tanh(ln(1 + exp(CAST({0} AS DOUBLE))))",
    "PRelu": "CASE WHEN {0} < 0 THEN {0} * {1} ELSE {0} END",
}
INT_EXPR: dict[str, str] = {
    "Add": "{0} + {1}", "Sub": "{0} - {1}", "Mul": "{0} * {1}", "Div": "{0} // {1}",
    "Pow": "pow({0}, {1})", "Neg": "-{0}", "Abs": "abs({0})",
    "Sign": "sign({0})", "PRelu": "CASE WHEN {0} < 0 THEN {0} * {1} ELSE {0} END",
    "BitwiseAnd": "{0} & {1}", "BitwiseOr": "{0} | {1}", "BitwiseXor": "xor({0}, {1})", "BitwiseNot": "~{0}",
}
ANY_EXPR: dict[str, str] = {
    "Equal": "{0} = {1}", "Less": "{0} < {1}", "LessOrEqual": "{0} <= {1}",
    "Greater": "{0} > {1}", "GreaterOrEqual": "{0} >= {1}",
    "And": "{0} AND {1}", "Or": "{0} OR {1}", "Xor": "{0} <> {1}", "Not": "NOT {0}",
    "Where": "CASE WHEN {0} THEN {1} ELSE {2} END",
}
COMPARISONS = {"Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "IsNaN", "IsInf"}
LOGICAL = {"And", "Or", "Xor", "Not"}


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # ONNX integer division truncates toward zero (C semantics), numpy's // floors.
    return np.where((a < 0) != (b < 0), -(np.abs(a) // np.abs(b)), np.abs(a) // np.abs(b))


NUMERIC_FOLD: dict[str, Callable[..., np.ndarray]] = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Pow": np.power,
    "Neg": np.negative, "Abs": np.abs, "Sqrt": np.sqrt, "Exp": np.exp, "Log": np.log,
    "Cos": np.cos, "Sin": np.sin, "Tanh": np.tanh, "Reciprocal": np.reciprocal,
    "Sigmoid": lambda x: 1 / (1 + np.exp(-x)), "Relu": lambda x: np.maximum(x, 0),
    "Erf": _erf, "Floor": np.floor, "Ceil": np.ceil, "IsNaN": np.isnan, "IsInf": np.isinf,
    "Softplus": lambda x: np.log1p(np.exp(x)),
    "Acos": np.arccos, "Asin": np.arcsin, "Atan": np.arctan, "Tan": np.tan, "Cosh": np.cosh,
    "Sinh": np.sinh, "Acosh": np.arccosh, "Asinh": np.arcsinh, "Atanh": np.arctanh, "Sign": np.sign,
    "Round": np.round, "Softsign": lambda x: x / (1 + np.abs(x)),
    "HardSwish": lambda x: x * np.clip(x / 6 + 0.5, 0, 1), "Mish": lambda x: x * np.tanh(np.log1p(np.exp(x))),
    "PRelu": lambda x, slope: np.where(x < 0, x * slope, x),
    "BitwiseAnd": np.bitwise_and, "BitwiseOr": np.bitwise_or, "BitwiseXor": np.bitwise_xor,
    "BitwiseNot": np.invert,
    "Equal": np.equal, "Less": np.less, "LessOrEqual": np.less_equal, "Greater": np.greater,
    "GreaterOrEqual": np.greater_equal, "And": np.logical_and, "Or": np.logical_or,
    "Xor": np.logical_xor, "Not": np.logical_not, "Where": np.where,
}


def _sym(fn: Callable[..., object]) -> Callable[..., np.ndarray]:
    return np.vectorize(fn, otypes=[object])


# Folding rules for entries that are sympy expressions (shape arithmetic over symbolic dims).
SYMBOLIC_FOLD: dict[str, Callable[..., np.ndarray]] = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Neg": np.negative,
    "Div": _sym(lambda a, b: sympy.floor(sympy.sympify(a) / b)),
    "Abs": _sym(lambda a: sympy.Abs(a)),
    "Equal": _sym(lambda a, b: sympy.Eq(a, b)), "Less": _sym(lambda a, b: sympy.Lt(a, b)),
    "LessOrEqual": _sym(lambda a, b: sympy.Le(a, b)), "Greater": _sym(lambda a, b: sympy.Gt(a, b)),
    "GreaterOrEqual": _sym(lambda a, b: sympy.Ge(a, b)),
    "And": _sym(lambda a, b: sympy.And(a, b)), "Or": _sym(lambda a, b: sympy.Or(a, b)),
    "Not": _sym(lambda a: sympy.Not(a)),
    "Where": _sym(lambda c, a, b: sympy.Piecewise((a, c), (b, True))),
    "Max": _sym(lambda *xs: sympy.Max(*xs)), "Min": _sym(lambda *xs: sympy.Min(*xs)),
}


def output_dtype(op: str, inputs: list[Value]) -> np.dtype:
    if op in COMPARISONS or op in LOGICAL:
        return BOOL
    return inputs[1].dtype if op == "Where" else inputs[0].dtype


def element_expression(op: str, dtypes: list[np.dtype]) -> str:
    """The SQL template of an op for the given input element types."""
    if op in ANY_EXPR:
        return ANY_EXPR[op]
    if op in ("Max", "Min"):
        fn = "greatest" if op == "Max" else "least"
        return fn + "(" + ", ".join(f"{{{k}}}" for k in range(len(dtypes))) + ")"
    if op in ("Sum", "Mean"):
        total = " + ".join(f"{{{k}}}" for k in range(len(dtypes)))
        return total if op == "Sum" else f"({total}) / {len(dtypes)}"
    table = FLOAT_EXPR if dtypes[0].kind == "f" else INT_EXPR
    if table is INT_EXPR and op == "Div":
        return int_div("{0}", "{1}")
    if op not in table:
        raise LoweringProblem(f"element type {dtypes[0].name} is not supported")
    return in_dialect(table[op])


def fold(op: str, values: list[Known], dtype: np.dtype) -> Known | None:
    """Compute an op on known inputs now, or None when it must run in SQL."""
    if any(v.symbolic for v in values):
        fn = SYMBOLIC_FOLD.get(op)
        if fn is None or dtype.kind == "f":
            return None
        return Known.of(fn(*[v.array for v in values]), dtype)
    arrays = [v.array for v in values]
    if op in ("Max", "Min", "Sum", "Mean"):
        reduce = {"Max": np.maximum, "Min": np.minimum, "Sum": np.add, "Mean": np.add}[op]
        result = arrays[0]
        for a in arrays[1:]:
            result = reduce(result, a)
        result = result / len(arrays) if op == "Mean" else result
    elif op == "Div":
        result = np.divide(*arrays) if dtype.kind == "f" else _int_div(*arrays)
    elif op in NUMERIC_FOLD:
        with np.errstate(all="ignore"):
            result = NUMERIC_FOLD[op](*arrays)
    else:
        return None
    return Known.of(np.asarray(result).astype(dtype), dtype)


def emit_elementwise(ctx: LowerContext, op: str, inputs: list[Value], dtype: np.dtype,
                     expr: str | None = None) -> Runtime:
    """One statement that applies `expr` (default: the op's) to broadcast inputs. A known scalar
    input (RMSNorm's exponent and epsilon, attention's scale) is a literal in the expression."""
    out_shape = broadcast_shapes([shape_of(v) for v in inputs])
    template = expr if expr is not None else element_expression(op, [v.dtype for v in inputs])
    literals = scalar_literals(inputs, out_shape)
    refs = tuple(ctx.ref(v) for k, v in enumerate(inputs) if k not in literals)

    def element(elements: Sequence[str]) -> str:
        tables = iter(elements)
        return template.format(*[literals[k] if k in literals else next(tables) for k in range(len(inputs))])

    return emit_recipe(ctx, Recipe(refs, element, np.dtype(dtype), out_shape, ctx.node_label))


def scalar_literals(inputs: list[Value], out_shape: Shape) -> dict[int, str]:
    """The inputs written as SQL literals rather than read as tables, by position: known numeric
    scalars, when the other inputs alone broadcast to the output's shape (a scalar of higher rank
    adds axes, which only a table gives). Each would otherwise be a constant joined to every row,
    and a statement of its own for the database to plan."""
    found = {k: literal(v.array.reshape(-1)[0], v.dtype) for k, v in enumerate(inputs)
             if isinstance(v, Known) and not v.symbolic and v.array.size == 1}
    rest = [shape_of(v) for k, v in enumerate(inputs) if k not in found]
    if not found or not rest or tuple(broadcast_shapes(rest)) != tuple(out_shape):
        return {}
    return found


def apply(ctx: LowerContext, op: str, inputs: list[Value], dtype: np.dtype | None = None) -> Value:
    """Fold when every input is known and small, otherwise emit SQL."""
    dtype = np.dtype(dtype) if dtype is not None else output_dtype(op, inputs)
    if all(isinstance(v, Known) for v in inputs):
        size = int(np.prod(np.broadcast_shapes(*[v.array.shape for v in inputs])))
        if size <= FOLD_LIMIT:
            folded = fold(op, list(inputs), dtype)  # type: ignore[arg-type]
            if folded is not None:
                return folded
    return emit_elementwise(ctx, op, inputs, dtype)


@register(["Add", "Sub", "Mul", "Div"], since=7)
@register(["Pow"], since=7)
@register(["Equal", "Less", "Greater"], since=7)
@register(["LessOrEqual", "GreaterOrEqual"], since=12)
@register(["And", "Or", "Xor"], since=7)
@register(["Neg", "Abs", "Sqrt", "Exp", "Log", "Cos", "Sin", "Tanh", "Reciprocal",
           "Sigmoid", "Relu", "Floor", "Ceil"], since=6)
@register(["Not", "Softplus"], since=1)
@register(["Erf", "IsNaN"], since=9)
@register(["IsInf"], since=10)
@register(["Where"], since=9)
@register(["Max", "Min", "Sum", "Mean"], since=8)
@register(["Acos", "Asin", "Atan", "Tan"], since=7)
@register(["Cosh", "Sinh", "Acosh", "Asinh", "Atanh", "Sign"], since=9)
@register(["Softsign"], since=1)
@register(["Round"], since=11)
@register(["HardSwish"], since=14)
@register(["PRelu"], since=7)
@register(["Mish", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot"], since=18)
def lower_elementwise(node: NodeView, ctx: LowerContext) -> list[Value]:
    inputs = [v for v in node.inputs if v is not None]
    scaled = scale_before_swap(ctx, node.op_type, inputs)
    return [scaled if scaled is not None else apply(ctx, node.op_type, inputs)]


def scale_before_swap(ctx: LowerContext, op: str, inputs: list[Value]) -> Value | None:
    """x^T * s (or / s) for a scalar s as (x * s)^T: scaling commutes with swapping axes, and a
    MatMul then reads x * s where it would read the swapped table (attention's K^T * scale), so no
    statement swaps K's axes and back. None when the inputs are not of that form."""
    if op not in ("Mul", "Div") or len(inputs) != 2:
        return None
    for k in ((0, 1) if op == "Mul" else (0,)):
        swapped, scalar = inputs[k], inputs[1 - k]
        if (isinstance(swapped, Runtime) and swapped.table in ctx.swapped and isinstance(scalar, Known)
                and scalar.array.size == 1 and scalar.rank <= swapped.rank):
            from onnx2sql.ops.shape import swap_last_two

            ordered = [ctx.swapped[swapped.table], scalar][::1 if k == 0 else -1]
            return swap_last_two(ctx, apply(ctx, op, ordered))
    return None


@register("Cast", since=6)
def lower_cast(node: NodeView, ctx: LowerContext) -> list[Value]:
    target = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(int(node.attr("to"))))
    value = node.inputs[0]
    assert value is not None
    if node.attr("saturate", 1) != 1 and target.kind == "f" and target.itemsize == 1:
        raise node.fail("saturate=0 is only defined for float8 types")
    if isinstance(value, Known):
        return [_fold_cast(value, target)]
    if value.dtype == target:
        return [value]  # the same table: a cast to its own type changes nothing
    return [emit_elementwise(ctx, "Cast", [value], target, expr=cast_expression(value.dtype, target))]


def cast_expression(source: np.dtype, target: np.dtype) -> str:
    from onnx2sql.emit.sql import sql_type

    if target == BOOL:
        return "{0} <> 0" if source != BOOL else "{0}"
    if source.kind == "f" and target.kind in "iu":
        # ONNX truncates toward zero; a plain SQL cast would round.
        return f"CAST(trunc({{0}}) AS {sql_type(target)})"
    return f"CAST({{0}} AS {sql_type(target)})"


def _fold_cast(value: Known, target: np.dtype) -> Known:
    if not value.symbolic:
        return Known.of(value.array.astype(target), target)
    if target == BOOL:
        return Known.of(SYMBOLIC_FOLD["Not"](SYMBOLIC_FOLD["Equal"](value.array, 0)), target)
    return Known.of(value.array, target)


@register("Identity", since=1)
def lower_identity(node: NodeView, ctx: LowerContext) -> list[Value]:
    return [node.inputs[0]]  # type: ignore[list-item]


@register("Gelu", since=20)
def lower_gelu(node: NodeView, ctx: LowerContext) -> list[Value]:
    approximate = node.attr("approximate", "none")
    if isinstance(approximate, bytes):
        approximate = approximate.decode()
    value = node.inputs[0]
    assert value is not None
    if approximate == "none":
        expr = "0.5 * {0} * (1 + onnx_erf({0} * 0.7071067811865476))"
    elif approximate == "tanh":
        expr = "0.5 * {0} * (1 + tanh(0.7978845608028654 * ({0} + 0.044715 * {0} * {0} * {0})))"
    else:
        raise node.fail(f"approximate={approximate!r} is not one of 'none', 'tanh'")
    return [emit_elementwise(ctx, "Gelu", [ctx.runtime(value)], value.dtype, expr=expr)]
