"""Symbolic dimensions: graph-input axes such as batch, sequence and past length stay symbols.

A compiled program serves every length, so a shape is a tuple of sympy expressions over these
symbols (stored as text, which the runtime evaluates without sympy: emit/dims.py). In SQL a
symbol reads the DuckDB variable the runtime sets before each run (`getvariable('s0')`); symbol
names are generated here, never taken from the ONNX file.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import sympy

from onnx2sql.emit.sql import double_type

Dim = sympy.Expr
Shape = tuple[Dim, ...]


def make_symbol(index: int) -> sympy.Symbol:
    """Internal symbol `s<index>`: a non-negative integer."""
    return sympy.Symbol(f"s{index}", integer=True, nonnegative=True)


def as_dim(value: object) -> Dim:
    return value if isinstance(value, sympy.Basic) else sympy.Integer(int(value))


def as_shape(dims: Iterable[object]) -> Shape:
    return tuple(as_dim(d) for d in dims)


def static_value(dim: Dim) -> int | None:
    dim = as_dim(dim)
    return int(dim) if dim.is_Integer else None


def dims_equal(a: Dim, b: Dim) -> bool:
    """True when two dims are provably equal for every binding."""
    return sympy.simplify(as_dim(a) - as_dim(b)) == 0


def is_one(dim: Dim) -> bool:
    return static_value(dim) == 1


def product(dims: Sequence[Dim]) -> Dim:
    result: Dim = sympy.Integer(1)
    for d in dims:
        result = result * as_dim(d)
    return result


def decide(condition: object) -> bool | None:
    """A sympy boolean folded to True/False when provable, else None."""
    if condition is True or condition is sympy.true:
        return True
    if condition is False or condition is sympy.false:
        return False
    if isinstance(condition, (bool,)):
        return condition
    return None


def dim_to_text(expr: Dim) -> str:
    return str(as_dim(expr))


def dim_from_text(text: str) -> Dim:
    names = {}
    expr = sympy.sympify(text, locals={"Symbol": sympy.Symbol})
    # Re-create symbols with the assumptions make_symbol gives them, so that equal names are equal.
    for sym in expr.free_symbols:
        names[sym] = sympy.Symbol(sym.name, integer=True, nonnegative=True)
    return expr.xreplace(names)


def to_sql(expr: object) -> str:
    """Render a dimension expression as a DuckDB BIGINT expression."""
    expr = sympy.sympify(expr)
    text = _sql(expr)
    if expr.is_Integer or expr.is_Symbol:
        return text
    return f"CAST({text} AS BIGINT)"


_ROUNDING = {sympy.floor: "floor", sympy.ceiling: "ceil"}
_FUNCTIONS = {sympy.Min: "least", sympy.Max: "greatest"}
# Mod of non-negative dims: SQL's % agrees with sympy's floored modulo there.
_INFIX = {sympy.Mod: "%", sympy.And: "AND", sympy.Or: "OR"}
_RELATIONS = {"==": "=", "!=": "<>"}


def _sql(e: sympy.Basic) -> str:
    if e is sympy.true:
        return "TRUE"
    if e is sympy.false:
        return "FALSE"
    if e.is_Integer:
        return str(int(e))
    if e.is_Rational:
        return f"(CAST({int(e.p)} AS {double_type()}) / {int(e.q)})"
    if e.is_Symbol:
        return f"getvariable('{e.name}')"
    if isinstance(e, sympy.Add):
        return "(" + " + ".join(_sql(a) for a in e.args) + ")"
    if isinstance(e, sympy.Mul):
        num, den = sympy.fraction(e)
        if den == 1:
            return "(" + " * ".join(_sql(a) for a in sympy.Mul.make_args(num)) + ")"
        return f"({_sql(num)} / CAST({_sql(den)} AS {double_type()}))"
    if isinstance(e, sympy.Pow) and e.exp.is_Integer and int(e.exp) > 0:
        return "(" + " * ".join([_sql(e.base)] * int(e.exp)) + ")"
    for kind, name in _ROUNDING.items():
        if isinstance(e, kind):
            return f"CAST({name}({_sql(e.args[0])}) AS BIGINT)"
    for kind, name in _FUNCTIONS.items():
        if isinstance(e, kind):
            return f"{name}(" + ", ".join(_sql(a) for a in e.args) + ")"
    for kind, op in _INFIX.items():
        if isinstance(e, kind):
            return "(" + f" {op} ".join(_sql(a) for a in e.args) + ")"
    if isinstance(e, sympy.core.relational.Relational):
        return f"({_sql(e.lhs)} {_RELATIONS.get(e.rel_op, e.rel_op)} {_sql(e.rhs)})"
    if isinstance(e, sympy.Piecewise):
        parts = [f"WHEN {_sql(cond)} THEN {_sql(val)}" for val, cond in e.args]
        return "(CASE " + " ".join(parts) + " END)"
    if isinstance(e, sympy.Not):
        return f"(NOT {_sql(e.args[0])})"
    raise NotImplementedError(f"cannot render the symbolic expression {e} as SQL")


def sql_expr(expr: object) -> str:
    """Render any symbolic expression (integer or boolean) without a cast."""
    return _sql(sympy.sympify(expr))
