"""Models compiled into a SQLite database file, and generation there.

The file holds one model: its weight tables (indexed on i0, which a Gather looks rows up by)
and a table onnx2sql_meta with the program, the model's path and digests. A model whose file
changed is compiled again; a file holding another model is refused unless it is the model
folder's own (MODEL_DIR/sqlite/model.sqlite). Tables of the user's in the same file stay.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from onnx2sql.api import FORMAT_VERSION, load_valid_model
from onnx2sql.emit.program import Program
from onnx2sql.emit.sql import quote_ident
from onnx2sql.errors import InputError
from onnx2sql.runtime.fingerprint import digests_match, model_digests
from onnx2sql.runtime.generate import DatabaseGenerator
from onnx2sql.runtime.session import META_TABLE
from onnx2sql.runtime.sqlite import SqliteDatabase, SqliteSession, _import_apsw, sqlite_kernels
from onnx2sql.runtime.text import ModelFolder


def default_sqlite_db(model_dir: Path) -> Path:
    """The model folder's own SQLite database (beside sql/, which DuckDB's compile owns)."""
    return model_dir / "sqlite" / "model.sqlite"


def compiled_program(db: SqliteDatabase, model: Path, where: str, progress: bool = False,
                     kernels: str | None = None, own: bool = False) -> Program:
    """The program of `model` compiled into the database: the stored one when it was compiled from
    the model's current content by this version of onnx2sql; else compiled and stored now. A
    database of another model is compiled again only when it is `own` (the model folder's)."""
    stored = _stored_meta(db)
    same_model = stored.get("model_path") == str(model.resolve())
    if stored and not same_model and not own:
        raise InputError(f"{where!r} holds the model {stored.get('model_path')!r}, not {str(model)!r}: "
                         "name another --db")
    wanted = None if kernels is None else sqlite_kernels(db, kernels)
    if same_model and stored.get("format") == FORMAT_VERSION and digests_match(model, stored):
        program = Program.from_json(stored["program"])
        if wanted is None or program.kernels == wanted:
            return program
        if not own:
            raise InputError(f"{where!r} was compiled with --kernels {program.kernels}, not {wanted}: "
                             "name another --db or leave --kernels out")
    return _compile_into(db, model, stored, progress, wanted or sqlite_kernels(db, None))


def _stored_meta(db: SqliteDatabase) -> dict[str, str]:
    if not db.table_exists(META_TABLE):
        return {}
    return dict(db.fetchall(f"SELECT key, value FROM main.{quote_ident(META_TABLE)}"))


def _compile_into(db: SqliteDatabase, model: Path, stored: dict[str, str], progress: bool, kernels: str) -> Program:
    """Lower the model for SQLite and store it, replacing the model that was there, in one
    transaction: an interrupted compile leaves the previous one (or none)."""
    from onnx2sql.graph.visitor import lower_model

    proto, data_files = load_valid_model(model)
    program = lower_model(proto, backend="sqlite", kernels=kernels)
    digests = model_digests(model, data_files, None)
    meta = {"format": FORMAT_VERSION, "program": program.to_json(), "model_path": str(model.resolve()),
            "model_sha256": digests.pop(model.name), "external_data_sha256": json.dumps(digests)}
    with db.connection:
        _drop_stored_model(db, stored)
        for k, weight in enumerate(program.weights):
            if progress:
                print(f"\ronnx2sql: loading weights into SQLite {k + 1}/{len(program.weights)}", end="",
                      file=sys.stderr, flush=True)
            db.write_weight(weight)
        db.execute(f"CREATE TABLE {quote_ident(META_TABLE)} (key TEXT PRIMARY KEY, value TEXT)")
        db.connection.cursor().executemany(f"INSERT INTO {quote_ident(META_TABLE)} VALUES (?, ?)", list(meta.items()))
    if progress and program.weights:
        print(file=sys.stderr)
    return program


def _drop_stored_model(db: SqliteDatabase, stored: dict[str, str]) -> None:
    """The tables of the model compiled before (its weights and meta), and nothing else."""
    if not stored:
        return
    for weight in Program.from_json(stored["program"]).weights:
        db.execute(f"DROP TABLE IF EXISTS main.{quote_ident(weight.table)}")
    db.execute(f"DROP TABLE main.{quote_ident(META_TABLE)}")


class SqliteGenerator(DatabaseGenerator):
    """A Generator whose model is compiled into, and runs in, a SQLite database file."""

    session_class = SqliteSession

    def __init__(self, model_dir: str | Path, db: str | Path | None = None, progress: bool = True,
                 kernels: str | None = None):
        self.folder = ModelFolder.open(model_dir)
        self.model = self.folder.path / "model.onnx"
        path = Path(db) if db else default_sqlite_db(self.folder.path)
        own = path.resolve() == default_sqlite_db(self.folder.path).resolve()
        if own:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.db_path = path
        database = SqliteDatabase.connect(path)
        self._attach(database, lambda: compiled_program(database, self.model, str(path), progress, kernels, own=own),
                     f"SQLite database {str(path)!r}")

    @property
    def database_errors(self) -> tuple[type[Exception], ...]:  # type: ignore[override]
        return (_import_apsw().Error,)
