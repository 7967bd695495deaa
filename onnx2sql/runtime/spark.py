"""Spark SQL as a runtime (backend "spark"): a local Spark (`local[2]`) or any master URL.

A tensor table is a temporary view with the columns i0.., c and v, an array of up to `chunk`
elements. Weights are Parquet files that every worker reads (a folder on shared storage for a
cluster); feeds are made from Python rows. A region's view is lazy: Spark keeps its plan, with
the plans of the views it reads captured when it is defined, and runs it when something reads
it. A view that several later regions read is computed once and kept
(`localCheckpoint`), which also cuts the plans that read it short. The KV cache grows as the
union of each step's new rows, each computed once: no step copies the past.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
from contextlib import contextmanager
from functools import reduce
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Callable, Iterator, Mapping, Sequence

import numpy as np

from onnx2sql.dialects.spark import SPARK_NAMES, VARIABLE_PREFIX, backticks
from onnx2sql.emit.program import OUTPUT_ROWS_FROM, Program
from onnx2sql.emit.regions import region_reads
from onnx2sql.errors import DatabaseError, InputError
from onnx2sql.runtime.session import DatabaseSession, checked_tensor
from onnx2sql.storage.arrays import chunk_pieces

if TYPE_CHECKING:  # lowering's modules: running a compiled program needs none of them
    from onnx2sql.ops.context import WeightTable

DEFAULT_MASTER = "local[2]"
# Spark runs with DuckDB's semantics where they differ (a subscript out of range is NULL, not an
# error); no web UI on a shared machine; few shuffle partitions for tensors of kilobytes to
# megabytes (the default, 200, makes a task per partition of every GROUP BY).
SPARK_CONF = {
    "spark.sql.ansi.enabled": "false",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.sql.adaptive.coalescePartitions.enabled": "true",
    # A region's statement nests tens of CTEs: its analysis takes more than the default 100 passes.
    "spark.sql.analyzer.maxIterations": "1000",
    "spark.sql.optimizer.maxIterations": "1000",
}
LOG_CONFIG = Path(__file__).with_name("spark_log4j2.properties")
_VIEW = re.compile(r"CREATE OR REPLACE TEMPORARY VIEW (`(?:[^`]|``)+`) AS\n")
_INSERT = re.compile(r"INSERT INTO (`(?:[^`]|``)+`)\n")

# Element types of tensor columns, by numpy dtype.
_SPARK_TYPES = {"float32": "float", "float64": "double", "int64": "long", "int32": "integer", "int16": "short",
                "int8": "byte", "uint8": "short", "uint16": "integer", "uint32": "long", "bool": "boolean"}


def _import_pyspark():
    try:
        import pyspark  # noqa: F401
        from pyspark.sql import SparkSession
    except ImportError:
        raise InputError("backend spark needs pyspark: pip install 'onnx2sql[spark]'") from None
    return SparkSession


def _spark_error_types() -> tuple[type[BaseException], ...]:
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    return (PySparkException, Py4JError)


def first_line(exc: BaseException) -> str:
    """The message of a Spark error without its JVM stack."""
    java = getattr(exc, "java_exception", None)
    text = (str(java.toString()) if java is not None else str(exc)).strip()
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


@contextmanager
def spark_errors(what: str = "Spark") -> Iterator[None]:
    """Spark's errors as onnx2sql's DatabaseError, their first line after `what`."""
    _import_pyspark()
    try:
        yield
    except _spark_error_types() as exc:
        raise DatabaseError(f"{what}: {first_line(exc)}") from exc


def start_spark(master: str | None = None):
    """The process's Spark session on `master`: the running one when it has that master (or
    `master` is None), else one started now (on local[2] when `master` is None)."""
    SparkSession = _import_pyspark()
    active = SparkSession.getActiveSession()
    if active is not None and master in (None, active.sparkContext.master):
        _configure(active)
        return active
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise InputError("backend spark needs Java 17 or newer: apt-get install openjdk-17-jre-headless "
                         "(or set JAVA_HOME)")
    master = master or DEFAULT_MASTER
    if active is not None:
        active.stop()
    builder = SparkSession.builder.master(master).appName("onnx2sql")
    # Read when the driver's JVM starts: no log lines on the terminal, before or after.
    builder = builder.config("spark.driver.extraJavaOptions", f"-Dlog4j.configurationFile={LOG_CONFIG.as_uri()}")
    for key, value in SPARK_CONF.items():
        builder = builder.config(key, value)
    try:
        with _jvm_stderr_discarded():
            spark = builder.getOrCreate()
    except _spark_error_types() as exc:
        raise InputError(f"cannot start Spark on --spark-master {master!r}: {first_line(exc)} (a master URL is "
                         "local[N] or spark://host:port)") from None
    _configure(spark)
    return spark


def _configure(spark) -> None:
    """onnx2sql's settings in a session (one that was running already gets them too)."""
    # Errors come back as exceptions, with their message; Spark's own log of them would repeat it.
    spark.sparkContext.setLogLevel("OFF")
    for key, value in SPARK_CONF.items():
        if not key.startswith("spark.ui"):
            spark.conf.set(key, value)


@contextmanager
def _jvm_stderr_discarded() -> Iterator[None]:
    """The JVM that starts meanwhile writes its stderr to /dev/null: it prints notes on its start
    (incubator modules, log levels) whatever the log configuration says. Its errors reach onnx2sql
    as exceptions."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _Rows:
    """The result of a statement: a query's rows are collected when fetched."""

    def __init__(self, frame) -> None:
        self.frame = frame

    def fetchall(self) -> list[tuple]:
        return [] if self.frame is None else [tuple(row) for row in self.frame.collect()]


class SparkDatabase:
    """Temporary views of one Spark session, with the tensor-table I/O of onnx2sql."""

    def __init__(self, spark) -> None:
        self.spark = spark
        self.views: set[str] = set()  # views of runs (feeds and computed tensors)
        self.kept: set[str] = set()  # views of weights, which stay
        self.pieces: dict[str, list] = {}  # a table appended to: its rows, step by step
        self.materialised: frozenset[str] = frozenset()  # views computed once and kept
        self.declared: set[str] = set()

    @classmethod
    def connect(cls, master: str | None = None) -> SparkDatabase:
        """Temporary views in the Spark session running (when `master` is None or its own), else in
        one started on `master` (local[2] when None)."""
        return cls(start_spark(master))

    # ------------------------------------------------------------------ statements
    def execute(self, query: str, params: Sequence[object] | Mapping[str, object] | None = None) -> _Rows:
        """Runs one statement. The program's own (a view of a region, rows appended to the KV
        cache) run through DataFrames, so that a view keeps the plans it read when defined."""
        sql = SPARK_NAMES.run(query)
        args = dict(params) if isinstance(params, Mapping) else None
        view = _VIEW.match(sql)
        if view:
            self._define(_unquote(view[1]), sql[view.end():], args)
            return _Rows(None)
        insert = _INSERT.match(sql)
        if insert:
            self._append(_unquote(insert[1]), sql[insert.end():], args)
            return _Rows(None)
        return _Rows(self.spark.sql(sql, args=args))

    def fetchall(self, query: str, params: Mapping[str, object] | None = None) -> list[tuple]:
        return self.execute(query, params).fetchall()

    def _define(self, name: str, query: str, args: dict | None) -> None:
        frame = self.spark.sql(query, args=args)
        # A view defined from itself (the KV cache's rows renumbered) must not read its own name.
        if name in self.materialised or backticks(name) in query:
            frame = frame.localCheckpoint()
        self._register(name, frame)

    def _append(self, name: str, query: str, args: dict | None) -> None:
        new_rows = self.spark.sql(query, args=args).localCheckpoint()
        # A view of another's making starts as computed rows (reading its name would be a cycle).
        pieces = [*(self.pieces.get(name) or [self.spark.table(name).localCheckpoint()]), new_rows]
        self._register(name, reduce(lambda whole, piece: whole.unionByName(piece), pieces), pieces)

    def _register(self, name: str, frame, pieces: list | None = None) -> None:
        """`frame` as the view `name`, the union of `pieces` (itself when None), which the rows a
        later append adds are joined to."""
        frame.createOrReplaceTempView(name)
        self.views.add(name)
        self.pieces[name] = pieces or [frame]

    # ------------------------------------------------------------------ tensors
    def write_tensor(self, table: str, array: np.ndarray, chunk: int, temporary: bool = True) -> None:
        """(Re)defines the view `table` as the chunked tensor table of `array`."""
        from pyspark.sql.types import ArrayType, LongType, StructField, StructType, _parse_datatype_string

        if chunk < 1:
            raise InputError(f"chunk must be at least 1, not {chunk}")
        arr = np.asarray(array)
        arr = arr.reshape(1) if arr.ndim == 0 else arr
        if arr.dtype.name not in _SPARK_TYPES:
            raise InputError(f"element type {arr.dtype.name} is not supported on spark")
        fields = [StructField(f"i{k}", LongType()) for k in range(arr.ndim - 1)]
        fields += [StructField("c", LongType()),
                   StructField("v", ArrayType(_parse_datatype_string(_SPARK_TYPES[arr.dtype.name])))]
        rows = [(*key, piece.tolist()) for key, piece in chunk_pieces(arr, chunk)]
        self._register(table, self.spark.createDataFrame(rows, StructType(fields)))

    def register_weights(self, folder: Path) -> None:
        """Every Parquet file of `folder` as the view its name gives (write_parquet_weights names
        them after the program's tables); they stay for every run."""
        for path in sorted(folder.glob("*.parquet")):
            self.spark.read.parquet(str(path)).createOrReplaceTempView(path.stem)
            self.kept.add(path.stem)

    def read_tensor(self, table: str, rank: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """The tensor table `table` back into an array of `shape` and `dtype`; checks that every
        element is there. A null element reads as NaN."""
        order = [f"i{k}" for k in range(rank - 1)] + ["c"]
        rows = self.spark.table(table).orderBy(*order).select("v").collect()
        pieces = [np.array([np.nan if x is None else x for x in row[0]]) for row in rows if row[0] is not None]
        flat = np.concatenate(pieces) if pieces else np.zeros(0)
        return checked_tensor(table, flat, shape, dtype)

    def set_symbols(self, bindings: Mapping[str, int]) -> None:
        """The symbols as session variables, which getvariable() reads."""
        self.declare(list(bindings))
        for name, value in bindings.items():
            self.spark.sql(f"SET VARIABLE {backticks(VARIABLE_PREFIX + name)} = {int(value)}")

    def declare(self, names: Sequence[str]) -> None:
        """Symbols a program may read before they are set (NULL until then, as in DuckDB)."""
        for name in names:
            if name not in self.declared:
                self.spark.sql(f"DECLARE OR REPLACE VARIABLE {backticks(VARIABLE_PREFIX + name)} "
                               "BIGINT DEFAULT NULL")
                self.declared.add(name)

    def drop_temporaries(self) -> None:
        """Drops the views of runs; the weights' stay."""
        for name in sorted(self.views):
            self.spark.catalog.dropTempView(name)
        self.views.clear()
        self.pieces.clear()

    def close(self) -> None:
        """Drops this database's views; the process's Spark keeps running for the next."""
        try:
            self.drop_temporaries()
            for name in sorted(self.kept):
                self.spark.catalog.dropTempView(name)
            self.kept.clear()
        except _spark_error_types():
            pass

    def __enter__(self) -> SparkDatabase:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _unquote(name: str) -> str:
    return name[1:-1].replace("``", "`")


def write_parquet_weights(weights: Sequence[WeightTable], folder: Path,
                          on_weight: Callable[[int], None] | None = None) -> None:
    """Each weight's chunked table as the Parquet file folder/<table>.parquet, written by DuckDB
    (fast, and no pyarrow); `on_weight(k)` follows progress."""
    import duckdb

    from onnx2sql.dialects.duckdb import DUCKDB
    from onnx2sql.storage.arrays import write_feed

    con = duckdb.connect()
    try:
        for k, weight in enumerate(weights):
            if on_weight is not None:
                on_weight(k)
            write_feed(con, "w", weight.array, weight.chunk)
            con.execute(f"COPY w TO {DUCKDB.quote_literal(str(folder / f'{weight.table}.parquet'))} (FORMAT parquet)")
    finally:
        con.close()


def materialised_tables(program: Program) -> frozenset[str]:
    """The tables a run computes once and keeps: those several regions read. A graph output is
    computed when it is read (once, by Python or by the statement choosing the next token)."""
    readers: dict[str, int] = {}
    for region in program.regions:
        for table in region_reads(program.statements, region):
            readers[table] = readers.get(table, 0) + 1
    return frozenset(t for t, count in readers.items() if count > 1)


class SparkSqlSession(DatabaseSession):
    """Runs one Program compiled for Spark in one Spark session; its weights must be there."""

    backend = "spark"
    display = "Spark"

    errors = staticmethod(spark_errors)

    def __init__(self, db, program: Program):
        super().__init__(db, program)
        self.db.materialised = materialised_tables(program)
        self.db.declare([OUTPUT_ROWS_FROM])

    def load_kernels(self) -> None:
        raise InputError("backend spark runs pure SQL (--kernels sql)")

    def execute(self, drop: bool = True) -> None:
        # A lazy view reads the views it was defined from: none is dropped before the run ends.
        super().execute(drop=False)

