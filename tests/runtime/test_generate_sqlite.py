"""Generation with the model compiled into, and run in, a SQLite database file: a model is
compiled into its file once, the user's own tables stay, a file of another model is refused, and
the command line takes --backend sqlite (the tokens of batches and sampling:
test_generate_databases.py)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from onnx2sql.cli import main
from onnx2sql.runtime.backends import open_generator
from onnx2sql.runtime.sqlite import SqliteDatabase
from ort_loop import ort_greedy

pytestmark = pytest.mark.sqlite  # runs once: DuckDB's kernels play no part here

PROMPTS = [[315, 40, 41, 42], [315, 7], list(range(20, 45)), [9, 300, 12, 5, 77, 8]]


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sqlite") / "tiny.sqlite"


@pytest.fixture(scope="module")
def generator(tiny_llama3_dir: Path, sqlite_db: Path):
    with open_generator(tiny_llama3_dir, "sqlite", db=sqlite_db, progress=False) as gen:
        assert gen.program.kernels == "native"  # the extension make builds, the default where it loads
        yield gen


def test_the_model_is_compiled_into_its_file_once(tiny_llama3_dir: Path, sqlite_db: Path, generator) -> None:
    written = os.stat(sqlite_db).st_mtime_ns
    with open_generator(tiny_llama3_dir, "sqlite", db=sqlite_db, progress=False) as again:
        assert again.generate_ids(PROMPTS[0], 2).token_ids == ort_greedy(tiny_llama3_dir, PROMPTS[0], 2)[0]
    assert os.stat(sqlite_db).st_mtime_ns == written  # read, not written: runs use temporary tables


def test_compiling_into_the_users_file_keeps_their_tables(tiny_llama3_dir: Path, tmp_path: Path, capsys) -> None:
    db = tmp_path / "mine.sqlite"
    with SqliteDatabase.connect(db) as lite:
        lite.execute("CREATE TABLE notes (x TEXT); INSERT INTO notes VALUES ('kept')")
    assert main(["compile", str(tiny_llama3_dir / "model.onnx"), "--backend", "sqlite", "--db", str(db), "-q",
                 "--kernels", "sql"]) == 0
    assert capsys.readouterr().out.strip() == f"{db} (kernels sql)"
    with open_generator(tiny_llama3_dir, "sqlite", db=db, progress=False) as gen:
        assert gen.program.kernels == "sql"  # the stored program, not compiled again
        assert gen.generate_ids(PROMPTS[1], 3).token_ids == ort_greedy(tiny_llama3_dir, PROMPTS[1], 3)[0]
    with SqliteDatabase.connect(db) as lite:
        assert lite.fetchall("SELECT x FROM notes") == [("kept",)]


def test_a_file_holding_another_model_is_refused(tiny_llama3_dir: Path, tmp_path: Path, capsys) -> None:
    db = tmp_path / "other.sqlite"
    with SqliteDatabase.connect(db) as lite:
        lite.execute("CREATE TABLE onnx2sql_meta (key TEXT PRIMARY KEY, value TEXT); "
                     "INSERT INTO onnx2sql_meta VALUES ('model_path', '/elsewhere/model.onnx')")
    assert main(["generate", str(tiny_llama3_dir), "--prompt", "hi", "--backend", "sqlite", "--db", str(db)]) == 1
    assert "holds the model '/elsewhere/model.onnx'" in capsys.readouterr().err
    with SqliteDatabase.connect(db) as lite:  # left as it was
        assert lite.fetchall("SELECT key, value FROM onnx2sql_meta") == [("model_path", "/elsewhere/model.onnx")]


def test_generate_command_on_sqlite(tiny_llama3_dir: Path, sqlite_db: Path, generator, capsys) -> None:
    assert main(["generate", str(tiny_llama3_dir), "--prompt", "hello there", "--max-new-tokens", "5",
                 "--backend", "sqlite", "--db", str(sqlite_db), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["token_ids"] == ort_greedy(tiny_llama3_dir, result["prompt_ids"], 5)[0]


@pytest.mark.parametrize("args, message", [
    (["--memory-limit", "1GB"], "--memory-limit is DuckDB's"),
    (["--weights", "int8"], "--weights int8 is DuckDB's: backend sqlite stores fp32 weights"),
    (["--kernels", "pgvector"], "backend sqlite runs --kernels native or sql, not 'pgvector'"),
])
def test_generate_backend_errors(tiny_llama3_dir: Path, tmp_path: Path, capsys, args: list[str], message: str) -> None:
    assert main(["generate", str(tiny_llama3_dir), "--prompt", "hi", "--backend", "sqlite",
                 "--db", str(tmp_path / "x.sqlite"), *args]) in (1, 2)
    assert message in capsys.readouterr().err


def test_a_folder_is_not_a_database_file(tiny_llama3_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["generate", str(tiny_llama3_dir), "--prompt", "hi", "--backend", "sqlite", "--db", str(tmp_path)]) == 1
    assert f"--db {str(tmp_path)!r} is a folder; name a SQLite database file" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--backend", "sqlite"], "--backend sqlite needs --db, a database file"),
    (["--backend", "sqlite", "--db", "x.sqlite", "-o", "out"], "-o is for DuckDB"),
])
def test_compile_backend_errors(tiny_llama3_dir: Path, capsys, args: list[str], message: str) -> None:
    assert main(["compile", str(tiny_llama3_dir / "model.onnx"), *args]) == 2
    assert message in capsys.readouterr().err
