"""PostgreSQL's SQL: arrays instead of lists, subqueries over unnest instead of lambdas.

PostgreSQL raises an error where IEEE arithmetic gives 0, inf or NaN (exp(-1000), a float8 cast
to float4 that underflows), so float32 tensors are float8 there; the support library
(postgres_support.sql) gives the functions DuckDB has and PostgreSQL lacks, with IEEE results.
"""
from __future__ import annotations

import numpy as np

from onnx2sql.dialects import Dialect


class PostgresDialect(Dialect):
    name = "postgres"
    types = {
        np.dtype(np.float32): "double precision",
        np.dtype(np.float64): "double precision",
        np.dtype(np.int64): "bigint",
        np.dtype(np.int32): "integer",
        np.dtype(np.int16): "smallint",
        np.dtype(np.int8): "smallint",
        np.dtype(np.uint8): "smallint",
        np.dtype(np.uint16): "integer",
        np.dtype(np.uint32): "bigint",
        np.dtype(np.bool_): "boolean",
    }
    nested_lists = False
    kernel_modes = ("pgvector", "sql")
    vector_kernel = "pgvector"

    _SPECIAL = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}

    def special_float(self, text: str, type_name: str) -> str:
        return f"CAST('{self._SPECIAL[text]}' AS {type_name})"

    def list_literal(self, items: list[str], element_type: str) -> str:
        return f"CAST(ARRAY[{', '.join(items)}] AS {element_type}[])"

    def to_vector(self, items: str) -> str:
        return f"CAST({items} AS vector)"

    def vector_dot(self, a: str, b: str) -> str:
        return f"-({a} <#> {b})"  # <#> is the negative inner product

    def map(self, items: str, body: str, element: str = "x", position: str = "p") -> str:
        # Position is always named: the subquery orders by it.
        position = position or f"{element}_position"
        return (f"ARRAY(SELECT {body} FROM unnest({items}) WITH ORDINALITY AS {element}_each({element}, {position}) "
                f"ORDER BY {position})")

    def map_range(self, start: str, stop: str, body: str, index: str = "p") -> str:
        return (f"ARRAY(SELECT {body} FROM generate_series({start}, ({stop}) - 1) AS {index}_each({index}) "
                f"ORDER BY {index})")

    def list_agg(self, expr: str, order: str) -> str:
        return f"array_agg({expr} ORDER BY {order})"

    def concat_agg(self, lists: str, order: str) -> str:
        return f"onnx2sql_concat_agg({lists} ORDER BY {order})"

    def series(self, count: str, cast: bool = True) -> str:
        return f"generate_series(0, CAST({count} AS bigint) - 1)"

    def int_div(self, a: str, b: str) -> str:
        return f"({a} / {b})"

    def param(self, name: str) -> str:
        return f"%({name})s"

    def temp_table(self, table: str) -> str:
        return f"pg_temp.{table}"


POSTGRES = PostgresDialect()
