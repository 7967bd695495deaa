"""A DuckDB connection that runs a Program: binds symbolic dims, loads feeds, executes, reads outputs."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, ContextManager, Iterable, Mapping

import duckdb
import numpy as np

from onnx2sql.emit.dims import evaluate_dim, static_dim
from onnx2sql.emit.program import Program
from onnx2sql.emit.sql import quote_ident, quote_literal
from onnx2sql.errors import InputError, ModelError, ShapeError
from onnx2sql.storage.arrays import read_table, write_feed

if TYPE_CHECKING:
    from onnx2sql.runtime.step_profile import StatementProfiler

META_TABLE = "onnx2sql_meta"

# erf has no DuckDB builtin: Numerical Recipes' erfc Chebyshev fit (fractional error < 1.2e-7).
_MACROS = [
    """CREATE OR REPLACE TEMP MACRO onnx_erfc_pos(z) AS (
        (1.0 / (1.0 + 0.5 * z)) * exp(-z * z - 1.26551223 + (1.0 / (1.0 + 0.5 * z)) * (1.00002368
        + (1.0 / (1.0 + 0.5 * z)) * (0.37409196 + (1.0 / (1.0 + 0.5 * z)) * (0.09678418
        + (1.0 / (1.0 + 0.5 * z)) * (-0.18628806 + (1.0 / (1.0 + 0.5 * z)) * (0.27886807
        + (1.0 / (1.0 + 0.5 * z)) * (-1.13520398 + (1.0 / (1.0 + 0.5 * z)) * (1.48851587
        + (1.0 / (1.0 + 0.5 * z)) * (-0.82215223 + (1.0 / (1.0 + 0.5 * z)) * 0.17087277)))))))))
    )""",
    "CREATE OR REPLACE TEMP MACRO onnx_erf(x) AS sign(x) * (1.0 - onnx_erfc_pos(abs(CAST(x AS DOUBLE))))",
]


def connect(path: str | Path | None = None, read_only: bool = False,
            config: dict[str, str] | None = None) -> duckdb.DuckDBPyConnection:
    # Settings such as memory_limit go in at connect time: lowering a limit later fails once
    # DuckDB already holds more than the new limit.
    # Nothing is ever fetched from the network: a file DuckDB cannot read itself is refused
    # instead of having an extension for it downloaded and loaded. Unsigned extensions: the
    # native kernels are built here, not signed by DuckDB; only a LOAD of their file
    # (onnx2sql/runtime/kernels.py) loads anything.
    settings = {"autoinstall_known_extensions": False, "autoload_known_extensions": False,
                "allow_unsigned_extensions": True, **(config or {})}
    con = duckdb.connect(str(path) if path else ":memory:", read_only=read_only, config=settings)
    for macro in _MACROS:
        con.execute(macro)
    return con


class CountingConnection:
    """A DuckDB connection that counts the statements sent through it (`execute` and `sql`), so
    that a generation step can report how many statements it ran. Everything else passes through."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self._con = con
        self.statements = 0
        # A runtime.step_profile.StatementProfiler while a step is profiled.
        self.profiler: StatementProfiler | None = None

    def execute(self, *args: object, **kwargs: object) -> duckdb.DuckDBPyConnection:
        self.statements += 1
        if self.profiler is not None:
            return self.profiler.run(self._con, lambda: self._con.execute(*args, **kwargs), args[0] if args else None)
        return self._con.execute(*args, **kwargs)

    def sql(self, *args: object, **kwargs: object) -> duckdb.DuckDBPyRelation:
        self.statements += 1
        return self._con.sql(*args, **kwargs)

    def __getattr__(self, name: str) -> object:
        return getattr(self._con, name)


class Session:
    """Runs one Program on one connection; the weight tables must already be in the database."""

    def __init__(self, con: duckdb.DuckDBPyConnection, program: Program):
        self.con = con
        self.program = program
        if program.kernels == "native":
            self.load_kernels()
        self.trace = os.environ.get("ONNX2SQL_TRACE", "") not in ("", "0")
        self.bindings: dict[str, int] = {}  # symbol name -> value

    def load_kernels(self) -> None:
        """Make the native kernels a program compiled with --kernels native calls available."""
        load_program_kernels(self.con)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One run: feeds in, every graph output out; temporary tables are dropped afterwards."""
        arrays = self._check_feeds(feeds)
        try:
            bindings = self.bind(arrays)
            self.load_inputs(arrays)
            self.execute()
            return {spec.name: self.read(spec.name, bindings) for spec in self.program.outputs}
        finally:
            self.drop_temporaries()

    def bind(self, arrays: Mapping[str, np.ndarray]) -> dict[str, int]:
        """Set the symbol variables from the feeds' shapes (only shapes are read: broadcast views do)."""
        bindings = self._bind_symbols(arrays)
        self.bindings = bindings
        self.set_symbols(bindings)
        return bindings

    def set_symbols(self, bindings: Mapping[str, int]) -> None:
        """Make the symbols' values readable by the program (getvariable)."""
        for symbol, value in bindings.items():
            self.con.execute(f"SET VARIABLE {symbol} = {int(value)}")

    def load_inputs(self, arrays: Mapping[str, np.ndarray], skip: frozenset[str] = frozenset()) -> None:
        for spec in self.program.inputs:
            if spec.name not in skip:
                self.write_feed(spec.table, arrays[spec.name])

    def write_feed(self, table: str, array: np.ndarray) -> None:
        write_feed(self.con, table, array, self.program.chunk)

    def read_tensor(self, table: str, rank: int, shape: tuple[int, ...], dtype: np.dtype,
                    where: str = "TRUE") -> np.ndarray:
        """A tensor table (or its rows matching `where`, a trusted SQL condition) as an array."""
        return read_table(self.con, table, rank, shape, dtype, where)

    def execute(self, drop: bool = True) -> None:
        """Run the program; `drop=False` keeps its intermediate tables (see Program.executable)."""
        self._run(self.program.executable(drop))

    def _run(self, sqls: Iterable[str]) -> None:
        for k, sql in enumerate(sqls):
            if self.trace:
                print(f"-- [{k}]\n{sql}", file=sys.stderr)
            self.con.execute(sql)

    def read(self, output: str, bindings: Mapping[str, int]) -> np.ndarray:
        spec = next(s for s in self.program.outputs if s.name == output)
        shape = tuple(evaluate_dim(d, bindings) for d in spec.shape)
        try:
            return self.read_tensor(spec.table, len(spec.shape), shape, np.dtype(spec.dtype))
        except ShapeError as exc:
            # Rows go missing when a Gather's index selects a row that does not exist.
            raise InputError(f"output {output!r} came out incomplete ({exc}): does an index input select "
                             "rows that do not exist, such as a token id beyond the vocabulary?") from exc

    def _check_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        expected = {spec.name: spec for spec in self.program.inputs}
        missing = [n for n in expected if n not in feeds]
        if missing:
            raise InputError(f"missing feed(s) for graph input(s) {missing}; the model expects {list(expected)}")
        unknown = [n for n in feeds if n not in expected]
        if unknown:
            raise InputError(f"feed(s) {unknown} name no graph input; the model expects {list(expected)}")
        arrays = {}
        for name, spec in expected.items():
            arr = np.asarray(feeds[name])
            if arr.dtype != np.dtype(spec.dtype):
                raise InputError(f"input {name!r} must be {spec.dtype}, got {arr.dtype}")
            if arr.ndim != len(spec.shape):
                raise InputError(f"input {name!r} must have rank {len(spec.shape)} (shape [{', '.join(spec.shape)}]), "
                                 f"got shape {list(arr.shape)}")
            arrays[name] = arr
        return arrays

    def _bind_symbols(self, arrays: dict[str, np.ndarray]) -> dict[str, int]:
        bindings = {source.symbol: int(arrays[source.input].shape[source.axis]) for source in self.program.symbols}
        for spec in self.program.inputs:
            for axis, dim in enumerate(spec.shape):
                size = int(arrays[spec.name].shape[axis])
                want = evaluate_dim(dim, bindings)
                if want != size:
                    described = "" if static_dim(dim) is not None else f"{self._describe(dim)} = "
                    raise InputError(f"input {spec.name!r} axis {axis} must be {described}{want}, got {size}")
        return bindings

    def _describe(self, dim: str) -> str:
        for source in self.program.symbols:
            dim = re.sub(rf"\b{source.symbol}\b", source.label, dim)
        return dim

    def drop_temporaries(self) -> None:
        tables = self.con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE temporary AND database_name = 'temp'"
        ).fetchall()
        for (table,) in tables:
            self.con.execute(f"DROP TABLE IF EXISTS temp.main.{quote_ident(table)}")


class RepeatingSession(Session):
    """A DuckDB Session whose program runs again and again (a step per generated token). The first
    time a region runs, its query becomes a table macro, and from then on the region's statement
    reads the macro: DuckDB parses a statement's text on every execution, about 1 µs a character
    (a SmolLM2 step is 400 KB of SQL), while a macro keeps its parsed query. Binding and planning
    happen on every execution either way. A macro is bound when it is created, so it is made just
    before its region first runs, when every table it reads exists."""

    MACRO_PREFIX = "onnx2sql_region_"

    def __init__(self, con: duckdb.DuckDBPyConnection, program: Program):
        super().__init__(con, program)
        self.macros: set[int] = set()

    def execute(self, drop: bool = True) -> None:
        self._run(self.program.executable(drop, region_sql=self._through_macro))

    def _through_macro(self, k: int) -> str:
        name = f"{self.MACRO_PREFIX}{k}"
        if k not in self.macros:
            self.con.execute(f"CREATE OR REPLACE TEMP MACRO {name}() AS TABLE {self.program.region_query(k)}")
            self.macros.add(k)
        return self.program.region_sql(k, query=f"SELECT * FROM {name}()")


class DatabaseSession(Session):
    """A Session on a database other than DuckDB, through onnx2sql's object for it (PostgreSQL's,
    SQLite's), which writes and reads tensor tables, sets symbols and drops temporary tables.
    Subclasses name their backend and turn its errors into DatabaseError."""

    backend = ""
    display = ""  # the database's name in messages
    ROWS_TABLE = "onnx2sql_rows_read"  # a temporary table of the rows read_tensor is asked for

    def __init__(self, db, program: Program):
        if program.backend != self.backend:
            raise ModelError(f"this program was compiled for {program.backend}, not {self.backend}")
        self.db = db
        super().__init__(db, program)  # type: ignore[arg-type]

    @staticmethod
    def errors(what: str) -> ContextManager[None]:
        """The database's errors as DatabaseError, their message after `what`."""
        raise NotImplementedError

    def set_symbols(self, bindings: Mapping[str, int]) -> None:
        self.db.set_symbols(bindings)

    def write_feed(self, table: str, array: np.ndarray) -> None:
        self.db.write_tensor(table, array, self.program.chunk, temporary=True)

    def read_tensor(self, table: str, rank: int, shape: tuple[int, ...], dtype: np.dtype,
                    where: str = "TRUE") -> np.ndarray:
        if where == "TRUE":
            return self.db.read_tensor(table, rank, shape, dtype)
        # The matching rows, as a table of their own: the database reads whole tables.
        from onnx2sql.dialects import dialect_for

        self.db.execute(dialect_for(self.backend).create_table_as(
            quote_ident(self.ROWS_TABLE), f"SELECT * FROM {quote_ident(table)} WHERE {where}"))
        return self.db.read_tensor(self.ROWS_TABLE, rank, shape, dtype)

    def execute(self, drop: bool = True) -> None:
        with self.errors(f"{self.display} refused a statement of the program"):
            super().execute(drop)

    def drop_temporaries(self) -> None:
        """Drop the tables of a run (feeds and computed tensors); weights stay."""
        self.db.drop_temporaries()


def checked_tensor(table: str, flat: np.ndarray, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """`flat`, the elements read from the tensor table `table` in order, as an array of `shape` and
    `dtype`; a ShapeError when the table does not hold every element."""
    expected = int(np.prod(shape, dtype=np.int64))
    if flat.size != expected:
        raise ShapeError(f"table {table} holds {flat.size} elements, shape {list(shape)} needs {expected}")
    return flat.astype(dtype).reshape(shape)


def load_program_kernels(con: duckdb.DuckDBPyConnection) -> None:
    """Load the native kernels a program compiled with --kernels native calls, or say how to get them."""
    from onnx2sql.runtime.kernels import KernelsUnavailable, load_kernels

    try:
        load_kernels(con)
    except KernelsUnavailable as exc:
        raise KernelsUnavailable(f"this program was compiled with --kernels native: {exc}; or compile it again "
                                 "with --kernels sql") from None


def read_meta(con: duckdb.DuckDBPyConnection, key: str) -> str | None:
    # fetchall: a result left unfinished would block the next use of the connection.
    rows = con.execute(f"SELECT value FROM {META_TABLE} WHERE key = ?", [key]).fetchall()
    return rows[0][0] if rows else None


def meta_exists(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(con.execute(
        f"SELECT count(*) FROM duckdb_tables() WHERE table_name = {quote_literal(META_TABLE)} AND NOT temporary"
    ).fetchall()[0][0])
