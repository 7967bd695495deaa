"""The transpiler's op set on the other databases: every onnx backend node case the DuckDB suite
runs (test_transpiler_node_cases.py) compiles for SQLite and for PostgreSQL, runs there (SQLite in
memory, PostgreSQL in a real server the tests start) and matches the case's expected outputs at
the case's own tolerance. On Spark (a local Spark the tests start) the cases of the LLM op set
run: those whose every op is one the exported Llama 3 and SmolLM2 graphs use (a Spark statement
costs a tenth of a second or more; the other cases pass there too, in about 8 minutes). None runs
again in the pure-SQL pass of `make test`: DuckDB's kernels play no part here."""
from __future__ import annotations

import pytest

import onnx2sql
from node_cases import all_cases, assert_matches, feeds_and_expected
from onnx2sql.errors import UsageError
from test_transpiler_node_cases import CASES

# Neither database has a 64-bit unsigned integer type; DuckDB's suite runs these.
NO_UINT64 = [name for name in CASES
             if any(i.type.tensor_type.elem_type == 13 for i in all_cases()[name].model.graph.input)]
DATABASE_CASES = [name for name in CASES if name not in NO_UINT64]
# The op types of the exported Llama 3 family graphs (tiny-llama3 and SmolLM2 use these and no other).
LLM_OPS = {"Add", "And", "Cast", "Concat", "Constant", "ConstantOfShape", "Cos", "Div", "Equal", "Expand", "Flatten",
           "Gather", "IsNaN", "LessOrEqual", "MatMul", "Mul", "Neg", "Pow", "Range", "ReduceMean", "Reshape", "Shape",
           "Sigmoid", "Sin", "Slice", "Softmax", "Sqrt", "Transpose", "Unsqueeze", "Where"}
SPARK_CASES = [name for name in DATABASE_CASES
               if {node.op_type for node in all_cases()[name].model.graph.node} <= LLM_OPS]
BACKENDS = [pytest.param("sqlite", marks=pytest.mark.sqlite), pytest.param("postgres", marks=pytest.mark.postgres)]


def database_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    """SQLite runs in memory; PostgreSQL in the server of the test session."""
    return request.getfixturevalue("postgres_url") if backend == "postgres" else None


def test_only_uint64_cases_are_left_out() -> None:
    assert len(DATABASE_CASES) >= 440, f"only {len(DATABASE_CASES)} of {len(CASES)} cases run"
    assert all("uint64" in name for name in NO_UINT64), NO_UINT64


def test_the_llm_op_set_is_the_exported_graphs(tiny_llama3_dir) -> None:
    import onnx

    graph = onnx.load(tiny_llama3_dir / "model.onnx", load_external_data=False).graph
    assert {node.op_type for node in graph.node} <= LLM_OPS
    assert len(SPARK_CASES) >= 170, f"only {len(SPARK_CASES)} cases of the LLM op set"
    assert {op for name in SPARK_CASES for op in (n.op_type for n in all_cases()[name].model.graph.node)} == LLM_OPS


@pytest.mark.spark
@pytest.mark.parametrize("name", SPARK_CASES)
def test_node_case_on_spark(name: str, spark_session) -> None:
    case = all_cases()[name]
    feeds, expected = feeds_and_expected(case)
    outputs = onnx2sql.run(case.model, feeds, chunk_size=4, backend="spark")
    assert_matches(case, outputs, expected)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", DATABASE_CASES)
def test_node_case_on_the_database(name: str, backend: str, request: pytest.FixtureRequest) -> None:
    case = all_cases()[name]
    feeds, expected = feeds_and_expected(case)
    outputs = onnx2sql.run(case.model, feeds, chunk_size=4, backend=backend, db=database_url(backend, request))
    assert_matches(case, outputs, expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_uint64_is_refused_with_the_input_named(backend: str, request: pytest.FixtureRequest) -> None:
    case = all_cases()[NO_UINT64[0]]
    feeds, _ = feeds_and_expected(case)
    with pytest.raises(onnx2sql.Onnx2SqlError,
                       match=f"graph input 'x' has unsupported element type uint64 on {backend}"):
        onnx2sql.run(case.model, feeds, backend=backend, db=database_url(backend, request))


def test_postgres_needs_a_database_url() -> None:
    case = all_cases()["test_add"]
    feeds, _ = feeds_and_expected(case)
    with pytest.raises(UsageError, match="backend postgres needs a database: pass db= \\(--db\\) a postgresql:// URL"):
        onnx2sql.run(case.model, feeds, backend="postgres")
