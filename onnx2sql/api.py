"""The Python API: compile a model into a DuckDB database + SQL files, run it on feeds."""
from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Mapping

import duckdb
import numpy as np
import onnx
from tqdm import tqdm

from onnx2sql.emit.program import Program
from onnx2sql.emit.regions import DEFAULT_REGION_SIZE
from onnx2sql.runtime.kernel_mode import resolve_kernels
from onnx2sql.emit.sql import comment_text, quote_ident, quote_literal, sql_type
from onnx2sql.errors import InputError, UnsupportedOpError
from onnx2sql.graph.load import load_model
from onnx2sql.graph.visitor import DEFAULT_CHUNK, lower_model
from onnx2sql.ops.context import describe_layout
from onnx2sql.graph.values import Runtime
from onnx2sql.graph.symbolic import as_shape
from onnx2sql.runtime.session import META_TABLE, Session, connect, meta_exists, read_meta
from onnx2sql.storage.tables import write_weight

DB_FILE = "model.duckdb"
FORMAT_VERSION = "3"  # 2: MatMul weights as whole rows in per-range tables; 3: regions
# DuckDB scans a table in parallel one row group at a time; at the default 122,880 rows a layer's
# weight table is one group and its MatMul runs on one thread. The smallest size DuckDB allows
# (one vector) lets every core take part.
WEIGHT_ROW_GROUP = 2048


def compile(model: str | Path | onnx.ModelProto, out_dir: str | Path, chunk_size: int | None = None,
            progress: bool = False, region_size: int = DEFAULT_REGION_SIZE, kernels: str | None = None) -> Path:
    """Compile a model into out_dir/: model.duckdb (weights + program), program.sql, schema.sql.

    Nothing is written when the model cannot be compiled; an existing out_dir is replaced only
    once the new one is complete. `kernels`: "auto" (the default), "native" or "sql"."""
    mode = resolve_kernels(kernels)
    proto = load_model(model)
    program = lower_model(proto, chunk_size or DEFAULT_CHUNK, region_size=region_size, kernels=mode)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        con = connect_for_writing(staging / DB_FILE)
        try:
            _store_weights(con, program, progress)
            con.execute(f"CREATE TABLE {META_TABLE} (key VARCHAR PRIMARY KEY, value VARCHAR)")
            meta = {"format": FORMAT_VERSION, "program": program.to_json(), **fingerprint(model, proto)}
            con.executemany(f"INSERT INTO {META_TABLE} VALUES (?, ?)", list(meta.items()))
            con.execute("CHECKPOINT")
        finally:
            con.close()
        (staging / "program.sql").write_text(program.script(), encoding="utf-8")
        (staging / "schema.sql").write_text(_schema_script(program), encoding="utf-8")
        _replace_dir(staging, out)
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
        kernels: str | None = None) -> dict[str, np.ndarray]:
    """Run a model on feeds in DuckDB; returns every graph output by name.

    `model` is an ONNX path or ModelProto (compiled into an in-memory database first) or a
    folder written by compile() (nothing is loaded again)."""
    if isinstance(model, (str, Path)) and Path(model).is_dir():
        con, program = open_compiled(Path(model))
    else:
        program, feeds = _lower_for_feeds(load_model(model), chunk_size or DEFAULT_CHUNK, feeds, region_size,
                                          resolve_kernels(kernels))
        con = connect()
        _store_weights(con, program, progress=False)
    try:
        return Session(con, program).run(feeds)
    finally:
        con.close()


SPECIALISE_LIMIT = 4096  # elements of an integer input that run() may bake into the program


def _lower_for_feeds(proto: onnx.ModelProto, chunk: int, feeds: Mapping[str, np.ndarray],
                     region_size: int = DEFAULT_REGION_SIZE, kernels: str = "sql"):
    """Lower a model for one run. A graph that computes shapes, axes or counts from its inputs
    cannot be compiled once for all values; here the values are at hand, so the program is
    specialised to the small integer (or scalar) inputs and run on the rest."""
    try:
        return lower_model(proto, chunk, region_size=region_size, kernels=kernels), feeds
    except UnsupportedOpError as exc:
        if not all(p.data_dependent for p in exc.problems):
            raise
        constants = {name: np.asarray(value) for name, value in feeds.items() if _shape_like(np.asarray(value))}
        if not constants:
            raise
        rest = {name: value for name, value in feeds.items() if name not in constants}
        return lower_model(proto, chunk, constants, region_size, kernels=kernels), rest


def _shape_like(value: np.ndarray) -> bool:
    return value.size <= 1 or (value.dtype.kind in "iub" and value.size <= SPECIALISE_LIMIT)


def open_compiled(folder: Path):
    db = folder / DB_FILE
    if not db.is_file():
        raise InputError(f"{str(folder)!r} is not a compiled model folder (no {DB_FILE}); run `onnx2sql compile` first")
    return open_compiled_db(db)


def written_by_older_version(db: Path) -> bool:
    """True for a database compiled by an earlier onnx2sql (another format), which can be compiled again."""
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
    try:
        con = connect(db, read_only=True, config=config)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise InputError(f"database {str(db)!r} is locked by another process: {exc}") from exc
        raise InputError(f"cannot open database {str(db)!r}: {exc}") from exc
    except duckdb.Error as exc:
        raise InputError(f"cannot open database {str(db)!r}: {exc}") from exc
    if not meta_exists(con) or read_meta(con, "format") != FORMAT_VERSION:
        con.close()
        raise InputError(f"{str(db)!r} was not written by this version of onnx2sql compile")
    return con, Program.from_json(read_meta(con, "program") or "")


def fingerprint(model: str | Path | onnx.ModelProto, proto: onnx.ModelProto) -> dict[str, str]:
    """What identifies the compiled model: the file's SHA-256 (and size and mtime, to skip rehashing)."""
    if isinstance(model, (str, Path)):
        path = Path(model)
        stat = path.stat()
        return {"model_sha256": _file_sha256(path), "model_size": str(stat.st_size),
                "model_mtime_ns": str(stat.st_mtime_ns)}
    data = proto.SerializeToString(deterministic=True) if proto.ByteSize() < (1 << 31) else b""
    return {"model_sha256": hashlib.sha256(data).hexdigest(), "model_size": "", "model_mtime_ns": ""}


def check_fingerprint(con, model: Path, db: Path) -> None:
    """Refuse a database compiled from another model than `model`."""
    stat = model.stat()
    if read_meta(con, "model_size") == str(stat.st_size) and read_meta(con, "model_mtime_ns") == str(stat.st_mtime_ns):
        return
    if read_meta(con, "model_sha256") != _file_sha256(model):
        raise InputError(f"database {str(db)!r} was compiled from another model than {str(model)!r}; "
                         "compile again or pass another --db")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _store_weights(con, program: Program, progress: bool) -> None:
    total = sum(w.array.nbytes for w in program.weights)
    # disable=None: a bar on a terminal, none in logs.
    with tqdm(total=total, unit="B", unit_scale=True, desc="weights", disable=None if progress else True) as bar:
        for weight in program.weights:
            write_weight(con, weight)
            bar.update(weight.array.nbytes)


def _schema_script(program: Program) -> str:
    lines = ["-- Weight tables of this program (persistent in model.duckdb)."]
    for w in program.weights:
        if w.tile_rows:
            rows, width = w.array.shape
            lines.append(f"-- {w.table}: (c) -> {sql_type(w.array.dtype)}[<={w.tile_rows}][{width}], tiles "
                         f"{w.first_tile}.. of {w.tile_rows} rows; {comment_text(w.comment)}")
            lines.append(f"CREATE TABLE {quote_ident(w.table)} (c INTEGER, m {sql_type(w.array.dtype)}[][]);")
            continue
        value = Runtime(w.table, w.array.dtype, as_shape(w.array.shape))
        lines.append(f"-- {w.table}: {describe_layout(value, w.chunk)}; {comment_text(w.comment)}")
        lead = "".join(f"i{k} INTEGER, " for k in range(max(w.array.ndim - 1, 0)))
        lines.append(f"CREATE TABLE {quote_ident(w.table)} ({lead}c INTEGER, v {sql_type(w.array.dtype)}[]);")
    return "\n".join(lines) + "\n"


def _replace_dir(staging: Path, out: Path) -> None:
    staging.chmod(0o755)  # mkdtemp makes it private; the compiled folder is an ordinary one
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out)


def load_feeds(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise InputError(f"inputs file {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception as exc:
        raise InputError(f"cannot read inputs file {str(path)!r} as .npz: {exc}") from exc


def save_outputs(outputs: Mapping[str, np.ndarray], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **outputs)
