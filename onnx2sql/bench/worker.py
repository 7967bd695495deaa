"""One engine in its own process, so that its peak resident memory is its own and a memory cap
applies to it alone. The runner talks to it in JSON lines: requests on stdin, replies on a private
copy of stdout (fd 1 itself goes to stderr, so an engine printing to stdout cannot garble replies)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import IO, Any, Callable


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m onnx2sql.bench.worker")
    parser.add_argument("--engine", required=True)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--options", required=True, help="EngineOptions as JSON")
    parser.add_argument("--cgroup-procs", help="join this cgroup (its cgroup.procs file) before anything else")
    args = parser.parse_args(argv)
    if args.cgroup_procs:
        Path(args.cgroup_procs).write_text(str(os.getpid()))
    replies = _private_stdout()
    return serve(args.engine, Path(args.model_dir), json.loads(args.options), replies)


def _private_stdout() -> IO[str]:
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return replies


def serve(engine_name: str, model_dir: Path, options: dict[str, Any], replies: IO[str]) -> int:
    from onnx2sql.bench.engines import ENGINES, EngineOptions
    from onnx2sql.bench.memory import current_rss_bytes, peak_rss_bytes

    def reply(message: dict[str, Any]) -> None:
        replies.write(json.dumps(message) + "\n")

    rss_before = current_rss_bytes()
    try:
        engine = ENGINES[engine_name](model_dir, EngineOptions(**options))
        start = time.perf_counter()
        kind = engine.setup()
        setup_s = time.perf_counter() - start
    except Exception as exc:  # reported to the runner, which goes on without this engine
        reply({"error": _describe(exc)})
        return 1
    files = engine.disk_files()
    reply({"ready": True, **engine.describe(), "setup_kind": kind, "setup_s": setup_s, "rss_before_setup_bytes": rss_before,
           "disk_bytes": sum(f.stat().st_size for f in files), "disk_files": [str(f) for f in files],
           "peak_rss_bytes": peak_rss_bytes()})
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "exit":
            break
        if request["op"] == "generate_batch":
            reply(_optional(lambda: _batch(engine, request)))
            continue
        if request["op"] == "profile_step":
            reply(_optional(lambda: {"profile": engine.profile_step(request["prompt_ids"])}))
            continue
        try:
            run = engine.generate(request["prompt_ids"], request["new_tokens"], _tick(request.get("label", "")))
            reply({"tokens": run.tokens, "ttft_s": run.ttft_s, "decode_tokens_per_s": run.decode_tokens_per_s,
                   "statements_per_step": run.statements_per_step, "peak_rss_bytes": peak_rss_bytes()})
        except Exception as exc:
            reply({"error": _describe(exc)})
    engine.close()
    reply({"peak_rss_bytes": peak_rss_bytes()})
    return 0


def _optional(call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The reply `call` makes; an engine without the feature says so, and an error is described."""
    from onnx2sql.bench.engines import Unsupported

    try:
        return call()
    except Unsupported as exc:
        return {"unsupported": str(exc)}
    except Exception as exc:
        return {"error": _describe(exc)}


def _batch(engine: Any, request: dict[str, Any]) -> dict[str, Any]:
    from onnx2sql.bench.memory import peak_rss_bytes

    run = engine.generate_batch(request["prompts"], request["new_tokens"])
    return {"tokens": run.tokens, "ttft_s": run.ttft_s, "decode_tokens_per_s": run.decode_tokens_per_s,
            "peak_rss_bytes": peak_rss_bytes()}


def _tick(label: str) -> Callable[[int], None]:
    """Progress on a terminal: the count of generated tokens (DuckDB takes seconds per token)."""
    def on_token(k: int) -> None:
        if sys.stderr.isatty():
            sys.stderr.write(f"\r  {label} token {k}")
            sys.stderr.flush()

    return on_token


def _describe(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {last[0].filename}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


if __name__ == "__main__":
    sys.exit(main())
