"""DuckDB's SQL: lists with lambdas, list literals in brackets, table functions such as range."""
from __future__ import annotations

import numpy as np

from onnx2sql.dialects import Dialect


class DuckDBDialect(Dialect):
    name = "duckdb"
    types = {
        np.dtype(np.float32): "FLOAT",
        np.dtype(np.float64): "DOUBLE",
        np.dtype(np.int64): "BIGINT",
        np.dtype(np.int32): "INTEGER",
        np.dtype(np.int16): "SMALLINT",
        np.dtype(np.int8): "TINYINT",
        np.dtype(np.uint8): "UTINYINT",
        np.dtype(np.uint16): "USMALLINT",
        np.dtype(np.uint32): "UINTEGER",
        np.dtype(np.uint64): "UBIGINT",
        np.dtype(np.bool_): "BOOLEAN",
    }

    def special_float(self, text: str, type_name: str) -> str:
        return f"'{text}'::{type_name}"

    def list_literal(self, items: list[str], element_type: str) -> str:
        return "[" + ", ".join(items) + "]"

    def map(self, items: str, body: str, element: str = "x", position: str = "p") -> str:
        params = f"{element}, {position}" if position else element
        return f"list_transform({items}, lambda {params}: {body})"

    def map_range(self, start: str, stop: str, body: str, index: str = "p") -> str:
        bounds = stop if start == "0" else f"{start}, {stop}"
        return f"list_transform(range({bounds}), lambda {index}: {body})"

    def list_agg(self, expr: str, order: str) -> str:
        return f"list({expr} ORDER BY {order})"

    def concat_agg(self, lists: str, order: str) -> str:
        return f"flatten(list({lists} ORDER BY {order}))"

    def series(self, count: str, cast: bool = True) -> str:
        return f"range(CAST({count} AS BIGINT))" if cast else f"range({count})"

    def int_div(self, a: str, b: str) -> str:
        return f"{a} // {b}"

    def param(self, name: str) -> str:
        return f"${name}"

    def temp_table(self, table: str) -> str:
        return f"temp.main.{table}"

    def create_table_as(self, table: str, query: str, temporary: bool = True) -> str:
        return f"CREATE OR REPLACE {'TEMP ' if temporary else ''}TABLE {table} AS\n{query}"

    def insert_rows(self, table: str, columns: list[str], query: str) -> str:
        return f"INSERT INTO {table} BY NAME\n{query}"


DUCKDB = DuckDBDialect()
