"""SQL dialects: what differs between the databases a program can be compiled for.

Templates and lowerings write one SQL text. Most of it is the same on every backend: SELECT,
joins, windows, CASE, array subscripts v[p] (1-based), and the functions the runtime names after
DuckDB's (list_sum, list_max, list_dot_product, getvariable, ...), which a backend without them
defines in its support library (dialects/postgres_support.sql) or expands, with the subscripts,
when a query is finished (SQLite, which has neither arrays nor CREATE FUNCTION:
dialects/sqlite.py). Where the syntax itself differs (lambdas over lists, list literals, list
aggregates and concatenation, table-valued ranges and literal rows, exploding lists into rows,
integer division, element type names, statements that replace a table) the text comes from the
Dialect in use, one fragment method each.

The dialect in use is set for the duration of a lowering (`using`), so that the many small
renderers of ops need no extra parameter; `current()` is DuckDB outside any lowering.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

import numpy as np

from onnx2sql.errors import ModelError


class Dialect:
    """The fragments of one backend's SQL. Subclasses give each fragment its backend's text."""

    name = ""
    # Element type names by numpy dtype.
    types: dict[np.dtype, str] = {}
    # Whether a column can hold a list of lists (a matrix in one value): the tile layout of known
    # matrices and the by-columns product read them. Without it, products read chunked rows.
    nested_lists = True
    # What can do the arithmetic of products besides plain SQL ("sql"): the native kernels
    # (kernels/, as DuckDB's and SQLite's extensions), PostgreSQL's pgvector.
    kernel_modes: tuple[str, ...] = ("native", "sql")
    # The most statements one region may join (None: as many as asked for). A database that
    # computes a CTE again at each reference runs one op per statement.
    max_region_size: int | None = None
    # The kernel mode whose products store known matrices a whole row per table row as vectors and
    # multiply them with vector_dot (None: the backend has none).
    vector_kernel: str | None = None

    # ------------------------------------------------------------------ names and literals
    @staticmethod
    def quote_ident(name: str) -> str:
        """An identifier for any string: doubled quotes inside, quoted outside."""
        return '"' + name.replace('"', '""') + '"'

    @staticmethod
    def quote_literal(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    def type(self, dtype: np.dtype) -> str:
        try:
            return self.types[np.dtype(dtype)]
        except KeyError:
            where = "" if self.name == "duckdb" else f" on {self.name}"
            raise ModelError(f"element type {np.dtype(dtype).name} is not supported{where}") from None

    def supports(self, dtype: np.dtype) -> bool:
        return np.dtype(dtype) in self.types

    @property
    def double(self) -> str:
        """The type float maths is carried out in."""
        return self.type(np.dtype(np.float64))

    def special_float(self, text: str, type_name: str) -> str:
        """A NaN or infinity ('nan', 'inf', '-inf') of a float type."""
        raise NotImplementedError

    def list_literal(self, items: list[str], element_type: str) -> str:
        raise NotImplementedError

    # ------------------------------------------------------------------ lists
    def map(self, items: str, body: str, element: str = "x", position: str = "p") -> str:
        """The list of `body` over each element of the list `items`, in order: `element` names the
        element and `position` its 1-based position in the body."""
        raise NotImplementedError

    def map_range(self, start: str, stop: str, body: str, index: str = "p") -> str:
        """The list of `body` for `index` = start, start + 1, .., stop - 1 (SQL integers)."""
        raise NotImplementedError

    def list_agg(self, expr: str, order: str) -> str:
        """The aggregate list of `expr` over a group's rows, ordered by `order`."""
        raise NotImplementedError

    def concat_agg(self, lists: str, order: str) -> str:
        """The aggregate of a group's lists joined end to end, ordered by `order`."""
        raise NotImplementedError

    def list_concat(self, lists: list[str]) -> str:
        """The lists joined end to end."""
        return " || ".join(lists)

    def to_vector(self, items: str) -> str:
        """A list as the vector kernel's vector type."""
        raise NotImplementedError

    def vector_dot(self, a: str, b: str) -> str:
        """The dot product of two vectors of the vector kernel."""
        raise NotImplementedError

    def cast_list(self, items: str, element_type: str) -> str:
        return f"CAST({items} AS {element_type}[])"

    # ------------------------------------------------------------------ numbers and rows
    def series(self, count: str, cast: bool = True) -> str:
        """A table of one column counting 0 .. count - 1, for a FROM clause (alias it: AS r(j))."""
        raise NotImplementedError

    def range_table(self, count: str, alias: str, column: str = "j", cast: bool = True) -> str:
        """A FROM item `alias` whose one column `column` counts 0 .. count - 1."""
        return f"{self.series(count, cast)} AS {alias}({column})"

    def values_table(self, rows: list[list[str]], alias: str, columns: list[str]) -> str:
        """A FROM item `alias` of literal rows, its columns named `columns`."""
        body = ",\n".join("  (" + ", ".join(row) + ")" for row in rows)
        return f"(VALUES\n{body}\n) AS {alias}({', '.join(columns)})"

    def explode(self, table: str, leads: str, offset: str, position: str, value: str = "x") -> str:
        """One row per element of the lists v of `table`: the columns `leads` (text ending in a
        comma, or empty), the element's 0-based position in its list plus `offset` as `position`,
        and the element as `value`."""
        return (f"SELECT {leads}{offset} + generate_subscripts(v, 1) - 1 AS {position}, unnest(v) AS {value} "
                f"FROM {table}")

    def int_div(self, a: str, b: str) -> str:
        """Integer division of integers truncated toward zero (operands are SQL text)."""
        raise NotImplementedError

    def param(self, name: str) -> str:
        """A named parameter of a statement, bound from a mapping when it runs."""
        raise NotImplementedError

    def temp_table(self, table: str) -> str:
        """The temporary table `table` (quoted), not a stored one of the same name."""
        raise NotImplementedError

    # ------------------------------------------------------------------ statements
    def create_table_as(self, table: str, query: str, temporary: bool = True) -> str:
        """A statement (or statements) that replaces `table` (quoted) with the rows of `query`."""
        # A temporary table is dropped through its schema: never a stored table of the same name.
        old = self.temp_table(table) if temporary else table
        return f"DROP TABLE IF EXISTS {old};\nCREATE {'TEMP ' if temporary else ''}TABLE {table} AS\n{query}"

    def insert_rows(self, table: str, columns: list[str], query: str) -> str:
        """A statement that appends the rows of `query` (which selects `columns` by name) to `table`."""
        names = ", ".join(columns)
        return f"INSERT INTO {table} ({names})\nSELECT {names} FROM (\n{query}\n) AS appended"

    def finish(self, query: str) -> str:
        """The text of a rendered query as this backend runs it (SQLite expands the functions it
        lacks here); as it is on most."""
        return query


_CURRENT: ContextVar[Dialect | None] = ContextVar("onnx2sql_dialect", default=None)


def current() -> Dialect:
    """The dialect of the lowering under way; DuckDB outside one."""
    dialect = _CURRENT.get()
    if dialect is None:
        from onnx2sql.dialects.duckdb import DUCKDB

        return DUCKDB
    return dialect


@contextmanager
def using(dialect: Dialect) -> Iterator[Dialect]:
    token = _CURRENT.set(dialect)
    try:
        yield dialect
    finally:
        _CURRENT.reset(token)


BACKENDS = ("duckdb", "sqlite", "postgres", "spark")


def dialect_for(backend: str) -> Dialect:
    """The dialect of a backend name, or a clear error naming the known ones."""
    if backend == "duckdb":
        from onnx2sql.dialects.duckdb import DUCKDB

        return DUCKDB
    if backend == "postgres":
        from onnx2sql.dialects.postgres import POSTGRES

        return POSTGRES
    if backend == "sqlite":
        from onnx2sql.dialects.sqlite import SQLITE

        return SQLITE
    if backend == "spark":
        from onnx2sql.dialects.spark import SPARK

        return SPARK
    raise ModelError(f"backend {backend!r} is not known; choose one of {', '.join(BACKENDS)}")
