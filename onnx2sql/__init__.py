"""onnx2sql: compile ONNX inference graphs into SQL and run them with DuckDB as the runtime."""
from __future__ import annotations

from onnx2sql.errors import DatabaseError, InputError, ModelError, Onnx2SqlError, ShapeError, \
    UnsupportedOpError, UsageError

__version__ = "0.1.0"
__all__ = ["compile", "run", "generate_file", "Onnx2SqlError", "UnsupportedOpError", "ShapeError", "InputError", "ModelError",
           "UsageError", "DatabaseError"]


def compile(model, out_dir, chunk_size=None, progress=False, **options):  # noqa: A001 - the API's name
    """Compile an ONNX model (path or ModelProto) into out_dir; see onnx2sql.api.compile."""
    from onnx2sql.api import compile as _compile

    return _compile(model, out_dir, chunk_size=chunk_size, progress=progress, **options)


def run(model, feeds, chunk_size=None, **options):
    """Run a model (ONNX path, ModelProto or compiled folder) on feeds; see onnx2sql.api.run."""
    from onnx2sql.api import run as _run

    return _run(model, feeds, chunk_size=chunk_size, **options)


def generate_file(model_dir, prompts_file, out, batch=None, max_new_tokens=32, sampling=None, chat=False, **options):
    """Generate for every prompt of a JSON-lines file and write the results to `out` (as `onnx2sql
    generate --prompts-file`); `options` (db, memory_limit, kernels, weights) open the Generator,
    once the file is read and checked. Returns the lines written."""
    from pathlib import Path

    from onnx2sql.runtime.generate import Generator
    from onnx2sql.runtime.prompts import DEFAULT_BATCH, generate_file as _generate_file

    return _generate_file(lambda: Generator(model_dir, progress=False, **options), Path(prompts_file), Path(out),
                          DEFAULT_BATCH if batch is None else batch, max_new_tokens, sampling, chat)
