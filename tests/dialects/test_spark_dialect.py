"""Spark's dialect (dialects/spark.py): the functions compiled programs call by DuckDB's names,
subscripts v[p] (1-based), lambdas with positions and list aggregates in order, written for Spark
SQL, give DuckDB's results in a real local Spark; quoted text passes through untouched."""
from __future__ import annotations

import math

import pytest

from onnx2sql.dialects.spark import SPARK, SPARK_PASS
from onnx2sql.runtime.session import connect

pytestmark = pytest.mark.spark


def spark_value(spark, sql: str) -> object:
    return spark.sql(f"SELECT {SPARK_PASS.run(sql)}").collect()[0][0]


def duckdb_value(sql: str) -> object:
    con = connect()
    try:
        return con.execute(f"SELECT {sql}").fetchall()[0][0]
    finally:
        con.close()


@pytest.mark.parametrize(("duckdb_sql", "spark_sql"), [
    ("list_sum([1.5, 2.5, -1.0])", "list_sum(array(1.5D, 2.5D, -1.0D))"),
    ("list_max([3, 9, 2])", "list_max(array(3, 9, 2))"),
    ("list_min([3, 9, 2])", "list_min(array(3, 9, 2))"),
    ("list_position([4, 7, 7], 7)", "list_position(array(4, 7, 7), 7)"),
    ("list_position([4, 7, 7], 8)", "list_position(array(4, 7, 7), 8)"),
    ("list_slice([1, 2, 3, 4, 5], 2, 5, 2)", "list_slice(array(1, 2, 3, 4, 5), 2, 5, 2)"),
    ("list_dot_product([1.0, 2.0], [3.0, 4.0])", "list_dot_product(array(1.0D, 2.0D), array(3.0D, 4.0D))"),
    ("greatest(3, 8, 5)", "greatest(3, 8, 5)"),
    ("greatest(3)", "greatest(3)"),
    ("least(3, least(8, 1))", "least(3, least(8, 1))"),
    ("xor(5, 3)", "xor(5, 3)"),
    ("[4, 5, 6][2]", "array(4, 5, 6)[2]"),
    ("[4, 5, 6][4]", "array(4, 5, 6)[4]"),
    ("[[1, 2], [3, 4]][2][1]", "array(array(1, 2), array(3, 4))[2][1]"),
    ("7 // 2", SPARK.int_div("7", "2")),
    ("-7 // 2", SPARK.int_div("-7", "2")),
])
def test_expanded_functions_give_duckdbs_results(spark_session, duckdb_sql: str, spark_sql: str) -> None:
    want = duckdb_value(duckdb_sql)
    got = spark_value(spark_session, spark_sql)
    assert (list(got) if isinstance(got, list) else got) == want


def test_lambdas_number_positions_from_one(spark_session) -> None:
    mapped = SPARK.map("array(10, 20, 30)", "x * 100 + p")
    assert spark_value(spark_session, mapped) == [1001, 2002, 3003]
    assert spark_value(spark_session, SPARK.map("CAST(array() AS ARRAY<INT>)", "x + p")) == []
    assert spark_value(spark_session, SPARK.map("array(1, 2)", "x * 2", position="")) == [2, 4]
    assert spark_value(spark_session, SPARK.map_range("2", "5", "p * p")) == [4, 9, 16]
    assert spark_value(spark_session, SPARK.map_range("5", "2", "p")) == []


def test_list_aggregates_keep_their_order(spark_session) -> None:
    rows = "(SELECT * FROM VALUES (0, 2, 5.0D), (0, 1, 4.0D), (1, 0, 9.0D), (0, 0, 3.0D) AS t(g, k, x))"
    agg = SPARK_PASS.run(f"SELECT g, {SPARK.list_agg('x', 'k')} FROM {rows} GROUP BY g ORDER BY g")
    assert [(g, list(v)) for g, v in spark_session.sql(agg).collect()] == [(0, [3.0, 4.0, 5.0]), (1, [9.0])]
    chunks = "(SELECT * FROM VALUES (1, array(3, 4)), (0, array(1, 2)) AS t(c, v))"
    joined = SPARK_PASS.run(f"SELECT {SPARK.concat_agg('v', 'c')} FROM {chunks}")
    assert list(spark_session.sql(joined).collect()[0][0]) == [1, 2, 3, 4]


def test_first_takes_the_first_in_order_of_several_keys(spark_session) -> None:
    rows = "(SELECT * FROM VALUES (1, 2.0D), (2, 5.0D), (3, 5.0D) AS t(k, x))"
    assert spark_session.sql(SPARK_PASS.run(f"SELECT first(k ORDER BY x DESC, k) FROM {rows}")).collect()[0][0] == 2
    assert spark_session.sql(SPARK_PASS.run(f"SELECT first(k ORDER BY x DESC, k DESC) FROM {rows}")).collect()[0][0] == 3


def test_maths_is_ieee_where_spark_gives_null(spark_session) -> None:
    assert spark_value(spark_session, "ln(0.0D)") == -math.inf
    assert math.isnan(spark_value(spark_session, "ln(-1.0D)"))
    assert spark_value(spark_session, "ln(exp(2.0D))") == pytest.approx(2.0)
    assert spark_value(spark_session, "isinf(CAST('-Infinity' AS DOUBLE))") is True
    assert spark_value(spark_session, "round_even(2.5D, 0)") == 2.0
    for x in (-3.0, -0.7, 0.0, 0.3, 2.5):
        assert abs(spark_value(spark_session, f"onnx_erf({x}D)") - math.erf(x)) < 2e-7


def test_names_become_backticked_and_text_stays(spark_session) -> None:
    sql = SPARK_PASS.run('SELECT \'a "b" [1]\' AS "odd""name", 1 AS "x`y"')
    assert sql == "SELECT 'a \"b\" [1]' AS `odd\"name`, 1 AS `x``y`"
    assert spark_session.sql(sql).columns == ['odd"name', "x`y"]
    assert SPARK.quote_literal("it's \\ here") == "'it\\'s \\\\ here'"
    assert spark_value(spark_session, SPARK.quote_literal("it's \\ here")) == "it's \\ here"
