"""The transpiler's op set on PostgreSQL: every onnx backend node case the DuckDB suite runs
(test_transpiler_node_cases.py) compiles for PostgreSQL, runs in a real server and matches the
case's expected outputs at the case's own tolerance."""
from __future__ import annotations

import pytest

import onnx2sql
from node_cases import all_cases, assert_matches, feeds_and_expected
from onnx2sql.errors import UsageError
from test_transpiler_node_cases import CASES

# A real PostgreSQL server; not run again by the pure-SQL pass of `make test` (no DuckDB kernels here).
pytestmark = pytest.mark.postgres

# PostgreSQL has no 64-bit unsigned integer type; DuckDB's suite runs these.
NO_UINT64 = [name for name in CASES
             if any(i.type.tensor_type.elem_type == 13 for i in all_cases()[name].model.graph.input)]
POSTGRES_CASES = [name for name in CASES if name not in NO_UINT64]


def test_only_uint64_cases_are_left_out() -> None:
    assert len(POSTGRES_CASES) >= 440, f"only {len(POSTGRES_CASES)} of {len(CASES)} cases run"
    assert all("uint64" in name for name in NO_UINT64), NO_UINT64


@pytest.mark.parametrize("name", POSTGRES_CASES)
def test_node_case_on_postgres(name: str, postgres_url: str) -> None:
    case = all_cases()[name]
    feeds, expected = feeds_and_expected(case)
    assert_matches(case, onnx2sql.run(case.model, feeds, chunk_size=4, backend="postgres", db=postgres_url), expected)


def test_uint64_is_refused_with_the_input_named(postgres_url: str) -> None:
    case = all_cases()[NO_UINT64[0]]
    feeds, _ = feeds_and_expected(case)
    with pytest.raises(onnx2sql.Onnx2SqlError, match="graph input 'x' has unsupported element type uint64 on postgres"):
        onnx2sql.run(case.model, feeds, backend="postgres", db=postgres_url)


def test_postgres_needs_a_database_url() -> None:
    case = all_cases()["test_add"]
    feeds, _ = feeds_and_expected(case)
    with pytest.raises(UsageError, match="backend postgres needs a database: pass db= \\(--db\\) a postgresql:// URL"):
        onnx2sql.run(case.model, feeds, backend="postgres")
