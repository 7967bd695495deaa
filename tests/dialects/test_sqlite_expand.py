"""SQLite's text pass (dialects/sqlite.py, expand): the functions compiled programs call by DuckDB's
names, and subscripts v[p], expanded into SQLite's SQL give DuckDB's results in a real SQLite;
quoted text and comments pass through untouched."""
from __future__ import annotations

import json
import math
from typing import Iterator

import pytest

from onnx2sql.dialects.sqlite import expand
from onnx2sql.runtime.session import connect
from onnx2sql.runtime.sqlite import SqliteDatabase

pytestmark = pytest.mark.sqlite


@pytest.fixture
def lite() -> Iterator[SqliteDatabase]:
    with SqliteDatabase.connect() as db:
        yield db


def value(db: SqliteDatabase, sql: str) -> object:
    got = db.fetchall(f"SELECT {expand(sql)}")[0][0]
    return json.loads(got) if isinstance(got, str) and got.startswith("[") else got


@pytest.mark.parametrize(("duckdb_sql", "sqlite_sql"), [
    ("list_sum([1.5, 2.5, -1.0])", "list_sum(json_array(1.5, 2.5, -1.0))"),
    ("list_sum([1, 2, 3])", "list_sum(json_array(1, 2, 3))"),
    ("list_max([3, 9, 2])", "list_max(json_array(3, 9, 2))"),
    ("list_min([3, 9, 2])", "list_min(json_array(3, 9, 2))"),
    ("list_position([4, 7, 7], 7)", "list_position(json_array(4, 7, 7), 7)"),
    ("list_slice([1, 2, 3, 4, 5], 2, 5, 2)", "list_slice(json_array(1, 2, 3, 4, 5), 2, 5, 2)"),
    ("list_dot_product([1.0, 2.0], [3.0, 4.0])", "list_dot_product(json_array(1.0, 2.0), json_array(3.0, 4.0))"),
    ("greatest(3, 8, 5)", "greatest(3, 8, 5)"),
    ("least(3, least(8, 1))", "least(3, least(8, 1))"),
    ("xor(5, 3)", "xor(5, 3)"),
    ("[4, 5, 6][2]", "json_array(4, 5, 6)[2]"),
    ("[[1, 2], [3, 4]][2][1]", "json_array(json_array(1, 2), json_array(3, 4))[2][1]"),
    ("list_sum([1, 2, 3]) + [7, 8][1 + 1]", "list_sum(json_array(1, 2, 3)) + json_array(7, 8)[1 + 1]"),
])
def test_expanded_functions_give_duckdbs_results(lite: SqliteDatabase, duckdb_sql: str, sqlite_sql: str) -> None:
    con = connect()
    want = con.execute(f"SELECT {duckdb_sql}").fetchall()[0][0]
    con.close()
    assert value(lite, sqlite_sql) == want


def test_subscripts_apply_to_a_dotted_name_and_a_call(lite: SqliteDatabase) -> None:
    lite.execute("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('[10,20,30]')")
    assert lite.fetchall(expand("SELECT t.v[3], v[1], (v)[2], list_slice(v, 1, 3, 2)[2] FROM t")) == [(30, 10, 20, 30)]


def test_maths_is_ieee_where_sqlite_gives_null(lite: SqliteDatabase) -> None:
    assert value(lite, "ln(0.0)") == -math.inf
    assert value(lite, "ln(-1.0)") is None  # NaN, which SQLite holds as NULL
    assert value(lite, "ln(exp(2.0))") == pytest.approx(2.0)
    assert value(lite, "isinf(-9e999)") == 1 and value(lite, "isinf(1.0)") == 0
    assert value(lite, "isnan(NULL)") == 1


@pytest.mark.parametrize(("x", "digits", "want"), [(2.5, 0, 2.0), (3.5, 0, 4.0), (-2.5, 0, -2.0), (1.25, 1, 1.2),
                                                    (2.6, 0, 3.0), (-0.4, 0, -0.0)])
def test_round_even_rounds_halves_to_even(lite: SqliteDatabase, x: float, digits: int, want: float) -> None:
    assert value(lite, f"round_even({x}, {digits})") == want


@pytest.mark.parametrize("x", [-3.0, -0.7, 0.0, 0.3, 1.1, 2.5])
def test_erf_is_within_2e_7(lite: SqliteDatabase, x: float) -> None:
    assert abs(value(lite, f"onnx_erf({x})") - math.erf(x)) < 2e-7


def test_first_takes_the_first_in_order_of_several_keys(lite: SqliteDatabase) -> None:
    rows = "(SELECT column1 AS k, column2 AS x FROM (VALUES (1, 2.0), (2, 5.0), (3, 5.0)))"
    assert lite.fetchall(expand(f"SELECT first(k ORDER BY x DESC, k) FROM {rows}")) == [(2,)]
    assert lite.fetchall(expand(f"SELECT first(k ORDER BY x DESC, k DESC) FROM {rows}")) == [(3,)]


def test_getvariable_reads_the_symbols(lite: SqliteDatabase) -> None:
    lite.set_symbols({"s0": 12})
    lite.set_symbols({"s1": 3})
    assert lite.fetchall(expand("SELECT getvariable('s0') + getvariable('s1'), getvariable('s2')")) == [(15, None)]


def test_quoted_text_and_comments_pass_through() -> None:
    sql = "SELECT 'list_sum(v)[1]' AS \"greatest(a)[2]\" -- list_max(v)[3]\nFROM t"
    assert expand(sql) == sql


@pytest.mark.parametrize("sql", ["SELECT list_sum(v", "SELECT v[1", "SELECT 'open"])
def test_unbalanced_text_is_refused(sql: str) -> None:
    with pytest.raises(ValueError, match="unbalanced|unterminated"):
        expand(sql)
