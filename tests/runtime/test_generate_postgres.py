"""Generation with the model compiled into, and run in, a real PostgreSQL server: a model is
compiled into the database once, and the command line takes --backend postgres (the tokens of
batches and sampling: test_generate_databases.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from onnx2sql.cli import main
from onnx2sql.runtime.backends import open_generator
from onnx2sql.runtime.postgres import PostgresDatabase
from onnx2sql.runtime.postgres_models import model_schema
from ort_loop import ort_greedy

# A real PostgreSQL server; not run again by the pure-SQL pass of `make test` (no DuckDB kernels here).
pytestmark = pytest.mark.postgres

PROMPTS = [[315, 40, 41, 42], [315, 7], list(range(20, 45)), [9, 300, 12, 5, 77, 8]]


@pytest.fixture(scope="module")
def generator(tiny_llama3_dir: Path, postgres_url: str):
    with open_generator(tiny_llama3_dir, "postgres", db=postgres_url, progress=False) as gen:
        yield gen


def test_the_model_is_compiled_into_its_schema_once(tiny_llama3_dir: Path, postgres_url: str, generator) -> None:
    schema = model_schema(tiny_llama3_dir / "model.onnx")
    with PostgresDatabase.connect(postgres_url) as db:
        tables = {r[0] for r in db.fetchall("SELECT tablename FROM pg_tables WHERE schemaname = %s", [schema])}
        assert "onnx2sql_meta" in tables and any(t.startswith("w") for t in tables)
        created = db.fetchall("SELECT oid FROM pg_namespace WHERE nspname = %s", [schema])
    with open_generator(tiny_llama3_dir, "postgres", db=postgres_url, progress=False) as again:
        assert again.generate_ids(PROMPTS[0], 2).token_ids == ort_greedy(tiny_llama3_dir, PROMPTS[0], 2)[0]
    with PostgresDatabase.connect(postgres_url) as db:
        assert db.fetchall("SELECT oid FROM pg_namespace WHERE nspname = %s", [schema]) == created


def test_generate_command_on_postgres(tiny_llama3_dir: Path, postgres_url: str, capsys) -> None:
    assert main(["generate", str(tiny_llama3_dir), "--prompt", "hello there", "--max-new-tokens", "5",
                 "--backend", "postgres", "--db", postgres_url, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["token_ids"] == ort_greedy(tiny_llama3_dir, result["prompt_ids"], 5)[0]


@pytest.mark.parametrize("args, message", [
    (["--backend", "postgres"], "backend postgres needs --db, a postgresql:// connection URL"),
    (["--backend", "postgres", "--db", "postgresql://u@127.0.0.1:1/x", "--memory-limit", "1GB"],
     "--memory-limit is DuckDB's"),
    (["--backend", "postgres", "--db", "postgresql://u@127.0.0.1:1/x", "--kernels", "native"],
     "backend postgres multiplies through pgvector or in SQL"),
    (["--backend", "postgres", "--db", "postgresql://u@127.0.0.1:1/x"], "cannot connect to PostgreSQL at 127.0.0.1:1"),
])
def test_generate_backend_errors(tiny_llama3_dir: Path, capsys, args: list[str], message: str) -> None:
    assert main(["generate", str(tiny_llama3_dir), "--prompt", "hi", *args]) in (1, 2)
    assert message in capsys.readouterr().err


def test_compile_command_into_postgres(tiny_llama3_dir: Path, postgres_url: str, capsys) -> None:
    """`compile --backend postgres --db URL` stores the model in its schema, which generate then uses."""
    schema = model_schema(tiny_llama3_dir / "model.onnx")
    assert main(["compile", str(tiny_llama3_dir / "model.onnx"), "--backend", "postgres", "--db", postgres_url,
                 "--kernels", "sql", "-q"]) == 0
    assert capsys.readouterr().out.strip() == f"{schema} (kernels sql)"
    with open_generator(tiny_llama3_dir, "postgres", db=postgres_url, progress=False) as gen:
        assert gen.program.kernels == "sql"  # the stored program, not compiled again
        assert gen.generate_ids(PROMPTS[1], 3).token_ids == ort_greedy(tiny_llama3_dir, PROMPTS[1], 3)[0]


@pytest.mark.parametrize("args, message", [
    (["--backend", "postgres"], "--backend postgres needs --db, a postgresql:// connection URL"),
    (["--backend", "postgres", "--db", "postgresql://u@127.0.0.1:1/x", "-o", "out"], "-o is for DuckDB"),
    (["--backend", "postgres", "--db", "postgresql://u@127.0.0.1:1/x", "--chunk-size", "16"],
     "--chunk-size, --region-size and --weights are DuckDB's for now"),
    ([], "compile needs -o"),
])
def test_compile_backend_errors(tiny_llama3_dir: Path, capsys, args: list[str], message: str) -> None:
    assert main(["compile", str(tiny_llama3_dir / "model.onnx"), *args]) == 2
    assert message in capsys.readouterr().err
