"""The Python API: compile a model into a DuckDB database + SQL files, run it on feeds.

Running a compiled database (here, and for generation) needs neither onnx nor sympy nor pyarrow,
which together take ~65 MB and half a second to import: only the functions that compile import
them."""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import duckdb
import numpy as np

from onnx2sql.emit.program import Program
from onnx2sql.emit.regions import DEFAULT_REGION_SIZE
from onnx2sql.emit.sql import DEFAULT_CHUNK, comment_text, quote_ident, quote_literal, sql_type
from onnx2sql.errors import DatabaseError, InputError, UnsupportedOpError, UsageError
from onnx2sql.runtime.fingerprint import CACHE_SUFFIX, cache_file, model_digests
from onnx2sql.runtime.kernel_mode import check_backend_flags, resolve_weights
from onnx2sql.runtime.session import META_TABLE, Session, connect, meta_exists, read_meta
from onnx2sql.storage.folders import check_output_folder, recover_interrupted_replace, remove_stale_staging, \
    replace_dir, staging_dir

if TYPE_CHECKING:
    import onnx

DB_FILE = "model.duckdb"
FORMAT_VERSION = "4"  # 2: MatMul weights as whole rows in per-range tables; 3: regions; 4: int8 tiles, inline constants
# DuckDB scans a table in parallel one row group at a time; at the default 122,880 rows a layer's
# weight table is one group and its MatMul runs on one thread. The smallest size DuckDB allows
# (one vector) lets every core take part.
WEIGHT_ROW_GROUP = 2048
# What compile writes into its folder: a folder holding anything else is never replaced.
COMPILED_FILES = frozenset({DB_FILE, f"{DB_FILE}.wal", DB_FILE + CACHE_SUFFIX, "program.sql", "schema.sql"})
# run() refuses a feed longer than this along an axis the model leaves variable (a sequence of
# tokens, a batch): the attention of a 20,000-token input alone would hold billions of values.
MAX_VARIABLE_AXIS = 8192
DUCKDB_MAGIC = b"DUCK"  # bytes 8 to 11 of every DuckDB database file


def compile(model: str | Path | onnx.ModelProto, out_dir: str | Path, chunk_size: int | None = None,
            progress: bool = False, region_size: int = DEFAULT_REGION_SIZE, kernels: str | None = None,
            weights: str | None = None) -> Path:
    """Compile a model into out_dir/: model.duckdb (weights + program), program.sql, schema.sql.

    Nothing is written when the model cannot be compiled; an existing out_dir is replaced only
    once the new one is complete. `kernels`: "auto" (the default), "native" or "sql". `weights`:
    "fp32" (the default) or "int8" (the native kernels' int8 tiles)."""
    from onnx2sql.graph.visitor import lower_model

    chunk = _chunk(chunk_size)
    mode, weight_format = resolve_weights(weights, kernels)
    out = Path(out_dir)
    check_output_folder(out, COMPILED_FILES)
    recover_interrupted_replace(out)
    remove_stale_staging(out)
    proto, data_files = load_valid_model(model)
    program = lower_model(proto, chunk, region_size=region_size, kernels=mode, weights=weight_format)
    staging = staging_dir(out)
    try:
        con = connect_for_writing(staging / DB_FILE)
        try:
            _store_weights(con, program, progress)
            con.execute(f"CREATE TABLE {META_TABLE} (key VARCHAR PRIMARY KEY, value VARCHAR)")
            meta = {"format": FORMAT_VERSION, "program": program.to_json(),
                    "index_bounds": json.dumps(index_bounds(proto)),
                    **fingerprint(model, proto, data_files, staging / DB_FILE)}
            con.executemany(f"INSERT INTO {META_TABLE} VALUES (?, ?)", list(meta.items()))
            con.execute("CHECKPOINT")
        finally:
            con.close()
        (staging / "program.sql").write_text(program.script(), encoding="utf-8")
        (staging / "schema.sql").write_text(_schema_script(program), encoding="utf-8")
        replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def connect_for_writing(path: Path) -> duckdb.DuckDBPyConnection:
    """A connection whose default database is a new file with small row groups."""
    con = connect()
    con.execute(f"ATTACH {quote_literal(str(path))} AS compiled (ROW_GROUP_SIZE {WEIGHT_ROW_GROUP})")
    con.execute("USE compiled")
    # Weights are read on every step: ALPRD-compressed floats saved 12% of the file but made a
    # matrix-vector product 1.6x slower than uncompressed ones.
    con.execute("SET force_compression = 'uncompressed'")
    return con


def run(model: str | Path | onnx.ModelProto, feeds: Mapping[str, np.ndarray],
        chunk_size: int | None = None, region_size: int = DEFAULT_REGION_SIZE,
        kernels: str | None = None, weights: str | None = None, backend: str = "duckdb",
        db: str | None = None, spark_master: str | None = None) -> dict[str, np.ndarray]:
    """Run a model on feeds in DuckDB; returns every graph output by name.

    `model` is an ONNX path or ModelProto (compiled into an in-memory database first) or a
    folder written by compile() (nothing is loaded again). A feed longer than MAX_VARIABLE_AXIS
    along a variable axis, or an index beyond the table it selects from, is refused first.
    `backend="postgres"` compiles the model for PostgreSQL and runs it in the database at the
    connection URL `db`, in temporary tables that end with the connection; `backend="sqlite"`
    runs it in SQLite, in memory or in temporary tables of the database file `db`; `backend="spark"`
    runs it in Spark on `spark_master` (local[2] when None), in temporary views."""
    chunk = _chunk(chunk_size)
    check_backend_flags(backend, kernels, weights, spark_master)
    if backend != "duckdb":
        return _run_elsewhere(model, feeds, chunk, region_size, backend, db, kernels, spark_master)
    if db is not None:
        raise UsageError("db= (--db) names a database of another backend; DuckDB runs in memory here")
    if isinstance(model, (str, Path)) and Path(model).is_dir():
        con, program = open_compiled(Path(model))
        try:
            _check_feed_sizes(feeds, {s.name: [_is_fixed_text(d) for d in s.shape] for s in program.inputs})
            check_index_feeds(feeds, _stored_index_bounds(con))
            return _run_session(con, program, feeds, Path(model) / DB_FILE)
        finally:
            con.close()
    proto, _ = load_valid_model(model)
    _check_feed_sizes(feeds, _fixed_axes(proto))  # before lowering: a refusal comes at once
    check_index_feeds(feeds, index_bounds(proto))
    program, feeds = _lower_for_feeds(proto, chunk, feeds, region_size, *resolve_weights(weights, kernels))
    con = connect()
    try:
        _store_weights(con, program, progress=False)
        return _run_session(con, program, feeds, None)
    finally:
        con.close()


def _run_elsewhere(model: str | Path | onnx.ModelProto, feeds: Mapping[str, np.ndarray], chunk: int,
                   region_size: int, backend: str, db: str | None, kernels: str | None,
                   spark_master: str | None = None) -> dict[str, np.ndarray]:
    """run() on a backend other than DuckDB (an ONNX model; its weights as temporary tables)."""
    from onnx2sql.dialects import dialect_for

    dialect_for(backend)  # an unknown name is refused first
    if backend == "postgres" and not db:
        raise UsageError(f"backend {backend} needs a database: pass db= (--db) a postgresql:// URL")
    if backend == "spark" and db is not None:
        raise UsageError("backend spark runs in temporary views: db= (--db) is not used; --spark-master names "
                         "the cluster")
    if isinstance(model, (str, Path)) and Path(model).is_dir():
        raise UsageError(f"backend {backend} runs an ONNX model file; a compiled folder is a DuckDB database")
    proto, _ = load_valid_model(model)
    _check_feed_sizes(feeds, _fixed_axes(proto))
    check_index_feeds(feeds, index_bounds(proto))
    if backend == "sqlite":
        return _run_on_sqlite(proto, feeds, chunk, region_size, db, kernels)
    if backend == "spark":
        return _run_on_spark(proto, feeds, chunk, region_size, spark_master)
    return _run_on_postgres(proto, feeds, chunk, region_size, db, kernels)


def _run_on_postgres(proto: onnx.ModelProto, feeds: Mapping[str, np.ndarray], chunk: int, region_size: int,
                     db: str, kernels: str | None) -> dict[str, np.ndarray]:
    """run() in the PostgreSQL database at the URL `db`, in temporary tables."""
    from onnx2sql.runtime.postgres import PostgresDatabase
    from onnx2sql.runtime.postgres_session import PostgresSession, postgres_errors, postgres_kernels, \
        prepare_database, write_weight

    with PostgresDatabase.connect(db) as database, postgres_errors():
        prepare_database(database)
        mode = postgres_kernels(database, kernels)
        program, feeds = _lower_for_feeds(proto, chunk, feeds, region_size, kernels=mode, backend="postgres")
        for weight in program.weights:
            write_weight(database, weight, temporary=True)
        return PostgresSession(database, program).run(feeds)


def _run_on_sqlite(proto: onnx.ModelProto, feeds: Mapping[str, np.ndarray], chunk: int, region_size: int,
                   db: str | None, kernels: str | None) -> dict[str, np.ndarray]:
    """run() on SQLite: in memory, or in temporary tables of the database file `db`."""
    from onnx2sql.runtime.sqlite import SqliteDatabase, SqliteSession, sqlite_errors, sqlite_kernels

    with SqliteDatabase.connect(db) as database, sqlite_errors():
        mode = sqlite_kernels(database, kernels)
        program, feeds = _lower_for_feeds(proto, chunk, feeds, region_size, kernels=mode, backend="sqlite")
        for weight in program.weights:
            database.write_weight(weight, temporary=True)
        return SqliteSession(database, program).run(feeds)


def _run_on_spark(proto: onnx.ModelProto, feeds: Mapping[str, np.ndarray], chunk: int, region_size: int,
                  master: str | None) -> dict[str, np.ndarray]:
    """run() on Spark: the weights as Parquet files in a temporary folder, the rest as views."""
    from onnx2sql.runtime.spark import SparkDatabase, SparkSqlSession, spark_errors, write_parquet_weights

    program, feeds = _lower_for_feeds(proto, chunk, feeds, region_size, kernels="sql", backend="spark")
    with tempfile.TemporaryDirectory(prefix="onnx2sql-spark-") as folder, spark_errors(), \
            SparkDatabase.connect(master) as database:
        write_parquet_weights(program.weights, Path(folder))
        database.register_weights(Path(folder))
        return SparkSqlSession(database, program).run(feeds)


def _run_session(con: duckdb.DuckDBPyConnection, program: Program, feeds: Mapping[str, np.ndarray],
                 db: Path | None) -> dict[str, np.ndarray]:
    try:
        return Session(con, program).run(feeds)
    except duckdb.Error as exc:
        explain_database_error(db, exc)
        raise


def load_valid_model(model: str | Path | onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """The model, read and checked by onnx's checker (ModelError naming what it found), and the
    external data files it was read from."""
    import onnx

    from onnx2sql.graph.checker import validate_model
    from onnx2sql.graph.load import load_model_with_data_files

    proto, data_files = load_model_with_data_files(model)
    validate_model(proto, None if isinstance(model, onnx.ModelProto) else Path(model))
    return proto, data_files


def _chunk(chunk_size: int | None) -> int:
    if chunk_size is None:
        return DEFAULT_CHUNK
    if chunk_size < 1:
        raise UsageError(f"--chunk-size must be at least 1, got {chunk_size}")
    return chunk_size


def _is_fixed_text(dim: str) -> bool:
    return dim.lstrip("-").isdigit()


def _fixed_axes(proto: onnx.ModelProto) -> dict[str, list[bool]]:
    """Per graph input, which axes have a fixed size (the others vary with the feeds)."""
    initializers = {init.name for init in proto.graph.initializer}
    axes = {}
    for value in proto.graph.input:
        if value.name not in initializers and value.type.tensor_type.HasField("shape"):
            axes[value.name] = [d.HasField("dim_value") for d in value.type.tensor_type.shape.dim]
    return axes


def _check_feed_sizes(feeds: Mapping[str, np.ndarray], fixed_axes: dict[str, list[bool]]) -> None:
    for name, fixed in fixed_axes.items():
        if name not in feeds:
            continue  # named by the session's own feed check
        shape = np.shape(feeds[name])
        for axis, size in enumerate(shape[:len(fixed)]):
            if not fixed[axis] and size > MAX_VARIABLE_AXIS:
                raise InputError(f"input {name!r} axis {axis} has {size} elements; run accepts at most "
                                 f"{MAX_VARIABLE_AXIS} along an axis the model leaves variable")


def index_bounds(proto: onnx.ModelProto) -> dict[str, list]:
    """Graph inputs used directly as Gather indices into an initializer (token ids into an
    embedding): {input: [rows, initializer name]} with the fewest rows any such Gather has."""
    inputs = {value.name for value in proto.graph.input}
    shapes = {init.name: list(init.dims) for init in proto.graph.initializer}
    inputs -= set(shapes)
    bounds: dict[str, list] = {}
    for node in proto.graph.node:
        if node.op_type != "Gather" or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
            continue
        data, indices = node.input[0], node.input[1]
        if indices not in inputs or data not in shapes or not shapes[data]:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        dims = shapes[data]
        if not -len(dims) <= axis < len(dims):
            continue
        rows = int(dims[axis])
        if indices not in bounds or rows < bounds[indices][0]:
            bounds[indices] = [rows, data]
    return bounds


def _stored_index_bounds(con) -> dict[str, list]:
    text = read_meta(con, "index_bounds")  # absent from databases of earlier versions
    try:
        bounds = json.loads(text) if text else {}
    except ValueError:
        return {}
    return bounds if isinstance(bounds, dict) else {}


def check_index_feeds(feeds: Mapping[str, np.ndarray], bounds: Mapping[str, list]) -> None:
    """InputError naming the input and the value when an index feed selects a row that does not
    exist (onnxruntime refuses it too; the SQL join would silently drop the row)."""
    for name, (rows, table) in bounds.items():
        if name not in feeds:
            continue
        values = np.asarray(feeds[name])
        if values.dtype.kind not in "iu" or values.size == 0:
            continue
        outside = (values < -rows) | (values >= rows)
        if outside.any():
            where = tuple(int(i) for i in np.argwhere(outside)[0])
            raise InputError(f"input {name!r} holds {int(values[where])} at index {list(where)}, outside "
                             f"[{-rows}, {rows - 1}]: it selects rows of {table!r}, which has {rows} "
                             "(a token id beyond the vocabulary?)")


def explain_database_error(db: Path | None, exc: duckdb.Error) -> None:
    """Raise a clear error for a DuckDB error whose cause is known: a damaged database file (named,
    with what to do about it) or too little memory. Returns for any other error."""
    first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
    damaged = isinstance(exc, duckdb.IOException) or "Corrupt database file" in first_line \
        or "checksum" in first_line.lower()
    if db is not None and damaged:
        raise DatabaseError(f"database {str(db)!r} is damaged ({first_line}); delete it and compile again") from exc
    if isinstance(exc, duckdb.OutOfMemoryException):
        raise InputError(f"DuckDB ran out of memory: {first_line}") from exc


SPECIALISE_LIMIT = 4096  # elements of an integer input that run() may bake into the program


def _lower_for_feeds(proto: onnx.ModelProto, chunk: int, feeds: Mapping[str, np.ndarray],
                     region_size: int = DEFAULT_REGION_SIZE, kernels: str = "sql", weights: str = "fp32",
                     backend: str = "duckdb"):
    """Lower a model for one run. A graph that computes shapes, axes or counts from its inputs
    cannot be compiled once for all values; here the values are at hand, so the program is
    specialised to the small integer (or scalar) inputs and run on the rest."""
    from onnx2sql.graph.visitor import lower_model

    try:
        return lower_model(proto, chunk, region_size=region_size, kernels=kernels, weights=weights,
                           backend=backend), feeds
    except UnsupportedOpError as exc:
        if not all(p.data_dependent for p in exc.problems):
            raise
        constants = {name: np.asarray(value) for name, value in feeds.items() if _shape_like(np.asarray(value))}
        if not constants:
            raise
        rest = {name: value for name, value in feeds.items() if name not in constants}
        return lower_model(proto, chunk, constants, region_size, kernels=kernels, weights=weights,
                           backend=backend), rest


def _shape_like(value: np.ndarray) -> bool:
    return value.size <= 1 or (value.dtype.kind in "iub" and value.size <= SPECIALISE_LIMIT)


def open_compiled(folder: Path):
    db = folder / DB_FILE
    if not db.is_file():
        raise InputError(f"{str(folder)!r} is not a compiled model folder (no {DB_FILE}); run `onnx2sql compile` first")
    return open_compiled_db(db)


def check_database_file(db: Path) -> None:
    """Refuse a file that is not a DuckDB database before DuckDB opens it: DuckDB would try to
    read it with an extension (an SQLite file, say), which it may want to download."""
    try:
        with db.open("rb") as handle:
            header = handle.read(12)
    except OSError as exc:
        raise DatabaseError(f"cannot read database {str(db)!r}: {exc.strerror}") from exc
    if header[8:12] != DUCKDB_MAGIC:
        raise DatabaseError(f"{str(db)!r} is not a database written by onnx2sql compile (not a DuckDB "
                            "file); pass another --db, or delete it and compile again")


def written_by_older_version(db: Path) -> bool:
    """True for a database compiled by an earlier onnx2sql (another format), which can be compiled again."""
    check_database_file(db)
    try:
        con = connect(db, read_only=True)
    except duckdb.Error:
        return False
    try:
        return meta_exists(con) and read_meta(con, "format") != FORMAT_VERSION
    finally:
        con.close()


def open_compiled_db(db: Path, config: dict[str, str] | None = None):
    """Open a compiled database read-only: its program and a connection that can run it."""
    check_database_file(db)
    try:
        con = connect(db, read_only=True, config=config)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise InputError(f"database {str(db)!r} is locked by another process: {exc}") from exc
        explain_database_error(db, exc)
        raise DatabaseError(f"cannot open database {str(db)!r}: {exc}") from exc
    except duckdb.Error as exc:
        explain_database_error(db, exc)
        raise DatabaseError(f"cannot open database {str(db)!r}: {exc}") from exc
    try:
        if not meta_exists(con) or read_meta(con, "format") != FORMAT_VERSION:
            raise DatabaseError(f"{str(db)!r} was not written by this version of onnx2sql compile; "
                                "compile again")
        return con, Program.from_json(read_meta(con, "program") or "")
    except duckdb.Error as exc:
        con.close()
        explain_database_error(db, exc)
        raise DatabaseError(f"cannot read database {str(db)!r}: {exc}") from exc
    except BaseException:
        con.close()
        raise


def fingerprint(model: str | Path | onnx.ModelProto, proto: onnx.ModelProto, data_files: list[str],
                db: Path) -> dict[str, str]:
    """What identifies the compiled model: the SHA-256 of model.onnx and of its external data files
    (seeding the digest cache beside `db`); for an in-memory model, of its serialised bytes."""
    if isinstance(model, (str, Path)):
        path = Path(model)
        digests = model_digests(path, data_files, cache_file(db))
        return {"model_sha256": digests.pop(path.name), "external_data_sha256": json.dumps(digests)}
    from onnx2sql.graph.checker import PROTOBUF_LIMIT, serialized_size

    data = proto.SerializeToString(deterministic=True) if serialized_size(proto) < PROTOBUF_LIMIT else b""
    return {"model_sha256": hashlib.sha256(data).hexdigest(), "external_data_sha256": "{}"}


def compiled_from(con, model: Path, db: Path) -> bool:
    """True when the database was compiled from this model's current content (digests cached
    beside the database; see onnx2sql.runtime.fingerprint)."""
    try:
        stored_data = json.loads(read_meta(con, "external_data_sha256") or "{}")
    except ValueError:
        return False
    if not isinstance(stored_data, dict):
        return False
    try:
        digests = model_digests(model, sorted(stored_data), cache_file(db))
    except FileNotFoundError:
        return False  # an external data file it was compiled with is gone
    return digests.pop(model.name) == read_meta(con, "model_sha256") and digests == stored_data


def _store_weights(con, program: Program, progress: bool) -> None:
    from tqdm import tqdm

    from onnx2sql.storage.tables import write_weight

    total = sum(w.array.nbytes for w in program.weights)
    # disable=None: a bar on a terminal, none in logs.
    with tqdm(total=total, unit="B", unit_scale=True, desc="weights", disable=None if progress else True) as bar:
        for weight in program.weights:
            write_weight(con, weight)
            bar.update(weight.array.nbytes)


def _schema_script(program: Program) -> str:
    from onnx2sql.graph.symbolic import as_shape
    from onnx2sql.graph.values import Runtime
    from onnx2sql.ops.context import describe_layout

    lines = ["-- Weight tables of this program (persistent in model.duckdb)."]
    for w in program.weights:
        if w.tile_rows:
            rows, width = w.array.shape
            tile = "BLOB" if w.blob else f"{sql_type(w.array.dtype)}[][]"
            shown = {"f32": f"BLOB of <={w.tile_rows}x{width} float32",
                     "q8": f"BLOB of <={w.tile_rows} rows of {width} int8 after a float32 scale per 32"}.get(
                w.blob, f"{sql_type(w.array.dtype)}[<={w.tile_rows}][{width}]")
            lines.append(f"-- {w.table}: (c) -> {shown}, tiles {w.first_tile}.. of {w.tile_rows} rows; "
                         f"{comment_text(w.comment)}")
            lines.append(f"CREATE TABLE {quote_ident(w.table)} (c INTEGER, m {tile});")
            continue
        value = Runtime(w.table, w.array.dtype, as_shape(w.array.shape))
        lines.append(f"-- {w.table}: {describe_layout(value, w.chunk)}; {comment_text(w.comment)}")
        lead = "".join(f"i{k} INTEGER, " for k in range(max(w.array.ndim - 1, 0)))
        lines.append(f"CREATE TABLE {quote_ident(w.table)} ({lead}c INTEGER, v {sql_type(w.array.dtype)}[]);")
    return "\n".join(lines) + "\n"


NPZ_MAGIC = b"PK"  # an .npz file is a zip archive


def load_feeds(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise InputError(f"inputs file {str(path)!r} does not exist")
    with path.open("rb") as handle:
        if handle.read(2) != NPZ_MAGIC:
            raise InputError(f"inputs file {str(path)!r} is not an .npz file (not a zip archive); "
                             "write one with numpy.savez")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception as exc:
        raise InputError(f"cannot read inputs file {str(path)!r} as .npz: {exc}") from exc


def check_outputs_path(path: Path) -> None:
    """numpy.savez would silently append .npz to any other name."""
    if path.suffix != ".npz":
        raise UsageError(f"-o {str(path)!r} must name an .npz file (e.g. {path.stem or 'out'}.npz)")
    if path.is_dir():
        raise UsageError(f"-o {str(path)!r} is a folder; name an .npz file")


def save_outputs(outputs: Mapping[str, np.ndarray], path: Path) -> None:
    check_outputs_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **outputs)
