"""Spark SQL: arrays with higher-order functions (transform, zip_with, aggregate), names quoted with
backticks, arrays indexed from 0.

Spark has no CREATE FUNCTION for SQL expressions, so the functions the shared templates call by
DuckDB's names (list_sum, getvariable, first(... ORDER BY ...), ...) are expanded when a query is
finished, with the subscripts v[p] (1-based) and the double-quoted names the templates write
(`finish`, the same text pass as SQLite's). Spark runs with spark.sql.ansi.enabled off, as DuckDB
does: a subscript out of range is NULL, not an error.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from onnx2sql.dialects import Dialect
from onnx2sql.dialects.text_pass import TextPass, split_arguments

# Symbols are session variables of this prefix (declared by the runtime): onnx2sql_v_s0, ...
VARIABLE_PREFIX = "onnx2sql_v_"
_DOUBLE = "DOUBLE"
_INF = "CAST('Infinity' AS DOUBLE)"


class SparkDialect(Dialect):
    name = "spark"
    types = {
        np.dtype(np.float32): "FLOAT",
        np.dtype(np.float64): "DOUBLE",
        np.dtype(np.int64): "BIGINT",
        np.dtype(np.int32): "INT",
        np.dtype(np.int16): "SMALLINT",
        np.dtype(np.int8): "TINYINT",
        np.dtype(np.uint8): "SMALLINT",
        np.dtype(np.uint16): "INT",
        np.dtype(np.uint32): "BIGINT",
        np.dtype(np.bool_): "BOOLEAN",
    }
    nested_lists = False
    kernel_modes = ("sql",)
    # Each region is a view; one that later regions read twice is computed once and kept. A
    # tiny-llama3 step (prompt of 4 tokens, then 2 decode steps) took 161 s with the default
    # regions (Spark computes a CTE again at each reference), 101 s at 1 op per statement (twice
    # the views kept), 72 s at 2, 69 s at 4 and 83 s at 8.
    max_region_size = 4

    # Names are double-quoted while lowering, as on every backend (regions read them so), and
    # written with backticks when a query is finished.

    @staticmethod
    def quote_literal(text: str) -> str:
        # Spark reads backslash escapes inside string literals.
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    _SPECIAL = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}

    def special_float(self, text: str, type_name: str) -> str:
        return f"CAST('{self._SPECIAL[text]}' AS {type_name})"

    def list_literal(self, items: list[str], element_type: str) -> str:
        return f"CAST(array({', '.join(items)}) AS ARRAY<{element_type}>)"

    def cast_list(self, items: str, element_type: str) -> str:
        return f"CAST({items} AS ARRAY<{element_type}>)"

    def map(self, items: str, body: str, element: str = "x", position: str = "p") -> str:
        if not position:
            return f"transform({items}, {element} -> {body})"
        # The list is bound once (as w_) and zipped with its 1-based positions: transform's own
        # index counts from 0, and the body names the position.
        return (f"element_at(transform(array({items}), w_ -> zip_with(w_, slice(sequence(0, size(w_)), 2, size(w_)), "
                f"({element}, {position}) -> {body})), 1)")

    def map_range(self, start: str, stop: str, body: str, index: str = "p") -> str:
        first, last = f"CAST({start} AS BIGINT)", f"CAST({stop} AS BIGINT)"
        return f"transform(slice(sequence({first}, {last}), 1, CAST(greatest({last} - {first}, 0) AS INT)), {index} -> {body})"

    def list_agg(self, expr: str, order: str) -> str:
        return ordered_list(expr, order)

    def concat_agg(self, lists: str, order: str) -> str:
        return f"flatten({ordered_list(lists, order)})"

    def list_concat(self, lists: list[str]) -> str:
        return f"concat({', '.join(lists)})"

    def series(self, count: str, cast: bool = True) -> str:
        return f"range(CAST({count} AS BIGINT))"

    def range_table(self, count: str, alias: str, column: str = "j", cast: bool = True) -> str:
        return f"(SELECT id AS {column} FROM range(CAST({count} AS BIGINT))) AS {alias}"

    def explode(self, table: str, leads: str, offset: str, position: str, value: str = "x") -> str:
        return (f"SELECT {leads}{offset} + e_pos AS {position}, e_val AS {value} "
                f"FROM {table} AS src_ LATERAL VIEW posexplode(src_.v) e_ AS e_pos, e_val")

    def int_div(self, a: str, b: str) -> str:
        return f"(({a}) div ({b}))"

    def param(self, name: str) -> str:
        return f":{name}"

    def temp_table(self, table: str) -> str:
        return table

    def create_table_as(self, table: str, query: str, temporary: bool = True) -> str:
        return f"CREATE OR REPLACE TEMPORARY VIEW {table} AS\n{query}"

    def insert_rows(self, table: str, columns: list[str], query: str) -> str:
        names = ", ".join(columns)
        return f"INSERT INTO {table}\nSELECT {names} FROM (\n{query}\n) AS appended"

    def finish(self, query: str) -> str:
        return SPARK_PASS.run(query)


def ordered_list(expr: str, order: str) -> str:
    """The list of `expr` over a group's rows ordered by `order` (keys, each ascending): Spark's
    collect_list keeps no order, so the values are sorted as structs led by their keys."""
    keys = split_arguments(order)
    fields = ", ".join(f"'k{n}', {key}" for n, key in enumerate(keys))
    return f"transform(array_sort(collect_list(named_struct({fields}, 'e_', {expr}))), s_ -> s_.e_)"


def _first(args: list[str]) -> str:
    """first(x ORDER BY k1 [DESC], ..): the value of x at the first row in that order, as min_by
    over a struct of the keys (a descending key negated)."""
    value, _, first_key = ", ".join(args[:1]).partition(" ORDER BY ")
    keys = [first_key, *args[1:]]
    fields = []
    for n, key in enumerate(keys):
        words = key.replace(" NULLS LAST", "").replace(" NULLS FIRST", "").split()
        descending = words[-1].upper() == "DESC"
        expr = " ".join(words[:-1] if words[-1].upper() in ("ASC", "DESC") else words)
        fields.append(f"'k{n}', {'-' if descending else ''}({expr})")
    return f"min_by({value}, named_struct({', '.join(fields)}))"


def _bound(body: Callable[[str], str]) -> Callable[[list[str]], str]:
    """A one-argument macro whose body names its argument several times, as b_: the argument is
    computed once, bound by a lambda."""
    return lambda a: f"element_at(transform(array(CAST({a[0]} AS DOUBLE)), b_ -> {body('b_')}), 1)"


# erf after Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7).
def _erf(x: str) -> str:
    t = f"(1.0D / (1.0D + 0.3275911D * abs({x})))"
    return (f"sign({x}) * (1.0D - {t} * (0.254829592D + {t} * (-0.284496736D + {t} * (1.421413741D + {t} * "
            f"(-1.453152027D + {t} * 1.061405429D)))) * exp(-{x} * {x}))")


def _subscript(target: str, index: str) -> str:
    # `T[]` is DuckDB's array type (CAST(v AS DOUBLE[])); anything else is a 1-based subscript.
    if not index.strip():
        return f"ARRAY<{target}>"
    return f"{target}[CAST(({index}) - 1 AS INT)]"


MACROS: dict[str, Callable[[list[str]], str]] = {
    "list_sum": lambda a: f"aggregate({a[0]}, CAST(0 AS {_DOUBLE}), (a_, e_) -> a_ + e_)",
    "list_aggregate": lambda a: f"aggregate({a[0]}, CAST(1 AS {_DOUBLE}), (a_, e_) -> a_ * e_)",
    "list_max": lambda a: f"array_max({a[0]})",
    "list_min": lambda a: f"array_min({a[0]})",
    "list_position": lambda a: f"nullif(array_position({a[0]}, {a[1]}), 0)",
    "list_slice": lambda a: (f"filter({a[0]}, (e_, k_) -> k_ + 1 >= ({a[1]}) AND k_ + 1 <= ({a[2]}) "
                             f"AND (k_ + 1 - ({a[1]})) % ({a[3]}) = 0)"),
    "list_dot_product": lambda a: (f"aggregate(zip_with({a[0]}, {a[1]}, (l_, r_) -> CAST(l_ AS {_DOUBLE}) * r_), "
                                   f"CAST(0 AS {_DOUBLE}), (a_, e_) -> a_ + e_)"),
    "first": _first,
    # Spark's greatest and least take two or more arguments.
    "greatest": lambda a: f"greatest({', '.join(a)})" if len(a) > 1 else f"({a[0]})",
    "least": lambda a: f"least({', '.join(a)})" if len(a) > 1 else f"({a[0]})",
    "getvariable": lambda a: f"{VARIABLE_PREFIX}{a[0].strip(chr(39))}",
    "isinf": lambda a: f"(abs({a[0]}) = {_INF})",
    "xor": lambda a: f"(({a[0]}) ^ ({a[1]}))",
    # Spark's ln is NULL at 0 and below; IEEE's is -inf at 0 and NaN below.
    "ln": _bound(lambda x: f"CASE WHEN {x} > 0 OR isnan({x}) THEN ln({x}) WHEN {x} = 0 THEN -{_INF} "
                           f"ELSE CAST('NaN' AS DOUBLE) END"),
    "onnx_erf": _bound(_erf),
    "round_even": lambda a: f"bround({a[0]}, {a[1]})",
}

def backticks(name: str) -> str:
    """A name quoted as Spark quotes names."""
    return "`" + name.replace("`", "``") + "`"


SPARK_PASS = TextPass(MACROS, _subscript, backticks, backslash_escapes=True)
# Names only: for statements written outside a lowering (the runtime's own), whose subscripts
# and functions are Spark's already.
SPARK_NAMES = TextPass({}, None, backticks, backslash_escapes=True)

SPARK = SparkDialect()
