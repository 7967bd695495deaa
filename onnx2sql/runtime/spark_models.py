"""Models compiled for Spark: a folder of Parquet weight files and the program, and generation there.

The folder (MODEL_DIR/spark, or --db FOLDER, on storage every worker of a cluster can read) holds
`weights/<table>.parquet` and `meta.json`: the program, the model's path and digests. A model
whose file changed is compiled again; a folder holding another model is refused unless it is the
model folder's own. A compile writes a new folder beside the old and swaps it in whole, so an
interrupted compile leaves the previous one.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from onnx2sql.api import FORMAT_VERSION, load_valid_model
from onnx2sql.emit.program import Program
from onnx2sql.emit.sql import quote_ident
from onnx2sql.errors import InputError
from onnx2sql.runtime.fingerprint import digests_match, model_digests
from onnx2sql.runtime.generate import DatabaseGenerator, Sampling
from onnx2sql.runtime.prompts import DEFAULT_BATCH, FIELDS, PromptRecord, generate_records, record_from
from onnx2sql.runtime.spark import SparkDatabase, SparkSqlSession, _spark_error_types, spark_errors, \
    write_parquet_weights
from onnx2sql.runtime.text import ModelFolder

META_FILE = "meta.json"
WEIGHTS = "weights"


def default_spark_folder(model_dir: Path) -> Path:
    """The model folder's own Spark folder (beside sql/, which DuckDB's compile owns)."""
    return model_dir / "spark"


def compiled_folder(model: Path, folder: Path, progress: bool = False, own: bool = False) -> Program:
    """The program of `model` compiled into `folder`: the stored one when it was compiled from the
    model's current content by this version of onnx2sql; else compiled and stored now. A folder of
    another model is compiled again only when it is `own` (the model folder's)."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--db {str(folder)!r} is a file; backend spark takes a folder for its Parquet weights")
    stored = _stored_meta(folder)
    same_model = stored.get("model_path") == str(model.resolve())
    if folder.is_dir() and any(folder.iterdir()) and not stored and not own:
        raise InputError(f"{str(folder)!r} is not empty and holds no compiled model: name an empty or new folder")
    if stored and not same_model and not own:
        raise InputError(f"{str(folder)!r} holds the model {stored.get('model_path')!r}, not {str(model)!r}: "
                         "name another --db")
    if same_model and stored.get("format") == FORMAT_VERSION and digests_match(model, stored):
        return Program.from_json(stored["program"])
    return _compile_into(model, folder, progress)


def _show_progress(count: int):
    def show(k: int) -> None:
        print(f"\ronnx2sql: writing Parquet weights {k + 1}/{count}", end="", file=sys.stderr, flush=True)
    return show


def _stored_meta(folder: Path) -> dict[str, str]:
    path = folder / META_FILE
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{str(path)!r} cannot be read ({exc}): compile into another folder") from None
    return meta if isinstance(meta, dict) else {}


def _compile_into(model: Path, folder: Path, progress: bool) -> Program:
    """Lower the model for Spark and write its folder, swapped in whole when complete."""
    from onnx2sql.graph.visitor import lower_model

    proto, data_files = load_valid_model(model)
    program = lower_model(proto, backend="spark", kernels="sql")
    digests = model_digests(model, data_files, None)
    meta = {"format": FORMAT_VERSION, "program": program.to_json(), "model_path": str(model.resolve()),
            "model_sha256": digests.pop(model.name), "external_data_sha256": json.dumps(digests)}
    staging = folder.with_name(folder.name + ".compiling")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / WEIGHTS).mkdir(parents=True)
    try:
        write_parquet_weights(program.weights, staging / WEIGHTS, _show_progress(len(program.weights)) if progress else None)
        (staging / META_FILE).write_text(json.dumps(meta))
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            folder.rename(old)
        staging.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if progress and program.weights:
        print(file=sys.stderr)
    return program


class SparkGenerator(DatabaseGenerator):
    """A Generator whose model is compiled into a folder of Parquet files and runs in Spark."""

    session_class = SparkSqlSession

    def __init__(self, model_dir: str | Path, db: str | Path | None = None, master: str | None = None,
                 progress: bool = True, kernels: str | None = None):
        self.folder = ModelFolder.open(model_dir)
        self.model = self.folder.path / "model.onnx"
        path = Path(db) if db else default_spark_folder(self.folder.path)
        own = path.resolve() == default_spark_folder(self.folder.path).resolve()
        self.db_path = path
        program = compiled_folder(self.model, path, progress, own=own)
        if progress:
            print("onnx2sql: starting Spark", file=sys.stderr)
        database = SparkDatabase.connect(master)

        def weights_registered() -> Program:
            database.register_weights(path / WEIGHTS)
            return program

        self._attach(database, weights_registered, f"Spark ({database.spark.sparkContext.master})")

    @property
    def database_errors(self) -> tuple[type[Exception], ...]:  # type: ignore[override]
        return _spark_error_types()  # type: ignore[return-value]

    def _keep_cache_rows(self, keep: list[int]) -> None:
        """Only batch rows `keep` stay in the KV cache, renumbered 0, 1, ... in that order: views
        cannot be updated, so each cache view is defined again from the rows kept."""
        renumber = " ".join(f"WHEN {int(old)} THEN {new}" for new, old in enumerate(keep))
        kept = ", ".join(str(int(r)) for r in keep)
        with spark_errors("Spark"):
            for spec in self.program.inputs:
                if spec.table not in self.cache_tables:
                    continue
                rest = [f"i{k}" for k in range(1, len(spec.shape) - 1)] + ["c", "v"]
                table = quote_ident(spec.table)
                self.con.execute(self.dialect.create_table_as(table, (
                    f"SELECT CASE i0 {renumber} END AS i0, {', '.join(rest)} FROM {table} WHERE i0 IN ({kept})")))

    def _promote_presents(self) -> None:
        """present.* views become the next step's past_key_values.* views."""
        for present, past in self.cache_renames:
            self.con.execute(self.dialect.create_table_as(quote_ident(past), f"SELECT * FROM {quote_ident(present)}"))


def prompts_of_frame(frame, where: str) -> list[PromptRecord]:
    """The prompts of a Spark DataFrame with a column prompt (and, optionally, id, max_new_tokens
    and seed, as in a prompts file); a bad row is named by its number."""
    unknown = sorted(set(frame.columns) - set(FIELDS))
    if unknown or "prompt" not in frame.columns:
        raise InputError(f"{where} has the columns {frame.columns}: it needs prompt, and may have "
                         f"{', '.join(f for f in FIELDS if f != 'prompt')}")
    with spark_errors(where):
        rows = frame.collect()
    records = [record_from({k: v for k, v in row.asDict().items() if v is not None}, number, f"{where} row {number}")
               for number, row in enumerate(rows, start=1)]
    seen: dict[str, int] = {}
    for number, record in enumerate(records, start=1):
        key = json.dumps(record.id)
        if key in seen:
            raise InputError(f"{where} row {number}: id {key} is also the id of row {seen[key]}; ids must be unique")
        seen[key] = number
    if not records:
        raise InputError(f"{where} holds no prompts")
    return records


def table_frame(spark, table: str):
    """The table or view `table` of Spark's catalog (a name, never SQL text)."""
    with spark_errors(f"--prompts-table {table!r}"):
        return spark.table(table)


def generate_table(model_dir: str | Path, prompts, db: str | Path | None = None, spark_master: str | None = None,
                   batch: int = DEFAULT_BATCH, max_new_tokens: int = 32, sampling: Sampling | None = None,
                   chat: bool = False, progress: bool = False):
    """Generate for every row of `prompts`, a Spark DataFrame or the name of a table in Spark's
    catalog (columns as a prompts file's fields: prompt, and optionally id, max_new_tokens, seed),
    in batches of `batch` sequences, in the Spark session running (else one on `spark_master`).
    Returns a DataFrame of one row per prompt: id, text, finish_reason, prompt_tokens, token_ids."""
    from pyspark.sql.types import (
        ArrayType,
        LongType,
        StringType,
        StructField,
        StructType,
    )

    where = f"table {prompts!r}" if isinstance(prompts, str) else "the prompts DataFrame"
    holder: dict[str, object] = {}

    def read(gen: SparkGenerator) -> list[PromptRecord]:
        spark = gen.con.spark
        holder["spark"] = spark
        frame = table_frame(spark, prompts) if isinstance(prompts, str) else prompts
        holder["id_type"] = frame.schema["id"].dataType if "id" in frame.columns else LongType()
        return prompts_of_frame(frame, where)

    lines = generate_records(lambda: SparkGenerator(model_dir, db, spark_master, progress=progress), read, where,
                             batch, max_new_tokens, sampling, chat)
    schema = StructType([StructField("id", holder["id_type"]), StructField("text", StringType()),
                         StructField("finish_reason", StringType()), StructField("prompt_tokens", LongType()),
                         StructField("token_ids", ArrayType(LongType()))])
    return holder["spark"].createDataFrame([tuple(line[f.name] for f in schema.fields) for line in lines], schema)
