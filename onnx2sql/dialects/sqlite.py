"""SQLite's SQL: lists as JSON arrays, read with json_each and built with json_group_array.

SQLite has no array type and no CREATE FUNCTION. A tensor chunk v is the text of a JSON array
(NaN is JSON null, as SQLite stores NaN as NULL; infinities are 9e999). The functions the shared
templates call by DuckDB's names (list_sum, list_max, getvariable, greatest, ...) and array
subscripts v[p] are expanded into SQLite's own SQL when a query is finished (`finish`): a text
pass at compile time that stands in for the support library PostgreSQL gets as SQL functions.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from onnx2sql.dialects import Dialect
from onnx2sql.dialects.text_pass import TextPass

# The temporary table symbols live in (name, value); the runtime fills it before each run.
SYMBOLS_TABLE = "onnx2sql_symbols"


class SqliteDialect(Dialect):
    name = "sqlite"
    types = {
        np.dtype(np.float32): "REAL",
        np.dtype(np.float64): "REAL",
        np.dtype(np.int64): "INTEGER",
        np.dtype(np.int32): "INTEGER",
        np.dtype(np.int16): "INTEGER",
        np.dtype(np.int8): "INTEGER",
        np.dtype(np.uint8): "INTEGER",
        np.dtype(np.uint16): "INTEGER",
        np.dtype(np.uint32): "INTEGER",
        # NUMERIC affinity: CAST(0.5 AS BOOLEAN) stays true where CAST(0.5 AS INTEGER) is 0.
        np.dtype(np.bool_): "BOOLEAN",
    }
    nested_lists = False
    # native: products through the SQLite extension built from kernels/ (onnx2sql_dot).
    kernel_modes = ("native", "sql")
    vector_kernel = "native"
    # SQLite computes a CTE again at every reference (and nests them too deep for its parser at
    # 48 ops): tiny-llama3's prefill took 6.2 s one op per statement, 7.6 s at 4, 18 s at 8.
    max_region_size = 1

    _SPECIAL = {"nan": "NULL", "inf": "9e999", "-inf": "-9e999"}

    def special_float(self, text: str, type_name: str) -> str:
        return self._SPECIAL[text]

    def list_literal(self, items: list[str], element_type: str) -> str:
        return f"json_array({', '.join(items)})"

    def list_concat(self, lists: list[str]) -> str:
        # The arrays' texts joined without their inner brackets; empty arrays leave no comma.
        inner = " || ".join(f"coalesce(',' || nullif(substr({v}, 2, length({v}) - 2), ''), '')" for v in lists)
        return f"('[' || substr({inner}, 2) || ']')"

    def cast_list(self, items: str, element_type: str) -> str:
        if items == "NULL":
            return "NULL"
        return self.map(items, f"CAST(e_ AS {element_type})", "e_", "")

    def to_vector(self, items: str) -> str:
        return f"onnx2sql_vector({items})"

    def vector_dot(self, a: str, b: str) -> str:
        return f"onnx2sql_dot({a}, {b})"

    def map(self, items: str, body: str, element: str = "x", position: str = "p") -> str:
        position = position or f"{element}_position"
        return (f"(SELECT json_group_array({body} ORDER BY {position}) FROM "
                f"(SELECT value AS {element}, key + 1 AS {position} FROM json_each({items})))")

    def map_range(self, start: str, stop: str, body: str, index: str = "p") -> str:
        return (f"(SELECT json_group_array({body} ORDER BY {index}) FROM "
                f"(SELECT ({start}) + key AS {index} FROM {_counting(f'({stop}) - ({start})')}))")

    def list_agg(self, expr: str, order: str) -> str:
        return f"json_group_array({expr} ORDER BY {order})"

    def concat_agg(self, lists: str, order: str) -> str:
        # The arrays' texts joined without their brackets (json_group_array writes no spaces).
        inner = f"nullif(substr({lists}, 2, length({lists}) - 2), '')"
        return f"('[' || coalesce(group_concat({inner}, ',' ORDER BY {order}), '') || ']')"

    def series(self, count: str, cast: bool = True) -> str:
        return f"(SELECT key AS j FROM {_counting(count)})"

    def range_table(self, count: str, alias: str, column: str = "j", cast: bool = True) -> str:
        return f"(SELECT key AS {column} FROM {_counting(count)}) AS {alias}"

    def values_table(self, rows: list[list[str]], alias: str, columns: list[str]) -> str:
        body = ",\n".join("  (" + ", ".join(row) + ")" for row in rows)
        named = ", ".join(f"column{k + 1} AS {c}" for k, c in enumerate(columns))
        return f"(SELECT {named} FROM (VALUES\n{body}\n)) AS {alias}"

    def explode(self, table: str, leads: str, offset: str, position: str, value: str = "x") -> str:
        return (f"SELECT {leads}{offset} + e_.key AS {position}, e_.value AS {value} "
                f"FROM {table} AS src_, json_each(src_.v) AS e_")

    def int_div(self, a: str, b: str) -> str:
        return f"CAST(({a}) / ({b}) AS INTEGER)"

    def param(self, name: str) -> str:
        return f":{name}"

    def temp_table(self, table: str) -> str:
        return f"temp.{table}"

    def finish(self, query: str) -> str:
        return expand(query)


def _counting(count: str) -> str:
    """json_each over a JSON array of max(count, 0) zeros: its keys count 0 .. count - 1 (SQLite
    has no generate_series without its extension)."""
    return f"json_each('[' || rtrim(replace(hex(zeroblob({count})), '00', '0,'), ',') || ']')"


# ---------------------------------------------------------------------------- the text pass
def _one(name: str, body: Callable[[str], str]) -> Callable[[list[str]], str]:
    """A one-argument macro whose body names its argument once, as x_ (bound in a subquery)."""
    def expand_call(args: list[str]) -> str:
        _arity(name, args, 1)
        return f"(SELECT {body('x_')} FROM (SELECT ({args[0]}) AS x_))"
    return expand_call


def _arity(name: str, args: list[str], count: int) -> None:
    if len(args) != count:
        raise ValueError(f"{name} takes {count} argument(s) on sqlite, got {len(args)}")


def _list_slice(args: list[str]) -> str:
    _arity("list_slice", args, 4)
    v, first, last, step = args
    return (f"(SELECT json_group_array(value ORDER BY key) FROM json_each({v}) WHERE key + 1 >= ({first}) "
            f"AND key + 1 <= ({last}) AND (key + 1 - ({first})) % ({step}) = 0)")


def _first(args: list[str]) -> str:
    # first(x ORDER BY y): the aggregate's first value, as the first element of the ordered list.
    # The ORDER BY inside may list several keys: the arguments are one text again.
    return f"(json_group_array({', '.join(args)}) ->> 0)"


def _extreme(builtin: str) -> Callable[[list[str]], str]:
    def expand_call(args: list[str]) -> str:
        # SQLite's max(a, b) is a scalar of two or more arguments (one argument is the aggregate).
        return f"{builtin}({', '.join(args)})" if len(args) > 1 else f"({args[0]})"
    return expand_call


# erf after Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7).
_ERF = ("sign(x_) * (1.0 - t_ * (0.254829592 + t_ * (-0.284496736 + t_ * (1.421413741 + t_ * (-1.453152027 "
        "+ t_ * 1.061405429)))) * exp(-x_ * x_))")

MACROS: dict[str, Callable[[list[str]], str]] = {
    "list_sum": lambda a: f"(SELECT sum(value) FROM json_each({a[0]}))",
    "list_max": lambda a: f"(SELECT max(value) FROM json_each({a[0]}))",
    "list_min": lambda a: f"(SELECT min(value) FROM json_each({a[0]}))",
    "list_position": lambda a: f"(SELECT min(key) + 1 FROM json_each({a[0]}) WHERE value = ({a[1]}))",
    "list_slice": _list_slice,
    # One list walked, the other's elements looked up by position: SQLite joins two json_each by
    # key in a nested loop (K squared), 45x slower for K = 576.
    "list_dot_product": lambda a: f"(SELECT sum(l_.value * ({a[1]} ->> l_.key)) FROM json_each({a[0]}) AS l_)",
    "greatest": _extreme("max"),
    "least": _extreme("min"),
    "first": _first,
    "getvariable": lambda a: f"(SELECT value FROM temp.{SYMBOLS_TABLE} WHERE name = {a[0]})",
    "isnan": lambda a: f"(({a[0]}) IS NULL)",
    "isinf": lambda a: f"(abs({a[0]}) = 9e999)",
    "xor": lambda a: f"((({a[0]}) | ({a[1]})) - (({a[0]}) & ({a[1]})))",
    "ln": _one("ln", lambda x: f"CASE WHEN {x} > 0 THEN ln({x}) WHEN {x} = 0 THEN -9e999 END"),
    "onnx_erf": lambda a: (f"(SELECT {_ERF} FROM (SELECT x_, 1.0 / (1.0 + 0.3275911 * abs(x_)) AS t_ "
                           f"FROM (SELECT ({a[0]}) AS x_)))"),
    "round_even": lambda a: (f"(SELECT (CASE WHEN abs(y_ - trunc(y_)) = 0.5 THEN 2.0 * round(y_ / 2.0) "
                             f"ELSE round(y_) END) / pow(10.0, ({a[1]})) "
                             f"FROM (SELECT ({a[0]}) * pow(10.0, ({a[1]})) AS y_))"),
}


def expand(sql: str) -> str:
    """`sql` with the calls of MACROS expanded and subscripts v[p] (1-based) read as JSON elements."""
    return TextPass(MACROS, _json_element).run(sql)


def _json_element(target: str, index: str) -> str:
    return f"({target} ->> CAST(({index}) - 1 AS INTEGER))"


SQLITE = SqliteDialect()
