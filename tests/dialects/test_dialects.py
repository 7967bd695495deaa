"""Each dialect fragment, run in its own real database, computes what the fragment promises; the
PostgreSQL support library and SQLite's expanded functions give DuckDB's results (and IEEE ones
where PostgreSQL would raise)."""
from __future__ import annotations

import json
import math
from typing import Any, Callable, Iterator

import numpy as np
import pytest

from onnx2sql.dialects import Dialect, current, dialect_for, using
from onnx2sql.dialects.duckdb import DUCKDB
from onnx2sql.dialects.postgres import POSTGRES
from onnx2sql.dialects.sqlite import SQLITE
from onnx2sql.errors import ModelError
from onnx2sql.runtime.postgres import PostgresDatabase
from onnx2sql.runtime.postgres_session import prepare_database
from onnx2sql.runtime.session import connect
from onnx2sql.runtime.sqlite import SqliteDatabase

Execute = Callable[[str], Any]  # a statement in, a cursor (fetchall) out


class SqliteRows:
    """SQLite's rows with the JSON text of a list read as the list, as the other backends return them."""

    def __init__(self, rows: list[tuple]) -> None:
        self.rows = [tuple(json.loads(v) if isinstance(v, str) and v.startswith("[") else v for v in row)
                     for row in rows]

    def fetchall(self) -> list[tuple]:
        return self.rows


@pytest.fixture(params=["duckdb", "sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> Iterator[tuple[Dialect, Execute]]:
    """(dialect, execute a statement) on a fresh connection of each backend."""
    if request.param == "duckdb":
        con = connect()
        yield DUCKDB, con.execute
        con.close()
    elif request.param == "sqlite":
        with SqliteDatabase.connect() as lite:
            yield SQLITE, lambda sql: SqliteRows(lite.fetchall(SQLITE.finish(sql)))
    else:
        postgres_url = request.getfixturevalue("postgres_url")
        with PostgresDatabase.connect(postgres_url) as db:
            prepare_database(db)
            yield POSTGRES, db.execute


def rows(execute: Execute, sql: str) -> list[tuple]:
    return execute(sql).fetchall()


def one(execute: Execute, sql: str) -> object:
    return rows(execute, f"SELECT {sql}")[0][0]


def test_map_gives_each_element_with_its_position(backend) -> None:
    d, query = backend
    items = d.list_literal(["10", "20", "30"], "INTEGER")
    assert list(one(query, d.map(items, "x * p"))) == [10, 40, 90]


def test_map_nests_and_the_inner_body_sees_the_outer_element(backend) -> None:
    d, query = backend
    inner = d.map(d.list_literal(["5", "6"], "INTEGER"), "y * x", "y", "q")
    assert list(one(query, d.map(d.list_literal(["1", "2"], "INTEGER"), f"x + ({inner})[2]"))) == [7, 14]


def test_map_range_counts_from_start_to_before_stop(backend) -> None:
    d, query = backend
    assert list(one(query, d.map_range("3", "7", "j * 2", "j"))) == [6, 8, 10, 12]
    assert list(one(query, d.map_range("0", "0", "j", "j"))) == []


def test_list_and_concat_aggregates_follow_their_order(backend) -> None:
    d, query = backend
    values = d.values_table([["2", "'b'"], ["0", "'a'"], ["1", "'c'"]], "t", ["k", "s"])
    assert list(rows(query, f"SELECT {d.list_agg('s', 'k DESC')} FROM {values}")[0][0]) == ["b", "c", "a"]
    lists = d.values_table([["1", d.list_literal(["3", "4"], "INTEGER")], ["0", d.list_literal(["1", "2"], "INTEGER")],
                            ["2", d.list_literal([], "INTEGER")]], "t", ["k", "v"])
    assert list(rows(query, f"SELECT {d.concat_agg('v', 'k')} FROM {lists}")[0][0]) == [1, 2, 3, 4]


def test_list_concat_joins_in_order_and_skips_nothing(backend) -> None:
    d, query = backend
    lists = [d.list_literal(["1", "2"], "INTEGER"), d.list_literal([], "INTEGER"), d.list_literal(["3"], "INTEGER")]
    assert list(one(query, d.list_concat(lists))) == [1, 2, 3]
    assert list(one(query, d.list_concat(lists[1:2] * 2))) == []


def test_explode_gives_each_element_with_its_position(backend) -> None:
    d, query = backend
    table = d.values_table([["0", "1", d.list_literal(["5", "6"], "INTEGER")],
                            ["1", "0", d.list_literal(["7"], "INTEGER")]], "t", ["i0", "c", "v"])
    exploded = d.explode(f"(SELECT * FROM {table})", "i0, ", "c * 2", "i1")
    assert sorted(rows(query, f"SELECT * FROM ({exploded}) AS e")) == [(0, 2, 5), (0, 3, 6), (1, 0, 7)]


def test_series_counts_from_zero(backend) -> None:
    d, query = backend
    assert [r[0] for r in rows(query, f"SELECT j FROM {d.range_table('4', 'r')} ORDER BY j")] == [0, 1, 2, 3]
    assert rows(query, f"SELECT k FROM {d.range_table('0', 'r', 'k')}") == []


@pytest.mark.parametrize(("a", "b", "quotient"), [(7, 2, 3), (-7, 2, -3), (7, -2, -3), (6, 3, 2)])
def test_integer_division_truncates_toward_zero(backend, a: int, b: int, quotient: int) -> None:
    d, query = backend
    assert one(query, d.int_div(f"CAST({a} AS BIGINT)", f"CAST({b} AS BIGINT)")) == quotient


@pytest.mark.parametrize("text", ["nan", "inf", "-inf"])
def test_special_floats(backend, text: str) -> None:
    d, query = backend
    value = one(query, d.special_float(text, d.type(np.dtype(np.float32))))
    if d is SQLITE and text == "nan":
        assert value is None  # SQLite stores NaN as NULL; tensors read it back as NaN
    else:
        assert math.isnan(value) if text == "nan" else value == float(text)


def test_create_table_as_replaces_and_insert_rows_appends_by_name(backend) -> None:
    d, execute = backend
    table = d.quote_ident('odd "name"')
    execute(d.create_table_as(table, "SELECT 1 AS i0, 0 AS c"))
    execute(d.create_table_as(table, "SELECT 5 AS i0, 7 AS c"))
    execute(d.insert_rows(table, ["i0", "c"], "SELECT 8 AS c, 6 AS i0"))
    assert rows(execute, f"SELECT i0, c FROM {table} ORDER BY i0") == [(5, 7), (6, 8)]


def test_postgres_types_hold_float32_as_float8() -> None:
    assert POSTGRES.type(np.dtype(np.float32)) == "double precision"
    with pytest.raises(ModelError, match="element type uint64 is not supported on postgres"):
        POSTGRES.type(np.dtype(np.uint64))


def test_the_dialect_in_use_is_scoped() -> None:
    assert current() is DUCKDB
    with using(dialect_for("postgres")):
        assert current() is POSTGRES
    assert current() is DUCKDB
    with pytest.raises(ModelError, match="backend 'oracle' is not known; choose one of duckdb, sqlite, postgres"):
        dialect_for("oracle")


# ---------------------------------------------------------------- the PostgreSQL support library

@pytest.fixture
def pg(postgres_url: str) -> Iterator[Execute]:
    with PostgresDatabase.connect(postgres_url) as db:
        prepare_database(db)
        yield db.execute


def test_support_maths_is_ieee_where_postgres_raises(pg: Execute) -> None:
    assert one(pg, "exp(CAST(-1000 AS double precision))") == 0.0
    assert one(pg, "exp(CAST(1000 AS double precision))") == math.inf
    assert one(pg, "ln(CAST(0 AS double precision))") == -math.inf
    assert math.isnan(one(pg, "ln(CAST(-1 AS double precision))"))
    assert math.isnan(one(pg, "sqrt(CAST(-4 AS double precision))"))
    assert one(pg, "sqrt(CAST(4 AS double precision))") == 2.0


@pytest.mark.parametrize(("duckdb_sql", "postgres_sql"), [
    ("list_sum([1.5, 2.5, -1.0]::DOUBLE[])", "list_sum(ARRAY[1.5, 2.5, -1.0]::double precision[])"),
    ("list_sum([1, 2, 3]::BIGINT[])", "list_sum(ARRAY[1, 2, 3]::bigint[])"),
    ("list_max([3, 9, 2])", "list_max(ARRAY[3, 9, 2])"),
    ("list_min([3, 9, 2])", "list_min(ARRAY[3, 9, 2])"),
    ("list_position([4, 7, 7], 7)", "list_position(ARRAY[4, 7, 7], 7)"),
    ("list_slice([1, 2, 3, 4, 5], 2, 5, 2)", "list_slice(ARRAY[1, 2, 3, 4, 5], 2, 5, 2)"),
    ("list_dot_product([1.0, 2.0]::FLOAT[], [3.0, 4.0]::FLOAT[])",
     "list_dot_product(ARRAY[1.0, 2.0]::double precision[], ARRAY[3.0, 4.0]::double precision[])"),
])
def test_support_list_functions_match_duckdb(pg: Execute, duckdb_sql: str, postgres_sql: str) -> None:
    con = connect()
    want = con.execute(f"SELECT {duckdb_sql}").fetchall()[0][0]
    con.close()
    got = one(pg, postgres_sql)
    assert (list(got) if isinstance(got, list) else got) == (list(want) if isinstance(want, list) else want)


def test_support_first_takes_the_first_in_order(pg: Execute) -> None:
    assert one(pg, "(SELECT first(k ORDER BY x DESC, k) FROM (VALUES (1, 2.0), (2, 5.0), (3, 5.0)) AS t(k, x))") == 2


def test_symbols_read_through_getvariable(postgres_url: str) -> None:
    with PostgresDatabase.connect(postgres_url) as db:
        prepare_database(db)
        assert db.fetchall("SELECT getvariable('s0')")[0][0] is None
        db.set_symbols({"s0": 12})
        assert db.fetchall("SELECT getvariable('s0') + 1")[0][0] == 13
