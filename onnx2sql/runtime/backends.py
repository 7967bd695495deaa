"""Opening a model for generation on the backend asked for (DuckDB, the embedded default, SQLite,
PostgreSQL or Spark), with the flags that only one of them takes refused by name."""
from __future__ import annotations

from pathlib import Path

from onnx2sql.dialects import dialect_for
from onnx2sql.errors import UsageError
from onnx2sql.runtime.generate import Generator
from onnx2sql.runtime.kernel_mode import check_backend_flags


def open_generator(model_dir: str | Path, backend: str = "duckdb", db: str | Path | None = None,
                   memory_limit: str | None = None, progress: bool = True, kernels: str | None = None,
                   weights: str | None = None, spark_master: str | None = None) -> Generator:
    """A Generator for `model_dir` on `backend`; `db` is DuckDB's or SQLite's database file (the
    model folder's own when None), PostgreSQL's URL or Spark's folder of Parquet weights;
    `spark_master` the Spark master URL (local[2] when None)."""
    dialect_for(backend)  # an unknown backend is refused by name
    if memory_limit is not None and backend != "duckdb":
        raise UsageError(f"--memory-limit is DuckDB's; {backend} has its own settings (work_mem, ...)")
    check_backend_flags(backend, kernels, weights, spark_master)
    if backend == "duckdb":
        return Generator(model_dir, db=db, memory_limit=memory_limit, progress=progress, kernels=kernels,
                         weights=weights)
    if backend == "sqlite":
        from onnx2sql.runtime.sqlite_models import SqliteGenerator

        return SqliteGenerator(model_dir, db, progress=progress, kernels=kernels)
    if backend == "spark":
        from onnx2sql.runtime.spark_models import SparkGenerator

        return SparkGenerator(model_dir, db, spark_master, progress=progress)
    from onnx2sql.runtime.postgres_models import PostgresGenerator

    return PostgresGenerator(model_dir, str(db) if db else "", progress=progress, kernels=kernels)
