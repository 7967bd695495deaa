"""Models compiled into a PostgreSQL database, and generation there.

A model's weights and program live in a schema of their own, named from the model file's path
(`onnx2sql_m_<digest>`), beside a table onnx2sql_meta holding the program and the model's
digests: several models share one database, and a model whose file changed is compiled again.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import psycopg

from onnx2sql.api import FORMAT_VERSION, load_valid_model
from onnx2sql.emit.program import Program
from onnx2sql.emit.sql import quote_ident
from onnx2sql.errors import UsageError
from onnx2sql.runtime.fingerprint import digests_match, model_digests
from onnx2sql.runtime.generate import DatabaseGenerator
from onnx2sql.runtime.postgres import PostgresDatabase
from onnx2sql.runtime.postgres_session import PostgresSession, postgres_kernels, \
    prepare_database, set_search_path, write_weight
from onnx2sql.runtime.session import META_TABLE
from onnx2sql.runtime.text import ModelFolder


def model_schema(model: Path) -> str:
    """The schema that holds a model compiled into PostgreSQL."""
    return "onnx2sql_m_" + hashlib.sha256(str(model.resolve()).encode()).hexdigest()[:16]


def compiled_program(db: PostgresDatabase, model: Path, progress: bool = False, kernels: str | None = None) -> Program:
    """The program of `model` compiled into the database: the stored one when it was compiled from
    the model's current content, by this version of onnx2sql, in the kernel mode asked for (None:
    the stored one's; "auto": pgvector where the extension is there); else compiled and stored now."""
    prepare_database(db)
    wanted = None if kernels is None else postgres_kernels(db, kernels)
    schema = model_schema(model)
    stored = _stored_meta(db, schema)
    if stored.get("format") == FORMAT_VERSION and digests_match(model, stored):
        program = Program.from_json(stored["program"])
        if wanted is None or program.kernels == wanted:
            set_search_path(db, schema)
            return program
    return _compile_into(db, model, schema, progress, wanted or postgres_kernels(db, None))


def _stored_meta(db: PostgresDatabase, schema: str) -> dict[str, str]:
    found = db.fetchall("SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = %s", [schema, META_TABLE])
    if not found:
        return {}
    return dict(db.fetchall(f"SELECT key, value FROM {quote_ident(schema)}.{quote_ident(META_TABLE)}"))


def _compile_into(db: PostgresDatabase, model: Path, schema: str, progress: bool, kernels: str) -> Program:
    """Lower the model for PostgreSQL and store it in `schema`, replacing what was there, in one
    transaction: an interrupted compile leaves the previous schema (or none)."""
    from onnx2sql.graph.visitor import lower_model

    proto, data_files = load_valid_model(model)
    program = lower_model(proto, backend="postgres", kernels=kernels)
    digests = model_digests(model, data_files, None)
    meta = {"format": FORMAT_VERSION, "program": program.to_json(), "model_sha256": digests.pop(model.name),
            "external_data_sha256": json.dumps(digests)}
    with db.connection.transaction():
        db.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
        db.execute(f"CREATE SCHEMA {quote_ident(schema)}")
        set_search_path(db, schema)
        for k, weight in enumerate(program.weights):
            if progress:
                print(f"\ronnx2sql: loading weights into PostgreSQL {k + 1}/{len(program.weights)}", end="",
                      file=sys.stderr, flush=True)
            write_weight(db, weight)
        db.execute(f"CREATE TABLE {quote_ident(META_TABLE)} (key text PRIMARY KEY, value text)")
        for key, value in meta.items():
            db.execute(f"INSERT INTO {quote_ident(META_TABLE)} VALUES (%s, %s)", [key, value])
    if progress and program.weights:
        print(file=sys.stderr)
    return program


class PostgresGenerator(DatabaseGenerator):
    """A Generator whose model is compiled into, and runs in, a PostgreSQL database."""

    session_class = PostgresSession
    database_errors = (psycopg.Error,)

    def __init__(self, model_dir: str | Path, db: str, progress: bool = True, kernels: str | None = None):
        if not db:
            raise UsageError("--backend postgres needs --db, a postgresql:// connection URL")
        self.folder = ModelFolder.open(model_dir)
        self.model = self.folder.path / "model.onnx"
        self.db_path = None
        database = PostgresDatabase.connect(db)
        self._attach(database, lambda: compiled_program(database, self.model, progress, kernels), "PostgreSQL")
