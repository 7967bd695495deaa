"""Which kernels a compiled program uses: "native" (float32 products call the DuckDB extension built
from kernels/) or "sql" (pure SQL, portable). `auto` is native where the extension builds and loads,
else pure SQL with one line saying why."""
from __future__ import annotations

import os
import sys
from functools import lru_cache

from onnx2sql.errors import InputError, Onnx2SqlError, UsageError

KERNEL_MODES = ("auto", "native", "sql")
# How known matrices are stored: "fp32" (exact, the default) or "int8" (a float32 scale per 32
# values; the native kernels multiply the int8 tiles directly, so it needs them).
WEIGHT_FORMATS = ("fp32", "int8")
# Sets the default of --kernels (and of the Python API's kernels=): the test suite runs once per mode.
KERNELS_ENV = "ONNX2SQL_KERNELS"


def default_mode() -> str:
    return os.environ.get(KERNELS_ENV, "auto") or "auto"


def requested_mode(kernels: str | None) -> str | None:
    """The mode asked for: `kernels`, else $ONNX2SQL_KERNELS, else None (nothing asked)."""
    return kernels or os.environ.get(KERNELS_ENV) or None


def resolve_kernels(mode: str | None) -> str:
    """"native" or "sql" for a requested mode (None: the default)."""
    mode = mode or default_mode()
    if mode not in KERNEL_MODES:
        raise InputError(f"--kernels must be one of {', '.join(KERNEL_MODES)}, got {mode!r}")
    if mode == "sql":
        return "sql"
    reason = native_unavailable_reason()
    if reason is None:
        return "native"
    if mode == "native":
        from onnx2sql.runtime.kernels import KernelsUnavailable

        raise KernelsUnavailable(f"--kernels native: {reason}. Build the kernels with `make kernels` (a C "
                                 "compiler is needed), or use --kernels sql")
    print(f"onnx2sql: native kernels unavailable ({reason}); running pure SQL", file=sys.stderr)
    return "sql"


def check_backend_flags(backend: str, kernels: str | None, weights: str | None,
                        spark_master: str | None = None) -> None:
    """Refuse, by name, the flags a backend cannot take: another's master URL, and the kernel and
    weight flags a backend other than DuckDB cannot take."""
    if spark_master is not None and backend != "spark":
        raise UsageError(f"--spark-master is for --backend spark, not {backend}")
    if backend == "duckdb":
        return
    if weights == "int8":
        raise UsageError(f"--weights int8 is DuckDB's: backend {backend} stores fp32 weights")
    if kernels == "native" and backend == "postgres":
        raise UsageError("backend postgres multiplies through pgvector or in SQL: --kernels native is DuckDB's "
                         "and SQLite's")
    if backend == "spark" and kernels not in (None, "auto", "sql"):
        raise UsageError(f"backend spark runs pure SQL: --kernels {kernels} is not available there")


def check_weight_format(weights: str) -> None:
    if weights not in WEIGHT_FORMATS:
        raise InputError(f"--weights must be one of {', '.join(WEIGHT_FORMATS)}, got {weights!r}")


def resolve_weights(weights: str | None, kernels: str | None) -> tuple[str, str]:
    """(kernel mode, weight format) for a requested weight format (None: fp32) and kernel mode.
    int8 weights need the native kernels: asking for them with --kernels sql is refused, and
    `auto` must then find the kernels (no silent fall back to pure SQL)."""
    weights = weights or "fp32"
    check_weight_format(weights)
    if weights == "fp32":
        return resolve_kernels(kernels), weights
    mode = kernels or default_mode()
    if mode == "sql":
        raise UsageError("--weights int8 needs the native kernels, which multiply the int8 tiles; it cannot run "
                         "with --kernels sql (pure SQL stores fp32 weights)")
    return resolve_kernels("native" if mode == "auto" else mode), weights


@lru_cache(maxsize=1)
def native_unavailable_reason() -> str | None:
    """None when the extension builds (or is built) and loads into DuckDB; else why not."""
    import duckdb

    from onnx2sql.runtime.kernels import KERNEL_CONFIG, build_extension, load_kernels

    try:
        build_extension(quiet=True)
        con = duckdb.connect(config=dict(KERNEL_CONFIG))
        try:
            load_kernels(con)
        finally:
            con.close()
    except Onnx2SqlError as exc:
        return str(exc)
    return None
