"""The benchmark run: one process per engine, runs interleaved across engines (so that machine drift
hits all alike), repeats, statistics, agreement of the tokens, the bandwidth limit, and the
memory-capped runs."""
from __future__ import annotations

import json
import os
import platform
import select
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from onnx2sql.bench.engines import ENGINES, EngineOptions
from onnx2sql.bench.memory import (CapUnavailable, CgroupCap, evict_from_page_cache, measure_bandwidth,
                                   total_memory_bytes)
from onnx2sql.errors import InputError

REFERENCE = "onnxruntime"
VERSIONED = ("onnx2sql", "duckdb", "onnxruntime", "onnx", "numpy", "llama-cpp-python")
# Prompts are cut from this text at the requested token counts; it never ends a sentence early, so
# greedy decoding keeps going rather than stopping at an end-of-text token.
PROMPT_TEXT = (
    "The history of the printing press begins in the fifteenth century, when craftsmen in several "
    "European cities were looking for faster ways to copy books. Before that time, every book was "
    "written by hand, often by monks who spent years on a single volume, and the cost of a book was "
    "so high that only churches, universities and wealthy families could own more than a few. The "
    "new machines combined movable metal type, oil-based ink and a press adapted from the ones used "
    "for wine and olive oil, and within fifty years printers were at work in more than two hundred "
    "towns, producing millions of pages of religious texts, grammars, calendars, maps and news. "
)


@dataclass
class BenchConfig:
    model_dir: Path
    engines: list[str]
    prompt_lens: list[int] = field(default_factory=lambda: [16, 128])
    new_tokens: int = 32
    repeats: int = 3
    memory_cap_bytes: int | None = None
    duckdb_memory_limit: str | None = None
    cap_timeout_s: float = 900.0
    warmup: bool = True
    kernels: str | None = None  # the `duckdb` engine's mode (None: the default, auto)
    batch: int | None = None  # also generate this many sequences at once per prompt length
    postgres_url: str | None = None  # the `postgres` engine's database (None: a private server)
    profile_step: bool = False  # also profile one decode step per prompt length, statement by statement

    def check(self) -> None:
        unknown = [e for e in self.engines if e not in ENGINES]
        if unknown:
            raise InputError(f"unknown engine(s) {unknown}; choose among {', '.join(ENGINES)}")
        if not self.engines:
            raise InputError("--engines names no engine")
        if not self.prompt_lens or min(self.prompt_lens) < 1:
            raise InputError(f"--prompt-lens must be positive token counts, got {self.prompt_lens}")
        if self.new_tokens < 1 or self.repeats < 1:
            raise InputError("--new-tokens and --repeats must be at least 1")
        if self.batch is not None and self.batch < 2:
            raise InputError(f"--batch must be at least 2 (batch 1 is what every run measures), got {self.batch}")


class EngineDied(Exception):
    """The engine's process ended without replying (killed, crashed, or out of time)."""


class EngineProcess:
    """An engine in its own process (python -m onnx2sql.bench.worker), spoken to in JSON lines."""

    def __init__(self, engine: str, model_dir: Path, options: EngineOptions, cap: CgroupCap | None = None):
        self.engine = engine
        cmd = [sys.executable, "-m", "onnx2sql.bench.worker", "--engine", engine, "--model-dir", str(model_dir),
               "--options", json.dumps(options.as_json())]
        if cap is not None:
            cmd += ["--cgroup-procs", str(cap.path / "cgroup.procs")]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def receive(self, timeout_s: float | None = None) -> dict[str, Any]:
        assert self.proc.stdout is not None
        if timeout_s is not None and not select.select([self.proc.stdout], [], [], timeout_s)[0]:
            self.kill()
            raise EngineDied(f"{self.engine} gave no answer within {timeout_s:.0f} s and was stopped")
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise EngineDied(f"{self.engine}'s process ended (exit status {code})")
        return json.loads(line)

    def request(self, message: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError as exc:
            raise EngineDied(f"{self.engine}'s process ended (exit status {self.proc.wait()})") from exc
        return self.receive(timeout_s)

    def finish(self) -> dict[str, Any]:
        """Ask the process to close its engine and exit; its last word is its peak memory."""
        try:
            final = self.request({"op": "exit"}, timeout_s=120)
        except EngineDied:
            return {}
        self.proc.wait(timeout=60)
        return final

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def run_bench(config: BenchConfig) -> dict[str, Any]:
    config.check()
    from onnx2sql.runtime.text import ModelFolder

    folder = ModelFolder.open(config.model_dir)
    prompts = make_prompts(folder, config.prompt_lens, config.new_tokens)
    batches = make_batch_prompts(folder, config.prompt_lens, config.batch) if config.batch else {}
    load_before = os.getloadavg()
    log("measuring memory bandwidth (numpy copy of a 512 MB array)")
    bandwidth = measure_bandwidth()
    weights = weight_bytes(config.model_dir)
    options, unavailable = engine_options(config, sorted(folder.eos_ids))
    engines = {name: {"available": False, "reason": reason} for name, reason in unavailable.items()}
    names = runnable(config.engines, unavailable)
    engines.update(interleaved_runs(config, names, options, prompts, batches))
    for name, figures in engines.items():
        figures["precision"] = ENGINES[name].precision
        add_bandwidth_fraction(figures, weights["per_token_bytes"], bandwidth["limit_bytes_per_s"])
        add_multiply_add_rate(figures, weights["per_token_elements"])
    result = {
        "model_dir": str(config.model_dir),
        "settings": {"engines": config.engines, "prompt_lens": config.prompt_lens, "new_tokens": config.new_tokens,
                     "repeats": config.repeats, "threads": os.cpu_count(), "decoding": "greedy",
                     "warmup": config.warmup, "batch": config.batch,
                     "profile_step": config.profile_step},
        "machine": machine_info(load_before),
        "bandwidth": bandwidth,
        "weights": weights,
        "engines": engines,
        "ratios": {k: v for name in DATABASE_ENGINES for k, v in ratios(engines, name, REFERENCE).items()},
        "agreement": agreement(engines, config.prompt_lens),
        "batch_agreement": batch_agreement(engines),
        "memory_capped": capped_runs(config, names, options, prompts, weights, engines.get(REFERENCE, {}))
        if config.memory_cap_bytes else None,
    }
    result["targets"] = speed_targets(result)
    result["machine"]["load_average_after"] = list(os.getloadavg())
    return result


@dataclass(frozen=True)
class SpeedTargets:
    """What a DuckDB engine is held to on one model: decode at least `decode_ratio` of onnxruntime's
    tokens/s, a first token for a prompt of TTFT_PROMPT tokens within `ttft_ratio` times
    onnxruntime's, and a decode step in at most `statements_per_step` SQL statements (None: no bound)."""

    decode_ratio: float
    ttft_ratio: float
    statements_per_step: int | None = None


TTFT_PROMPT = 128
# By model folder name, then engine (pure SQL and native kernels); any other model is held to SmolLM2's.
TARGETS = {
    "smollm2-135m": {"duckdb-sql": SpeedTargets(0.05, 40.0, 130), "duckdb": SpeedTargets(0.3, 10.0)},
    "llama3.2-1b-shape": {"duckdb-sql": SpeedTargets(0.15, 20.0), "duckdb": SpeedTargets(0.5, 5.0)},
}


def targets_for(model_dir: str) -> dict[str, SpeedTargets]:
    return TARGETS.get(Path(model_dir).name, TARGETS["smollm2-135m"])


def speed_targets(result: dict[str, Any]) -> dict[str, Any]:
    """Each target with the measured value and whether it is met (None: not measured in this run)."""
    targets: dict[str, Any] = {}
    for engine, want in targets_for(result.get("model_dir", "")).items():
        ratio = result.get("ratios", {}).get(f"{engine}/{REFERENCE}", {})
        decode = ratio.get("decode_tokens_per_s")
        ttft = ratio.get("ttft_s", {}).get(str(TTFT_PROMPT))
        targets[f"{engine} decode_ratio"] = {"want": f">= {want.decode_ratio}", "value": decode,
                                             "met": None if decode is None else decode >= want.decode_ratio}
        targets[f"{engine} ttft_ratio_prompt_{TTFT_PROMPT}"] = {
            "want": f"<= {want.ttft_ratio}", "value": ttft, "met": None if ttft is None else ttft <= want.ttft_ratio}
        if want.statements_per_step is not None:
            steps = result.get("engines", {}).get(engine, {}).get("statements_per_step")
            targets[f"{engine} statements_per_step"] = {
                "want": f"<= {want.statements_per_step}", "value": steps,
                "met": None if steps is None else steps <= want.statements_per_step}
    capped = (result.get("memory_capped") or {}).get("engines", {})
    finished = {n: e.get("decode_tokens_per_s") for n, e in capped.items() if e.get("finished")}
    fastest = None
    if "duckdb" in capped:
        others = [v for n, v in finished.items() if not n.startswith("duckdb")]
        fastest = "duckdb" in finished and all((finished["duckdb"] or 0) > (v or 0) for v in others)
    targets["capped_fastest"] = {"want": "duckdb finishes with the highest decode tokens/s",
                                 "value": finished if "duckdb" in capped else None, "met": fastest}
    targets.update(capped_targets(capped, Path(result.get("model_dir", "")).name))
    targets.update(batch_targets(result))
    return targets


# At this batch size, DuckDB's aggregate decode tokens/s is at least this many times its speed for
# one sequence (by model).
BATCH_TARGET_SIZE = 32
BATCH_SPEEDUP = {"smollm2-135m": 10.0}


def batch_targets(result: dict[str, Any]) -> dict[str, Any]:
    want = BATCH_SPEEDUP.get(Path(result.get("model_dir", "")).name)
    if want is None:
        return {}
    batch = result.get("engines", {}).get("duckdb", {}).get("batch", {})
    value = batch.get("speedup_over_batch_1") if batch.get("size") == BATCH_TARGET_SIZE else None
    return {f"duckdb batch {BATCH_TARGET_SIZE} decode over batch 1": {
        "want": f">= {want}", "value": value, "met": None if value is None else value >= want}}


# Under the cap, duckdb-int8 decodes at least this many times faster than llama.cpp F32 (by model).
CAPPED_INT8_SPEEDUP = {"llama3.2-1b-shape": 3.0}


def capped_targets(capped: dict[str, Any], model: str) -> dict[str, Any]:
    """Both DuckDB weight formats finish under the cap; on the models of CAPPED_INT8_SPEEDUP, int8
    decodes that much faster than llama.cpp F32 and finishes where onnxruntime does not."""
    def finished(name: str) -> bool | None:
        return capped[name].get("finished", False) if name in capped else None

    targets = {f"capped {name} finishes": {"want": "finishes under the cap", "value": finished(name),
                                           "met": finished(name)} for name in ("duckdb", "duckdb-int8")}
    speedup = CAPPED_INT8_SPEEDUP.get(model)
    if speedup is None:
        return targets
    int8, f32 = (capped.get(n, {}).get("decode_tokens_per_s") if finished(n) else None
                 for n in ("duckdb-int8", "llama.cpp"))
    ratio = int8 / f32 if int8 is not None and f32 else None
    targets["capped duckdb-int8/llama.cpp decode"] = {"want": f">= {speedup}", "value": ratio,
                                                      "met": None if ratio is None else ratio >= speedup}
    ort = finished("onnxruntime")
    beats = None if finished("duckdb-int8") is None or ort is None else bool(finished("duckdb-int8")) and not ort
    targets["capped duckdb-int8 finishes where onnxruntime does not"] = {
        "want": "duckdb-int8 finishes, onnxruntime does not", "value": {"duckdb-int8": finished("duckdb-int8"),
                                                                        "onnxruntime": ort}, "met": beats}
    return targets


def capped_ratios(capped: dict[str, Any]) -> dict[str, float]:
    """Decode tokens/s of each DuckDB engine over each llama.cpp engine's, both under the cap."""
    speed = {n: e.get("decode_tokens_per_s") for n, e in capped.items() if e.get("finished")}
    return {f"{a}/{b}": speed[a] / speed[b] for a in ("duckdb", "duckdb-int8") for b in ("llama.cpp", "llama.cpp-q8_0")
            if speed.get(a) and speed.get(b)}


def make_prompts(folder: Any, lengths: list[int], new_tokens: int) -> dict[int, list[int]]:
    """Token ids of the prompt text, cut at each length (the text repeats when a length needs it)."""
    if max(lengths) + new_tokens > folder.context_length:
        raise InputError(f"prompt length {max(lengths)} plus {new_tokens} new tokens exceeds the model's context "
                         f"of {folder.context_length} tokens")
    ids = folder.encode(PROMPT_TEXT)
    while len(ids) < max(lengths):
        ids += folder.tokenizer.encode(PROMPT_TEXT, add_special_tokens=False).ids
    return {n: ids[:n] for n in lengths}


def weight_bytes(model_dir: Path) -> dict[str, int]:
    """Bytes of weights in the ONNX file, and bytes read per decoded token: every weight but those
    only gathered from (an embedding table reads one row per token)."""
    import onnx

    graph = onnx.load(str(model_dir / "model.onnx"), load_external_data=False).graph
    consumers: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, set()).add(node.op_type)
    total = per_token = per_token_elements = 0
    for init in graph.initializer:
        elements = 1
        for dim in init.dims:
            elements *= dim
        size = onnx.helper.tensor_dtype_to_np_dtype(init.data_type).itemsize * elements
        total += size
        if consumers.get(init.name, set()) - {"Gather"}:
            per_token += size
            per_token_elements += elements
    return {"total_bytes": total, "per_token_bytes": per_token, "per_token_elements": per_token_elements}


# llama.cpp engines, the EngineOptions field naming their GGUF, and the gguf_weights function that
# writes it.
GGUF_ENGINES = (("llama.cpp", "gguf", "f32_gguf"), ("llama.cpp-q8_0", "gguf_q8_0", "q8_0_gguf"))


def runnable(names: list[str], unavailable: dict[str, str]) -> list[str]:
    return [n for n in names if n in ENGINES and n not in unavailable]


def engine_options(config: BenchConfig, eos_ids: list[int]) -> tuple[EngineOptions, dict[str, str]]:
    """Options shared by the engines' processes, and the engines that cannot run here, with why."""
    import importlib.util

    options = EngineOptions(eos_ids=eos_ids, context=max(config.prompt_lens) + config.new_tokens,
                            kernels=config.kernels, postgres_url=config.postgres_url)
    unavailable: dict[str, str] = {}
    for name, field_name, prepare in GGUF_ENGINES:
        if name not in config.engines:
            continue
        if importlib.util.find_spec("llama_cpp") is None:
            unavailable[name] = "llama-cpp-python is not installed (pip install 'onnx2sql[bench]')"
            continue
        from onnx2sql.bench import gguf_weights

        try:
            setattr(options, field_name, str(getattr(gguf_weights, prepare)(config.model_dir)))
        except gguf_weights.GgufUnavailable as exc:
            unavailable[name] = str(exc)
    for name, reason in unavailable.items():
        log(f"{name} is left out: {reason}")
    return options, unavailable


def start_engines(names: list[str], config: BenchConfig, options: EngineOptions) -> tuple[dict, dict]:
    """Start every engine's process and wait until each has compiled or loaded its model (one at a
    time, so that loading is timed on a quiet machine)."""
    running: dict[str, EngineProcess] = {}
    figures: dict[str, dict[str, Any]] = {}
    for name in names:
        log(f"{name}: loading")
        process = EngineProcess(name, config.model_dir, options)
        try:
            ready = process.receive()
        except EngineDied as exc:
            ready = {"error": str(exc)}
        if "error" in ready:
            log(f"{name} is left out: {ready['error']}")
            process.kill()
            figures[name] = {"available": False, "reason": ready["error"]}
            continue
        log(f"{name}: {ready['setup_kind']} took {ready['setup_s']:.1f} s")
        running[name] = process
        figures[name] = {"available": True, **{k: v for k, v in ready.items() if k != "ready"}, "runs": []}
    return running, figures


def interleaved_runs(config: BenchConfig, names: list[str], options: EngineOptions, prompts: dict[int, list[int]],
                     batches: dict[int, list[list[int]]]) -> dict[str, dict[str, Any]]:
    running, figures = start_engines(names, config, options)
    try:
        if config.warmup:
            warm_up(running, prompts[min(prompts)])
        for repeat in range(config.repeats):
            for length, ids in prompts.items():
                for name in rotated(list(running), repeat):
                    label = f"{name} prompt {length} repeat {repeat + 1}/{config.repeats}"
                    run = timed_run(running, name, ids, config.new_tokens, label)
                    if run is not None:
                        figures[name]["runs"].append({"prompt_len": length, "repeat": repeat, **run})
        batch_runs(running, figures, batches, config.new_tokens)
        if config.profile_step:
            step_profiles(running, figures, prompts)
    finally:
        for name, process in running.items():
            figures[name]["peak_rss_bytes"] = process.finish().get("peak_rss_bytes", figures[name]["peak_rss_bytes"])
    for f in figures.values():
        if "runs" in f:  # an engine that died mid-way keeps the runs it finished
            f.update(summarize(f["runs"]))
        if f.get("batch", {}).get("runs"):
            f["batch"].update(summarize_batch(f["batch"]["runs"], f.get("decode_tokens_per_s_by_prompt_len", {})))
    return figures


def make_batch_prompts(folder: Any, lengths: list[int], size: int) -> dict[int, list[list[int]]]:
    """`size` different prompts of each length: windows of the prompt text's tokens, one token apart."""
    ids = folder.encode(PROMPT_TEXT)
    while len(ids) < max(lengths) + size:
        ids += folder.tokenizer.encode(PROMPT_TEXT, add_special_tokens=False).ids
    return {n: [ids[k:k + n] for k in range(size)] for n in lengths}


def ask(running: dict[str, EngineProcess], name: str, label: str, message: dict[str, Any]) -> dict[str, Any] | None:
    """The engine's reply to `message`, or None when its process died (it then leaves `running`)."""
    try:
        return running[name].request(message)
    except EngineDied as exc:
        log(f"{label}: {exc}")
        running.pop(name)
        return None


def batch_runs(running: dict[str, EngineProcess], figures: dict[str, dict[str, Any]],
               batches: dict[int, list[list[int]]], new_tokens: int) -> None:
    """One batch per prompt length and engine, for the engines that generate batches."""
    for length, prompts in batches.items():
        for name in list(running):
            label = f"{name} batch of {len(prompts)}, prompt {length}"
            log(f"{label}: running")
            reply = ask(running, name, label, {"op": "generate_batch", "prompts": prompts, "new_tokens": new_tokens})
            if reply is None:
                continue
            entry = figures[name].setdefault("batch", {"size": len(prompts), "runs": []})
            reason = reply.get("unsupported") or reply.get("error")
            if reason:
                log(f"{label}: {reason}")
                entry.setdefault("not_run", {})[str(length)] = reason
                continue
            log(f"{label}: first tokens after {reply['ttft_s']:.2f} s, decode {reply['decode_tokens_per_s']:.2f} "
                "tokens/s in all")
            entry["runs"].append({"prompt_len": length, **reply})


def step_profiles(running: dict[str, EngineProcess], figures: dict[str, dict[str, Any]],
                  prompts: dict[int, list[int]]) -> None:
    """A decode step after each prompt length, profiled statement by statement (DuckDB engines):
    how much of it DuckDB spends planning, how much in its operators."""
    for length, ids in prompts.items():
        for name in list(running):
            label = f"{name} step profile, prompt {length}"
            reply = ask(running, name, label, {"op": "profile_step", "prompt_ids": ids})
            if reply is None or "unsupported" in reply:
                continue
            if "error" in reply:
                log(f"{label}: {reply['error']}")
                continue
            profile = reply["profile"]
            log(f"{label}: {profile['wall_s']:.2f} s in {profile['statements']} statements, planning "
                f"{profile['planning_s']:.2f} s, operators {profile['operators_cpu_s']:.2f} s of CPU")
            figures[name].setdefault("step_profile", {})[str(length)] = profile


def summarize_batch(runs: list[dict[str, Any]], alone: dict[str, float]) -> dict[str, Any]:
    """Aggregate decode tokens/s per prompt length, and over the same engine's decode of one sequence
    at the same prompt length."""
    by_length = {str(r["prompt_len"]): r["decode_tokens_per_s"] for r in runs}
    speedups = [by_length[n] / alone[n] for n in by_length if alone.get(n)]
    return {"decode_tokens_per_s_by_prompt_len": by_length,
            "decode_tokens_per_s": statistics.median(by_length.values()),
            "ttft_s": {str(r["prompt_len"]): r["ttft_s"] for r in runs},
            "speedup_over_batch_1": statistics.median(speedups) if speedups else None}


def batch_agreement(engines: dict[str, Any]) -> dict[str, Any]:
    """Per engine and prompt length: how many of the batch's sequences got onnxruntime's batch tokens
    (over the tokens both produced)."""
    reference = {r["prompt_len"]: r["tokens"] for r in engines.get(REFERENCE, {}).get("batch", {}).get("runs", [])}
    out: dict[str, Any] = {}
    for name, f in engines.items():
        if name == REFERENCE:
            continue
        for run in f.get("batch", {}).get("runs", []):
            want = reference.get(run["prompt_len"])
            if want is None:
                continue
            same = sum(a[:min(len(a), len(b))] == b[:min(len(a), len(b))] for a, b in zip(run["tokens"], want))
            out.setdefault(f"{name} vs {REFERENCE}", {})[str(run["prompt_len"])] = {
                "sequences": len(want), "agreeing": same, "all_agree": same == len(want)}
    return out


def rotated(names: list[str], k: int) -> list[str]:
    """The order rotates each repeat, so that no engine always runs right after another."""
    k = k % len(names) if names else 0
    return names[k:] + names[:k]


def warm_up(running: dict[str, EngineProcess], ids: list[int]) -> None:
    """One short untimed run each: first-touch costs (page cache, allocator, plan caches) are not
    what a repeat measures."""
    for name in list(running):
        timed_run(running, name, ids, 2, f"{name} warm-up")


def timed_run(running: dict[str, EngineProcess], name: str, ids: list[int], new_tokens: int,
              label: str) -> dict[str, Any] | None:
    try:
        reply = running[name].request({"op": "generate", "prompt_ids": ids, "new_tokens": new_tokens, "label": label})
    except EngineDied as exc:
        print(file=sys.stderr)
        log(f"{label}: {exc}")
        running.pop(name)
        return None
    if "error" in reply:
        print(file=sys.stderr)
        log(f"{label}: {reply['error']}")
        return None
    print(f"\r  {label}: time to first token {reply['ttft_s']:.3f} s, decode {reply['decode_tokens_per_s']:.2f} "
          "tokens/s", file=sys.stderr, flush=True)
    return reply


def stats(values: list[float]) -> dict[str, float | int]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over repeats, with min and max; decode speed over every run of every prompt length."""
    if not runs:
        return {}
    lengths = sorted({r["prompt_len"] for r in runs})
    ttft = {str(n): stats([r["ttft_s"] for r in runs if r["prompt_len"] == n]) for n in lengths}
    decode = [r["decode_tokens_per_s"] for r in runs if r["decode_tokens_per_s"] > 0]
    by_length = {n: statistics.median(v) for n in lengths
                 if (v := [r["decode_tokens_per_s"] for r in runs if r["prompt_len"] == n and r["decode_tokens_per_s"] > 0])}
    return {
        "ttft_s": {n: s["median"] for n, s in ttft.items()},
        "ttft_s_stats": ttft,
        "decode_tokens_per_s": statistics.median(decode) if decode else None,
        "decode_tokens_per_s_stats": stats(decode) if decode else None,
        "decode_tokens_per_s_by_prompt_len": {str(n): speed for n, speed in by_length.items()},
        "tokens": {str(n): next(r["tokens"] for r in runs if r["prompt_len"] == n) for n in lengths},
        **decode_growth(runs, by_length),
    }


def decode_growth(runs: list[dict[str, Any]], by_length: dict[int, float]) -> dict[str, Any]:
    """How a decode step's time grows with the past: seconds per token after the longest prompt over
    seconds per token after the shortest (1.0: no growth), from the median decode speed per prompt
    length; and, for a database engine, the SQL statements one decode step ran."""
    out: dict[str, Any] = {}
    steps = [r["statements_per_step"] for r in runs if r.get("statements_per_step")]
    if steps:
        out["statements_per_step"] = max(steps)
    if len(by_length) >= 2:
        short, long = min(by_length), max(by_length)
        out["decode_step_growth"] = {"from_prompt_len": short, "to_prompt_len": long,
                                     "ratio": by_length[short] / by_length[long]}
    return out


def add_bandwidth_fraction(figures: dict[str, Any], bytes_per_token: int, limit: float) -> None:
    """Decoding reads every weight once per token, so tokens/s x bytes/token cannot beat the bandwidth."""
    speed = figures.get("decode_tokens_per_s")
    if speed:
        figures["weight_bytes_per_s"] = speed * bytes_per_token
        figures["bandwidth_fraction"] = speed * bytes_per_token / limit


def add_multiply_add_rate(figures: dict[str, Any], elements_per_token: int) -> None:
    """Decoding multiplies each weight it reads once per token: G multiply-adds per second."""
    speed = figures.get("decode_tokens_per_s")
    if speed:
        figures["g_multiply_adds_per_s"] = speed * elements_per_token / 1e9


# The engines whose figures are given as ratios over onnxruntime's.
DATABASE_ENGINES = ("duckdb", "duckdb-sql", "sqlite", "sqlite-sql", "postgres", "spark")


def ratios(engines: dict[str, dict[str, Any]], a: str, b: str) -> dict[str, Any]:
    """a / b for every figure both engines have."""
    x, y = engines.get(a, {}), engines.get(b, {})
    if not (x.get("available") and y.get("available")):
        return {}

    def ratio(p: Any, q: Any) -> float | None:
        return p / q if isinstance(p, (int, float)) and isinstance(q, (int, float)) and q else None

    keys = ("setup_s", "decode_tokens_per_s", "peak_rss_bytes", "disk_bytes", "bandwidth_fraction")
    out: dict[str, Any] = {k: ratio(x.get(k), y.get(k)) for k in keys}
    out["ttft_s"] = {n: ratio(t, y.get("ttft_s", {}).get(n)) for n, t in x.get("ttft_s", {}).items()}
    return {f"{a}/{b}": out}


def agreement(engines: dict[str, dict[str, Any]], lengths: list[int]) -> dict[str, Any]:
    """Greedy tokens of each engine against onnxruntime's, per prompt length (first repeat)."""
    reference = engines.get(REFERENCE, {}).get("tokens")
    out: dict[str, Any] = {}
    if not reference:
        return out
    for name, figures in engines.items():
        tokens = figures.get("tokens")
        if name == REFERENCE or not tokens:
            continue
        out[f"{name} vs {REFERENCE}"] = {str(n): compare_tokens(tokens.get(str(n), []), reference.get(str(n), []))
                                         for n in lengths}
    return out


def compare_tokens(got: list[int], want: list[int]) -> dict[str, Any]:
    common = 0
    for a, b in zip(got, want):
        if a != b:
            break
        common += 1
    return {"first_token_agrees": bool(got and want and got[0] == want[0]),
            "all_agree": got == want, "matching_prefix": common, "compared": min(len(got), len(want))}


def capped_runs(config: BenchConfig, names: list[str], options: EngineOptions, prompts: dict[int, list[int]],
                weights: dict[str, int], reference: dict[str, Any]) -> dict[str, Any]:
    """Each engine alone in a fresh process under a hard cgroup memory limit, on the shortest prompt;
    its tokens compared with the uncapped onnxruntime run's on that prompt (`reference`)."""
    cap_bytes = config.memory_cap_bytes or 0
    length = min(prompts)
    out: dict[str, Any] = {"cap_bytes": cap_bytes, "weight_bytes": weights["total_bytes"], "prompt_len": length,
                           "new_tokens": config.new_tokens, "enforced": True, "engines": {}}
    if cap_bytes >= weights["total_bytes"]:
        log(f"note: the memory cap ({cap_bytes} B) is not below the weights ({weights['total_bytes']} B)")
    limit = duckdb_limit_under(cap_bytes, config)
    capped_options = EngineOptions(**{**options.as_json(), "duckdb_memory_limit": limit})
    out["duckdb_memory_limit"] = capped_options.duckdb_memory_limit
    want = (reference.get("tokens") or {}).get(str(length))
    for name in names:
        try:
            cap = CgroupCap.create(f"onnx2sql-bench-{os.getpid()}-{name.replace('.', '')}", cap_bytes)
        except CapUnavailable as exc:
            log(f"memory cap cannot be enforced: {exc}")
            return {**out, "enforced": False, "reason": str(exc), "engines": {}}
        try:
            out["engines"][name] = capped_run(name, cap, config, capped_options, prompts[length])
        finally:
            cap.remove()
        figures = out["engines"][name]
        figures["precision"] = ENGINES[name].precision
        if figures.get("tokens") and want:
            # fp32 engines must give onnxruntime's tokens; an int8 engine's agreement is reported.
            figures["agreement"] = compare_tokens(figures["tokens"], want)
    out["decode_ratios"] = capped_ratios(out["engines"])
    return out


# What the generation process holds besides DuckDB's buffer pool: about 115 MB on SmolLM2 once the
# database is open (interpreter, numpy, duckdb, the tokenizer, the program), plus headroom.
PROCESS_RESERVE_BYTES = 136 * 10**6


def duckdb_limit_under(cap_bytes: int, config: BenchConfig) -> str:
    """DuckDB's buffer pool limit inside the cap: half of it, and never more than what the process
    leaves of it, for the interpreter, libraries and allocations DuckDB does not count (or the
    user's --duckdb-memory-limit)."""
    limit = min(cap_bytes // 2, cap_bytes - PROCESS_RESERVE_BYTES)
    return config.duckdb_memory_limit or f"{max(limit, 0) // 2**20}MiB"


def capped_run(name: str, cap: CgroupCap, config: BenchConfig, options: EngineOptions,
               ids: list[int]) -> dict[str, Any]:
    log(f"{name}: capped run under {cap.limit_bytes / 1e6:.0f} MB")
    files = [f for f in ENGINES[name](config.model_dir, options).disk_files() if f.exists()]
    evict_from_page_cache(files)  # loading, too, is done under the cap
    process = EngineProcess(name, config.model_dir, options, cap)
    figures: dict[str, Any] = {"finished": False}
    try:
        ready = process.receive(config.cap_timeout_s)
        if "error" in ready:
            raise EngineDied(ready["error"])
        figures["setup_s"] = ready["setup_s"]
        reply = process.request({"op": "generate", "prompt_ids": ids, "new_tokens": config.new_tokens,
                                 "label": f"{name} capped"}, config.cap_timeout_s)
        if "error" in reply:
            raise EngineDied(reply["error"])
        print(file=sys.stderr)
        figures.update(finished=True, ttft_s=reply["ttft_s"], decode_tokens_per_s=reply["decode_tokens_per_s"],
                       tokens=reply["tokens"])
        figures["peak_rss_bytes"] = process.finish().get("peak_rss_bytes", reply["peak_rss_bytes"])
    except EngineDied as exc:
        process.kill()
        figures["reason"] = str(exc)
    figures["oom_killed"] = cap.oom_kills() > 0
    figures["cgroup_peak_bytes"] = cap.peak_usage_bytes()
    if figures["oom_killed"] and not figures["finished"]:
        figures["reason"] = "killed by the kernel: out of memory under the cap"
    outcome = "finished" if figures["finished"] else f"did not finish ({figures.get('reason')})"
    log(f"{name} under the cap: {outcome}")
    return figures


def machine_info(load_before: tuple[float, float, float]) -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_bytes": total_memory_bytes(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {p: _version(p) for p in VERSIONED},
        "load_average_before": list(load_before),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
