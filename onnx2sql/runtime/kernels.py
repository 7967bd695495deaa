"""The native kernels: a DuckDB extension (kernels/ in the repository) with SIMD dot products.

Build it with `make kernels` (or build_extension()); open connections with KERNEL_CONFIG merged into
their config, since the extension is unsigned; then load_kernels(con) registers
onnx2sql_tile_matvec(BLOB, FLOAT[]) and onnx2sql_dot(FLOAT[], FLOAT[]).
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import duckdb

from onnx2sql.errors import KernelsUnavailable

# DuckDB loads unsigned extensions only when this is set as the connection opens.
KERNEL_CONFIG: dict[str, str] = {"allow_unsigned_extensions": "true"}
EXTENSION_FILE = "onnx2sql_kernels.duckdb_extension"
BUILD_HINT = "`make kernels` (python kernels/build.py) in the repository builds it"

# The sources and the build output live in the repository beside the package (a source checkout
# or an editable install).
_REPO_ROOT = Path(__file__).resolve().parents[2]
_BUILD_SCRIPT = _REPO_ROOT / "kernels" / "build.py"


# Another folder to build the extension into and load it from (default: <repo>/build).
BUILD_DIR_ENV = "ONNX2SQL_KERNELS_BUILD_DIR"


def extension_path() -> Path:
    """Where the built extension is: <repo>/build/onnx2sql_kernels.duckdb_extension, or in the
    folder $ONNX2SQL_KERNELS_BUILD_DIR names."""
    folder = os.environ.get(BUILD_DIR_ENV)
    return (Path(folder) if folder else _REPO_ROOT / "build") / EXTENSION_FILE


def _build_module() -> ModuleType:
    if not _BUILD_SCRIPT.is_file():
        raise KernelsUnavailable(f"cannot build {extension_path()}: {_BUILD_SCRIPT} is missing "
                                 "(the kernel sources come with a source checkout of onnx2sql)")
    name = "onnx2sql_kernels_build"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _BUILD_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs: its dataclasses look their module up in sys.modules.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def build_extension(quiet: bool = True) -> Path:
    """Builds the extension when missing or stale (fast when up to date); returns its path."""
    build = _build_module()
    try:
        return build.build(extension_path().parent, quiet=quiet)
    except build.BuildError as exc:
        raise KernelsUnavailable(f"building {extension_path()} failed: {exc}") from exc


def load_kernels(con: duckdb.DuckDBPyConnection) -> None:
    """Loads the extension into con (opened with KERNEL_CONFIG); KernelsUnavailable says why not."""
    path = extension_path()
    if not path.is_file():
        raise KernelsUnavailable(f"the kernels extension {path} is missing: {BUILD_HINT}")
    quoted = str(path).replace("'", "''")
    try:
        con.execute(f"LOAD '{quoted}'")
    except duckdb.Error as exc:
        raise KernelsUnavailable(
            f"DuckDB refused the kernels extension {path}: {exc}. Open the connection with "
            f"config=KERNEL_CONFIG ({KERNEL_CONFIG}); a stale file, or one built for another duckdb: "
            f"{BUILD_HINT}") from exc
