"""SQLite as a runtime (backend "sqlite"): a database file, or memory, through apsw.

Python's own sqlite3 module cannot load extensions on many builds; apsw (PyPI) bundles a recent
SQLite (JSON functions, ORDER BY inside aggregates, math functions) the same everywhere. A tensor
table has the columns i0.., c (INTEGER) and v, the TEXT of a JSON array of up to `chunk`
elements: NaN is written as null (SQLite stores NaN as NULL), infinities as 9e999.
"""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np

from onnx2sql.dialects.sqlite import SQLITE, SYMBOLS_TABLE
from onnx2sql.emit.sql import quote_ident
from onnx2sql.errors import DatabaseError, InputError, KernelsUnavailable, UsageError
from onnx2sql.ops.context import WeightTable
from onnx2sql.runtime.kernel_mode import requested_mode
from onnx2sql.runtime.session import DatabaseSession, checked_tensor
from onnx2sql.storage.arrays import chunk_pieces

SQLITE_ENTRY_POINT = "onnx2sql_sqlite_init"  # of the extension kernels/sqlite_binding.c
# A run's tensors are temporary tables: in memory, not in temporary files; weights are read through
# a memory map and a 256 MB page cache. A SmolLM2 step from an empty cache took 4.6 s with SQLite's
# defaults, 3.5 s with temporary tables in memory, 3.1 s with both.
CONNECTION_PRAGMAS = ("temp_store = MEMORY", "mmap_size = 2147418112", "cache_size = -262144")


def _import_apsw():
    try:
        import apsw
    except ImportError:
        raise InputError("backend sqlite needs apsw: pip install 'onnx2sql[sqlite]'") from None
    return apsw


@contextmanager
def sqlite_errors(what: str = "SQLite") -> Iterator[None]:
    """SQLite's errors as onnx2sql's DatabaseError, their message after `what`."""
    apsw = _import_apsw()
    try:
        yield
    except apsw.Error as exc:
        raise DatabaseError(f"{what}: {exc}".strip()) from exc


class SqliteDatabase:
    """One connection to a SQLite database, with the tensor-table I/O of onnx2sql."""

    def __init__(self, connection: object) -> None:
        self.connection = connection

    @classmethod
    def connect(cls, path: str | Path | None = None) -> SqliteDatabase:
        """The database file `path` (created when missing), or one in memory."""
        apsw = _import_apsw()
        target = ":memory:" if path is None else str(path)
        if path is not None and Path(target).is_dir():
            raise InputError(f"--db {target!r} is a folder; name a SQLite database file")
        try:
            connection = apsw.Connection(target)
            for pragma in CONNECTION_PRAGMAS:
                connection.execute(f"PRAGMA {pragma}")
        except apsw.Error as exc:
            raise InputError(f"cannot open SQLite database {target!r}: {exc}") from None
        return cls(connection)

    def execute(self, query: str, params: Sequence[object] | Mapping[str, object] | None = None):
        """Runs `query` (several statements when there are no params) and returns its cursor. A list
        parameter is bound as the text of a JSON array, as lists are stored."""
        if isinstance(params, Mapping):
            params = {k: json.dumps(v) if isinstance(v, (list, tuple)) else v for k, v in params.items()}
        return self.connection.cursor().execute(query, params)

    def fetchall(self, query: str, params: Sequence[object] | Mapping[str, object] | None = None) -> list[tuple]:
        return self.execute(query, params).fetchall()

    def write_tensor(self, table: str, array: np.ndarray, chunk: int, temporary: bool = False) -> None:
        """(Re)creates `table` as the chunked tensor table of `array` (a scalar like shape [1]), in
        one transaction: when loading fails, the table it replaces is still there."""
        if chunk < 1:
            raise InputError(f"chunk must be at least 1, not {chunk}")
        arr = np.asarray(array)
        arr = arr.reshape(1) if arr.ndim == 0 else arr
        columns = [f"i{k} INTEGER" for k in range(arr.ndim - 1)] + ["c INTEGER", "v TEXT"]
        self._replace_table(table, columns, _chunk_rows(arr, chunk), temporary)

    def write_weight(self, weight: WeightTable, temporary: bool = False) -> None:
        """A weight table in its layout: chunked JSON arrays indexed on i0 (which a Gather looks rows
        up by), or whole rows as float32 BLOBs (vectors of the extension's onnx2sql_dot)."""
        if weight.blob != "vector":
            self.write_tensor(weight.table, weight.array, weight.chunk, temporary)
            if weight.array.ndim >= 2:
                index = quote_ident(weight.table + "_i0")
                self.execute(f"CREATE INDEX {'temp.' if temporary else ''}{index} ON {quote_ident(weight.table)} (i0)")
            return
        rows = np.ascontiguousarray(weight.array, dtype="<f4")
        self._replace_table(weight.table, ["i0 INTEGER PRIMARY KEY", "c INTEGER", "v BLOB"],
                            ((i, 0, row.tobytes()) for i, row in enumerate(rows)), temporary)

    def _replace_table(self, table: str, columns: list[str], rows: Iterable[tuple], temporary: bool) -> None:
        """(Re)creates `table` with the column definitions `columns` and the `rows`, in one
        transaction: when loading fails, the table it replaces is still there."""
        name = f"temp.{quote_ident(table)}" if temporary else quote_ident(table)
        with self.connection:
            self.execute(f"DROP TABLE IF EXISTS {name}")
            self.execute(f"CREATE {'TEMP ' if temporary else ''}TABLE {quote_ident(table)} ({', '.join(columns)})")
            self.connection.cursor().executemany(f"INSERT INTO {name} VALUES ({', '.join('?' * len(columns))})", rows)

    def read_tensor(self, table: str, rank: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """The tensor table `table` of a rank-`rank` tensor back into an array of `shape` and
        `dtype`; checks that every element is there. A null element reads as NaN."""
        order = ", ".join([f"i{k}" for k in range(rank - 1)] + ["c"])
        # Every row fetched before any is parsed: a cursor left open would lock the table.
        rows = self.fetchall(f"SELECT v FROM {quote_ident(table)} ORDER BY {order}")
        pieces = [_parsed(v) for (v,) in rows]
        flat = np.concatenate(pieces) if pieces else np.zeros(0)
        return checked_tensor(table, flat, shape, dtype)

    def set_symbols(self, bindings: Mapping[str, int]) -> None:
        """The symbols as rows of the temporary table getvariable() reads; others set before stay,
        as DuckDB's variables do."""
        self.execute(f"CREATE TEMP TABLE IF NOT EXISTS {SYMBOLS_TABLE} (name TEXT PRIMARY KEY, value INTEGER)")
        self.connection.cursor().executemany(f"INSERT OR REPLACE INTO temp.{SYMBOLS_TABLE} VALUES (?, ?)",
                                             [(name, int(value)) for name, value in bindings.items()])

    def temporary_tables(self) -> list[str]:
        return [name for (name,) in self.execute(
            "SELECT name FROM sqlite_temp_master WHERE type = 'table' ORDER BY name")]

    def drop_temporaries(self) -> None:
        """Drops every temporary table of this connection."""
        for name in self.temporary_tables():
            self.execute(f"DROP TABLE IF EXISTS temp.{quote_ident(name)}")

    def table_exists(self, name: str) -> bool:
        """Whether the database (not its temporary tables) holds a table `name`."""
        return bool(self.fetchall("SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = ?", [name]))

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> SqliteDatabase:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _chunk_rows(arr: np.ndarray, chunk: int) -> Iterator[tuple]:
    """(i0, .., c, JSON text) for each chunk of each last-axis row of `arr`; no rows when it is empty."""
    finite = arr.dtype.kind != "f" or bool(np.isfinite(arr).all())
    values = arr.astype(np.float64) if arr.dtype.kind == "f" else arr.astype(np.int64)
    for key, piece in chunk_pieces(values, chunk):
        text = json.dumps(piece.tolist(), separators=(",", ":"))
        if not finite:
            text = text.replace("NaN", "null").replace("Infinity", "9e999")
        yield (*key, text)


def _parsed(text: str | None) -> np.ndarray:
    if text is None:
        return np.zeros(0)
    items = json.loads(text)
    if None in items:
        return np.array([np.nan if x is None else x for x in items], dtype=np.float64)
    return np.array(items)


def sqlite_extension_path() -> Path:
    """Where `make kernels` puts the SQLite extension (beside DuckDB's)."""
    from onnx2sql.runtime.kernels import extension_path

    return extension_path().parent / f"onnx2sql_sqlite{'.dylib' if sys.platform == 'darwin' else '.so'}"


def build_sqlite_kernels() -> Path:
    """Builds the SQLite extension when missing or stale (fast when up to date)."""
    from onnx2sql.runtime.kernels import _build_module

    build = _build_module()
    try:
        return build.build_sqlite(sqlite_extension_path().parent, quiet=True)
    except build.BuildError as exc:
        raise KernelsUnavailable(f"building {sqlite_extension_path()} failed: {exc}") from exc


def load_sqlite_kernels(db: SqliteDatabase) -> None:
    """Loads the SQLite extension (onnx2sql_vector, onnx2sql_dot) into the connection."""
    path = sqlite_extension_path()
    if not path.is_file():
        raise KernelsUnavailable(f"the SQLite kernels extension {path} is missing: `make kernels` "
                                 "(python kernels/build.py) in the repository builds it")
    apsw = _import_apsw()
    try:
        db.connection.enable_load_extension(True)
        db.connection.load_extension(str(path), SQLITE_ENTRY_POINT)
    except apsw.Error as exc:
        raise KernelsUnavailable(f"SQLite refused the kernels extension {path}: {exc}") from exc
    finally:
        db.connection.enable_load_extension(False)


def sqlite_kernels(db: SqliteDatabase, requested: str | None) -> str:
    """The kernel mode of a program compiled for SQLite, with the extension loaded when it is
    "native": auto (the default) is native where the extension builds and loads, else pure SQL
    with one line saying why."""
    mode = requested_mode(requested) or "auto"
    if mode not in ("auto", *SQLITE.kernel_modes):
        raise UsageError(f"backend sqlite runs --kernels native or sql, not {mode!r}")
    if mode == "sql":
        return "sql"
    try:
        build_sqlite_kernels()
        load_sqlite_kernels(db)
    except KernelsUnavailable as exc:
        if mode == "native":
            raise KernelsUnavailable(f"--kernels native: {exc}; or use --kernels sql") from None
        print(f"onnx2sql: SQLite kernels unavailable ({exc}); running pure SQL", file=sys.stderr)
        return "sql"
    return "native"


class SqliteSession(DatabaseSession):
    """Runs one Program compiled for SQLite on one database; its weights must be there."""

    backend = "sqlite"
    display = "SQLite"

    errors = staticmethod(sqlite_errors)

    def load_kernels(self) -> None:
        try:
            load_sqlite_kernels(self.db)
        except KernelsUnavailable as exc:
            raise KernelsUnavailable(f"this program was compiled with --kernels native: {exc}; or compile "
                                     "it again with --kernels sql") from None
