"""Running a program compiled for PostgreSQL (backend "postgres"): the support library installed
in the database, weights and feeds written with COPY, symbols as session settings."""
from __future__ import annotations

from contextlib import contextmanager
from importlib import resources
from typing import Iterator

import psycopg

from onnx2sql.dialects.postgres import POSTGRES
from onnx2sql.emit.sql import quote_ident
from onnx2sql.errors import DatabaseError, UsageError
from onnx2sql.ops.context import WeightTable
from onnx2sql.runtime.postgres import PostgresDatabase
from onnx2sql.runtime.session import DatabaseSession

# Version of postgres_support.sql: a database holding an older one gets it again.
SUPPORT_VERSION = 3


@contextmanager
def postgres_errors(what: str = "PostgreSQL") -> Iterator[None]:
    """PostgreSQL's errors as onnx2sql's DatabaseError, their message after `what`."""
    try:
        yield
    except psycopg.Error as exc:
        raise DatabaseError(f"{what}: {exc}".strip()) from exc


def set_search_path(db: PostgresDatabase, tables: str = "public") -> None:
    """Tables go to (and are found in) `tables`, the support functions come before pg_catalog's
    (IEEE exp, ln, ..), and pgvector's type and operators are found wherever it was installed."""
    schemas = [quote_ident(tables), "onnx2sql"]
    found = db.fetchall("SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'vector'")
    if found and found[0][0] not in ("onnx2sql", tables):
        schemas.append(found[0][0])  # already a SQL name (regnamespace quotes it when it must)
    db.execute(f"SET search_path = {', '.join(schemas)}, pg_catalog")


# A dot product through pgvector when the extension is there (vectors are float4, as the
# float32 products of onnxruntime are); plain SQL over the two arrays otherwise.
_DOT_PGVECTOR = """CREATE OR REPLACE FUNCTION onnx2sql.list_dot_product(a double precision[], b double precision[])
  RETURNS double precision LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  RETURN inner_product(CAST(a AS vector), CAST(b AS vector))"""
_DOT_SQL = """CREATE OR REPLACE FUNCTION onnx2sql.list_dot_product(a double precision[], b double precision[])
  RETURNS double precision LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  RETURN (SELECT sum(x * y) FROM unnest(a, b) AS e(x, y))"""


def support_sql() -> str:
    return resources.files("onnx2sql.dialects").joinpath("postgres_support.sql").read_text()


def prepare_database(db: PostgresDatabase) -> None:
    """Install the support library (once per version) and use it on this connection."""
    if _installed_version(db) != SUPPORT_VERSION:
        db.execute(support_sql())
        dot = _DOT_PGVECTOR if _has_pgvector(db) else _DOT_SQL
        set_search_path(db)
        db.execute(dot)
        db.execute(f"CREATE OR REPLACE FUNCTION onnx2sql.support_version() RETURNS integer LANGUAGE sql "
                   f"IMMUTABLE RETURN {SUPPORT_VERSION}")
    set_search_path(db)


def _installed_version(db: PostgresDatabase) -> int | None:
    found = db.fetchall("SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                        "WHERE n.nspname = 'onnx2sql' AND p.proname = 'support_version'")
    return int(db.fetchall("SELECT onnx2sql.support_version()")[0][0]) if found else None


def _has_pgvector(db: PostgresDatabase) -> bool:
    if db.fetchall("SELECT 1 FROM pg_extension WHERE extname = 'vector'"):
        return True
    if not db.fetchall("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"):
        return False
    db.execute("CREATE EXTENSION IF NOT EXISTS vector SCHEMA onnx2sql")
    return True


def postgres_kernels(db: PostgresDatabase, requested: str | None) -> str:
    """The kernel mode of a program compiled for this database: "pgvector" (products through
    pgvector) where the extension is there, unless "sql" is asked for."""
    if requested in (None, "auto"):
        return "pgvector" if _has_pgvector(db) else "sql"
    if requested == "pgvector" and not _has_pgvector(db):
        raise UsageError("--kernels pgvector: the database has no pgvector extension; use --kernels sql")
    if requested not in POSTGRES.kernel_modes:
        raise UsageError(f"backend postgres runs --kernels pgvector or sql, not {requested!r} (DuckDB's)")
    return requested


def write_weight(db: PostgresDatabase, weight: WeightTable, temporary: bool = False) -> None:
    """A weight table in its layout: chunked arrays (indexed on i0, which a Gather looks rows up
    by), or whole rows as pgvector vectors."""
    db.write_tensor(weight.table, weight.array, weight.chunk, temporary=temporary)
    table = quote_ident(weight.table)
    if weight.blob == "vector":
        db.execute(f"ALTER TABLE {table} ALTER COLUMN v TYPE vector USING CAST(v AS vector)")
    elif weight.array.ndim >= 2:
        db.execute(f"CREATE INDEX ON {table} (i0)")


class PostgresSession(DatabaseSession):
    """Runs one Program compiled for PostgreSQL on one database; its weights must be there."""

    backend = "postgres"
    display = "PostgreSQL"

    errors = staticmethod(postgres_errors)
