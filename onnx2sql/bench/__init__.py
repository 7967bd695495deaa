"""`onnx2sql bench`: DuckDB, onnxruntime and llama.cpp side by side on the same weights, each in its
own process, with an optional hard memory cap."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from onnx2sql.errors import InputError

RESULTS_JSON, RESULTS_PNG = "results.json", "results.png"


def bench_command(args: argparse.Namespace) -> int:
    from onnx2sql.bench.memory import parse_size
    from onnx2sql.bench.report import format_agreement, format_batch, format_table, mismatches, write_json
    from onnx2sql.bench.runner import BenchConfig, log, run_bench

    model_dir = Path(args.model_dir)
    out = output_path(args.out, model_dir / "bench", RESULTS_JSON)
    chart = output_path(args.plot, out.parent, RESULTS_PNG)
    config = BenchConfig(
        model_dir=model_dir, engines=_names(args.engines), prompt_lens=_lengths(args.prompt_lens),
        new_tokens=args.new_tokens, repeats=args.repeats,
        memory_cap_bytes=parse_size(args.memory_cap) if args.memory_cap else None,
        duckdb_memory_limit=args.duckdb_memory_limit, cap_timeout_s=args.cap_timeout, warmup=not args.no_warmup,
        kernels=args.kernels, batch=args.batch, postgres_url=args.postgres_url, profile_step=args.profile_step,
    )
    result = run_bench(config)
    write_json(result, out)
    log(f"results written to {out}")
    if plot_if_possible(result, chart):
        log(f"chart written to {chart}")
    print(format_table(result))
    if mismatches(result):
        # Repeated where it cannot be missed, after all the progress output.
        lines = format_agreement(result["agreement"], result["engines"]) + format_batch(result)
        print("\n".join(line for line in lines if "MISMATCH" in line), file=sys.stderr)
    return 0


def output_path(given: str | None, default_dir: Path, file_name: str) -> Path:
    """A file path as given, or `file_name` inside a given folder (an existing one, or a name without
    a suffix)."""
    if given is None:
        return default_dir / file_name
    path = Path(given)
    return path / file_name if path.is_dir() or not path.suffix else path


def plot_if_possible(result: dict, path: Path) -> bool:
    from onnx2sql.bench.report import plot
    from onnx2sql.bench.runner import log

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log("matplotlib is not installed, so no chart is drawn (pip install 'onnx2sql[bench]')")
        return False
    plot(result, path)
    return True


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _lengths(text: str) -> list[int]:
    try:
        return sorted({int(n) for n in _names(text)})
    except ValueError as exc:
        raise InputError(f"--prompt-lens must be comma-separated integers, got {text!r}") from exc
