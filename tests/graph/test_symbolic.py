"""Symbolic dims rendered as SQL evaluate in DuckDB to what sympy says, for every binding."""
from __future__ import annotations

import duckdb
import pytest
import sympy

from onnx2sql.graph.symbolic import make_symbol, sql_expr, to_sql

s0, s1 = make_symbol(0), make_symbol(1)
EXPRESSIONS = [
    s0 + s1, s0 * s1 - 3, sympy.floor(s0 / 3), sympy.ceiling((s0 + s1) / 4), sympy.Mod(s0, 4),
    sympy.Min(s0, 5), sympy.Max(s0 - s1, 0), sympy.Piecewise((1, sympy.Eq(s0, 0)), (s1 + 2, True)),
    s0 ** 2, sympy.Rational(1, 2) * s0 * 2,
]
CONDITIONS = [sympy.Eq(s0, 3), sympy.Ne(s0, s1), s0 < s1, sympy.Ge(s0, 2),
              sympy.And(sympy.Eq(s0, 1), s1 > 2), sympy.Or(s0 > 4, sympy.Eq(s1, 0)), sympy.Not(sympy.Eq(s0, s1))]
BINDINGS = [(0, 0), (1, 3), (3, 3), (7, 2), (12, 5)]


@pytest.fixture(scope="module")
def con():
    return duckdb.connect()


def _evaluate(con, sql: str, binding: tuple[int, int]) -> object:
    con.execute(f"SET VARIABLE s0 = {binding[0]}")
    con.execute(f"SET VARIABLE s1 = {binding[1]}")
    return con.execute(f"SELECT {sql}").fetchone()[0]


@pytest.mark.parametrize("expr", EXPRESSIONS, ids=str)
def test_integer_expressions(con, expr) -> None:
    for binding in BINDINGS:
        want = int(expr.subs({s0: binding[0], s1: binding[1]}))
        assert _evaluate(con, to_sql(expr), binding) == want, binding


@pytest.mark.parametrize("cond", CONDITIONS, ids=str)
def test_conditions(con, cond) -> None:
    for binding in BINDINGS:
        want = bool(cond.subs({s0: binding[0], s1: binding[1]}))
        assert _evaluate(con, sql_expr(cond), binding) is want, binding
