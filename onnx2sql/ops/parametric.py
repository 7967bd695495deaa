"""Elementwise ops whose expression depends on attributes (LeakyRelu's alpha, Mod's fmod, BitShift's
direction) or on another input's element type (CastLike).

Each attribute op is a row: an SQL element expression over {0}, {1}, ... with the attributes as
named fields, and the numpy rule that folds known inputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from onnx2sql.emit.sql import double_type, in_dialect, literal, sql_type
from onnx2sql.graph.values import Known, Value
from onnx2sql.ops.context import LowerContext, NodeView
from onnx2sql.ops.elementwise import FOLD_LIMIT, cast_expression, emit_elementwise
from onnx2sql.ops.registry import register


@dataclass(frozen=True)
class AttributeOp:
    """`sql` names the inputs {0}, {1}, ... and the float attributes by name; `fold` takes the
    input arrays and the attributes as keywords."""

    sql: str
    attributes: tuple[str, ...]
    fold: Callable[..., np.ndarray]


def _elu(x: np.ndarray, alpha: float) -> np.ndarray:
    return np.where(x < 0, alpha * (np.exp(x) - 1), x)


ATTRIBUTE_OPS: dict[str, AttributeOp] = {
    "LeakyRelu": AttributeOp("CASE WHEN {0} < 0 THEN {0} * {alpha} ELSE {0} END", ("alpha",),
                             lambda x, alpha: np.where(x < 0, x * alpha, x)),
    "Elu": AttributeOp("CASE WHEN {0} < 0 THEN {alpha} * (exp({0}) - 1) ELSE {0} END", ("alpha",), _elu),
    "Selu": AttributeOp("CASE WHEN {0} <= 0 THEN {gamma} * ({alpha} * exp({0}) - {alpha}) ELSE {gamma} * {0} END",
                        ("alpha", "gamma"), lambda x, alpha, gamma: gamma * _elu(x, alpha)),
    "Celu": AttributeOp("greatest({0}, 0) + least(0, {alpha} * (exp({0} / {alpha}) - 1))", ("alpha",),
                        lambda x, alpha: np.maximum(x, 0) + np.minimum(0, alpha * (np.exp(x / alpha) - 1))),
    "HardSigmoid": AttributeOp("greatest(0, least(1, {alpha} * {0} + {beta}))", ("alpha", "beta"),
                               lambda x, alpha, beta: np.clip(alpha * x + beta, 0, 1)),
    "ThresholdedRelu": AttributeOp("CASE WHEN {0} > {alpha} THEN {0} ELSE 0 END", ("alpha",),
                                   lambda x, alpha: np.where(x > alpha, x, 0)),
    "Shrink": AttributeOp("CASE WHEN {0} < -{lambd} THEN {0} + {bias} WHEN {0} > {lambd} THEN {0} - {bias} ELSE 0 END",
                          ("bias", "lambd"),
                          lambda x, bias, lambd: np.where(x < -lambd, x + bias, np.where(x > lambd, x - bias, 0))),
    "Swish": AttributeOp("{0} / (1 + exp(-{alpha} * CAST({0} AS DOUBLE)))", ("alpha",),
                         lambda x, alpha: x / (1 + np.exp(-alpha * x))),
}


def _float_attributes(node: NodeView, names: tuple[str, ...]) -> dict[str, float]:
    return {name: float(node.attr(name)) for name in names}  # type: ignore[arg-type]


def apply_expression(ctx: LowerContext, op: str, inputs: list[Value], dtype: np.dtype, sql: str,
                     fold: Callable[..., np.ndarray]) -> Value:
    """Fold known inputs with numpy, else emit the broadcast element expression `sql`."""
    if all(isinstance(v, Known) and not v.symbolic for v in inputs):
        arrays = [v.array for v in inputs]  # type: ignore[union-attr]
        if np.prod(np.broadcast_shapes(*[a.shape for a in arrays])) <= FOLD_LIMIT:
            with np.errstate(all="ignore"):
                return Known.of(np.asarray(fold(*arrays)).astype(dtype), dtype)
    return emit_elementwise(ctx, op, [ctx.runtime(v) for v in inputs], dtype, expr=sql)


@register(["LeakyRelu", "Elu", "Selu", "HardSigmoid"], since=6)
@register("ThresholdedRelu", since=10)
@register("Shrink", since=9)
@register("Celu", since=12)
@register("Swish", since=24)
def lower_attribute_op(node: NodeView, ctx: LowerContext) -> list[Value]:
    op = ATTRIBUTE_OPS[node.op_type]
    x = node.inputs[0]
    assert x is not None
    values = _float_attributes(node, op.attributes)
    # Float maths in DOUBLE; the template casts the result to x's type once.
    sql = in_dialect(op.sql).format("{0}", **{k: literal(v, np.dtype(np.float64)) for k, v in values.items()})
    return [apply_expression(ctx, node.op_type, [x], x.dtype, sql, lambda a: op.fold(a, **values))]


# ---------------------------------------------------------------- Mod

def _mod_sql(floored: bool, float_type: bool) -> str:
    """C's fmod (the dividend's sign), or with `floored` the divisor's sign (Python's %): a
    truncated remainder of the other sign moves by the divisor. Floats run in DOUBLE."""
    double = double_type()
    a, b = (f"CAST({{0}} AS {double})", f"CAST({{1}} AS {double})") if float_type else ("{0}", "{1}")
    r = f"({a} % {b})"
    return f"CASE WHEN {r} <> 0 AND ({r} < 0) <> ({b} < 0) THEN {r} + {b} ELSE {r} END" if floored else r


def _floored_mod(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    r = np.fmod(a, b)
    return np.where((r != 0) & ((r < 0) != (b < 0)), r + b, r)


@register("Mod", since=10)
def lower_mod(node: NodeView, ctx: LowerContext) -> list[Value]:
    a, b = node.inputs[0], node.inputs[1]
    assert a is not None and b is not None
    fmod = bool(node.attr("fmod", 0))
    sql = _mod_sql(floored=not fmod, float_type=a.dtype.kind == "f")
    return [apply_expression(ctx, "Mod", [a, b], a.dtype, sql, np.fmod if fmod else _floored_mod)]


# ---------------------------------------------------------------- BitShift

def _shift_sql(dtype: np.dtype, left: bool) -> str:
    """A shift by 0 <= s < width as two's complement hardware does it: a left shift wraps around,
    a right shift of a signed value copies the sign bit. Other shift counts give 0, or -1 for a
    negative value shifted right."""
    width = dtype.itemsize * 8
    if left:
        # Multiply by 2^s in 128 bits (SQL refuses to shift a negative number left), keep the low
        # `width` bits and read them back as the type, signed or not.
        modulus = 1 << width
        inside = f"((CAST({{0}} AS HUGEINT) * (CAST(1 AS HUGEINT) << {{1}})) % {modulus} + {modulus}) % {modulus}"
        if dtype.kind == "i":
            inside = f"(CASE WHEN {inside} >= {modulus >> 1} THEN {inside} - {modulus} ELSE {inside} END)"
        outside = "0"
    else:
        inside = "({0} >> {1})"
        outside = "(CASE WHEN {0} < 0 THEN -1 ELSE 0 END)"
    return f"CASE WHEN {{1}} >= 0 AND {{1}} < {width} THEN {inside} ELSE {outside} END"


def _fold_shift(a: np.ndarray, s: np.ndarray, left: bool) -> np.ndarray:
    width = a.dtype.itemsize * 8
    a, s = np.broadcast_arrays(a, s)
    valid = (s >= 0) & (s < width)
    safe = np.where(valid, s, 0).astype(a.dtype)
    shifted = np.left_shift(a, safe) if left else np.right_shift(a, safe)
    outside = np.zeros_like(a) if left else np.where(a < 0, -1, 0).astype(a.dtype)
    return np.where(valid, shifted, outside)


@register("BitShift", since=11)
def lower_bitshift(node: NodeView, ctx: LowerContext) -> list[Value]:
    a, s = node.inputs[0], node.inputs[1]
    assert a is not None and s is not None
    direction = node.attr("direction")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction not in ("LEFT", "RIGHT"):
        raise node.fail(f"direction={direction!r} is not LEFT or RIGHT")
    if a.dtype.kind not in "iu":
        raise node.fail(f"element type {a.dtype.name} is not an integer type")
    left = direction == "LEFT"
    return [apply_expression(ctx, "BitShift", [a, s], a.dtype, _shift_sql(a.dtype, left),
                             lambda x, y: _fold_shift(x, y, left))]


# ---------------------------------------------------------------- CastLike

@register("CastLike", since=15)
def lower_cast_like(node: NodeView, ctx: LowerContext) -> list[Value]:
    value, like = node.inputs[0], node.inputs[1]
    assert value is not None and like is not None
    target = like.dtype
    sql_type(target)  # rejects element types without a column type, naming the type
    if isinstance(value, Known):
        return [Known.of(value.array if value.symbolic else value.array.astype(target), target)]
    return [emit_elementwise(ctx, "CastLike", [value], target, expr=cast_expression(value.dtype, target))]
