"""onnx2sql: compile ONNX inference graphs into SQL and run them with DuckDB as the runtime."""
from __future__ import annotations

from onnx2sql.errors import DatabaseError, InputError, ModelError, Onnx2SqlError, ShapeError, \
    UnsupportedOpError, UsageError

__version__ = "0.1.0"
__all__ = ["compile", "run", "Onnx2SqlError", "UnsupportedOpError", "ShapeError", "InputError", "ModelError",
           "UsageError", "DatabaseError"]


def compile(model, out_dir, chunk_size=None, progress=False, **options):  # noqa: A001 - the API's name
    """Compile an ONNX model (path or ModelProto) into out_dir; see onnx2sql.api.compile."""
    from onnx2sql.api import compile as _compile

    return _compile(model, out_dir, chunk_size=chunk_size, progress=progress, **options)


def run(model, feeds, chunk_size=None, **options):
    """Run a model (ONNX path, ModelProto or compiled folder) on feeds; see onnx2sql.api.run."""
    from onnx2sql.api import run as _run

    return _run(model, feeds, chunk_size=chunk_size, **options)
