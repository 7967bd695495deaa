"""`onnx2sql bench` on tiny-llama3: the harness runs end to end and writes what it promises. No
timing is asserted: speeds depend on the machine."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from onnx2sql.bench.memory import CapUnavailable, CgroupCap

ENGINES = ("duckdb", "duckdb-sql", "duckdb-int8", "onnxruntime")
CAP = "300MB"  # far above tiny-llama3's weights: this checks the mechanics, not the model's needs


def cgroup_cap_unavailable() -> str | None:
    """Why no memory cap can be enforced here, or None when one can."""
    try:
        CgroupCap.create("onnx2sql-bench-probe", 2**30).remove()
    except CapUnavailable as exc:
        return str(exc)
    return None


@pytest.fixture(scope="module")
def bench_run(tiny_llama3_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, str]:
    out = tmp_path_factory.mktemp("bench")
    cap = [] if cgroup_cap_unavailable() else ["--memory-cap", CAP]
    result = subprocess.run(
        [sys.executable, "-m", "onnx2sql", "bench", str(tiny_llama3_dir), "--engines", ",".join(ENGINES),
         "--prompt-lens", "4", "--new-tokens", "3", "--repeats", "1", "--batch", "3", "--profile-step", "--out", str(out), "--plot", str(out),
         *cap], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads((out / "results.json").read_text()), out, result.stdout


def test_results_have_every_figure_of_both_engines(bench_run: tuple[dict, Path, str]) -> None:
    results, _, _ = bench_run
    for name in ENGINES:
        figures = results["engines"][name]
        assert figures["available"], figures
        assert figures["decode_tokens_per_s"] > 0
        assert set(figures["ttft_s"]) == {"4"} and figures["ttft_s"]["4"] > 0
        stats = figures["decode_tokens_per_s_stats"]
        assert stats["min"] <= stats["median"] <= stats["max"] and stats["n"] == 1
        assert figures["peak_rss_bytes"] > 0 and figures["disk_bytes"] > 0 and figures["setup_s"] > 0
        assert 0 < figures["bandwidth_fraction"]
    ratio = results["ratios"]["duckdb/onnxruntime"]
    assert ratio["decode_tokens_per_s"] > 0 and ratio["ttft_s"]["4"] > 0
    # tiny-llama3's decode step: 3 inputs loaded, 3 symbols, the head's row filter, 11 regions, the choice.
    assert results["engines"]["duckdb"]["statements_per_step"] == 19
    assert "statements_per_step" not in results["engines"]["onnxruntime"]
    assert results["engines"]["duckdb"]["kernels"] in ("native", "sql")
    assert results["engines"]["duckdb-int8"]["kernels"] == "native"
    assert results["engines"]["duckdb-int8"]["weights"] == "int8" and results["engines"]["duckdb"]["weights"] == "fp32"
    assert [results["engines"][n]["precision"] for n in ENGINES] == ["fp32", "fp32", "int8", "fp32"]
    assert results["machine"]["cores"] >= 1 and results["machine"]["memory_bytes"] > 0
    assert results["machine"]["versions"]["duckdb"] and results["machine"]["versions"]["onnxruntime"]
    assert results["bandwidth"]["limit_bytes_per_s"] > 0
    assert 0 < results["weights"]["per_token_bytes"] <= results["weights"]["total_bytes"]


def test_database_engines_profile_a_decode_step(bench_run: tuple[dict, Path, str]) -> None:
    """--profile-step: each DuckDB engine's decode step after the prompt, statement by statement,
    the same statements as its timed steps and onnxruntime's tokens; onnxruntime has no profile."""
    results, _, table = bench_run
    want = results["engines"]["onnxruntime"]["tokens"]["4"][:2]
    for name in ("duckdb", "duckdb-sql", "duckdb-int8"):
        profile = results["engines"][name]["step_profile"]["4"]
        assert profile["statements"] == results["engines"][name]["statements_per_step"]
        assert 0 < profile["planning_s"] <= profile["wall_s"] and profile["operators_cpu_s"] > 0
        if results["engines"][name]["precision"] == "fp32":
            assert profile["tokens"] == want
    assert "step_profile" not in results["engines"]["onnxruntime"]
    assert "decode step after prompt 4: planning / operators' CPU / wall" in table


def test_duckdb_and_onnxruntime_agree_on_the_greedy_tokens(bench_run: tuple[dict, Path, str]) -> None:
    results, _, table = bench_run
    comparison = results["agreement"]["duckdb vs onnxruntime"]["4"]
    assert comparison["first_token_agrees"] and comparison["all_agree"], comparison
    assert results["engines"]["duckdb"]["tokens"] == results["engines"]["onnxruntime"]["tokens"]
    assert "MISMATCH" not in table


def test_batches_run_on_the_engines_that_batch_and_agree(bench_run: tuple[dict, Path, str]) -> None:
    results, _, table = bench_run
    assert results["settings"]["batch"] == 3
    for name in ENGINES:
        batch = results["engines"][name]["batch"]
        assert batch["size"] == 3 and len(batch["runs"]) == 1, batch
        assert len(batch["runs"][0]["tokens"]) == 3 and batch["decode_tokens_per_s"] > 0
        assert batch["speedup_over_batch_1"] == pytest.approx(
            batch["decode_tokens_per_s"] / results["engines"][name]["decode_tokens_per_s_by_prompt_len"]["4"])
    for pair in ("duckdb vs onnxruntime", "duckdb-sql vs onnxruntime"):
        assert results["batch_agreement"][pair]["4"] == {"sequences": 3, "agreeing": 3, "all_agree": True}
    duckdb_tokens = results["engines"]["duckdb"]["batch"]["runs"][0]["tokens"]
    assert duckdb_tokens == results["engines"]["onnxruntime"]["batch"]["runs"][0]["tokens"]
    assert len({tuple(t) for t in duckdb_tokens}) > 1  # the batch's prompts differ
    assert "batch of 3, duckdb: prompt 4:" in table and "DIFFER" not in table
    assert "duckdb batch 32 decode over batch 1" not in results["targets"]  # tiny-llama3 has no such target


def test_table_and_chart_are_written(bench_run: tuple[dict, Path, str]) -> None:
    _, out, table = bench_run
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "decode tokens/s" in table and "duckdb/onnxruntime" in table


def test_memory_capped_runs(bench_run: tuple[dict, Path, str]) -> None:
    reason = cgroup_cap_unavailable()
    if reason:
        pytest.skip(f"no cgroup memory cap on this machine: {reason}")
    capped = bench_run[0]["memory_capped"]
    assert capped["enforced"] and capped["cap_bytes"] == 300 * 10**6
    for name in ENGINES:
        figures = capped["engines"][name]
        assert figures["finished"] and not figures["oom_killed"], figures
        assert figures["decode_tokens_per_s"] > 0
        assert 0 < figures["cgroup_peak_bytes"] <= capped["cap_bytes"]
        assert figures["precision"] == ("int8" if name == "duckdb-int8" else "fp32")
        if figures["precision"] == "fp32":  # the same tokens as the uncapped onnxruntime run
            assert figures["agreement"]["all_agree"], figures


def test_a_process_over_the_cap_is_killed_and_reported() -> None:
    reason = cgroup_cap_unavailable()
    if reason:
        pytest.skip(f"no cgroup memory cap on this machine: {reason}")
    cap = CgroupCap.create("onnx2sql-bench-oom-probe", 64 * 2**20)
    try:
        grab = "import sys; open(sys.argv[1], 'w').write(str(__import__('os').getpid())); b = bytearray(256 << 20)"
        result = subprocess.run([sys.executable, "-c", grab, str(cap.path / "cgroup.procs")], timeout=60)
        assert result.returncode == -9 and cap.oom_kills() == 1
    finally:
        cap.remove()


def _result(decode: float, ttft_128: float, capped: dict, steps: int = 100,
            model_dir: str = "models/smollm2-135m", engine: str = "duckdb-sql") -> dict:
    return {"model_dir": model_dir, "engines": {engine: {"statements_per_step": steps}},
            "ratios": {f"{engine}/onnxruntime": {"decode_tokens_per_s": decode, "ttft_s": {"128": ttft_128}}},
            "memory_capped": {"engines": capped}}


TARGET_KEYS = ("duckdb-sql decode_ratio", "duckdb-sql ttft_ratio_prompt_128", "duckdb-sql statements_per_step",
               "capped_fastest")


def test_speed_targets_judge_each_figure() -> None:
    from onnx2sql.bench.runner import speed_targets

    capped = {"duckdb": {"finished": True, "decode_tokens_per_s": 0.3},
              "onnxruntime": {"finished": False},
              "llama.cpp": {"finished": True, "decode_tokens_per_s": 0.27}}
    met = speed_targets(_result(0.05, 40.0, capped, steps=130))
    assert [met[k]["met"] for k in TARGET_KEYS] == [True] * 4

    capped["llama.cpp"]["decode_tokens_per_s"] = 0.31
    missed = speed_targets(_result(0.049, 40.1, capped, steps=131))
    assert [missed[k]["met"] for k in TARGET_KEYS] == [False] * 4
    assert missed["duckdb decode_ratio"]["met"] is None  # the native engine did not run

    unmeasured = speed_targets({"ratios": {}, "memory_capped": None})
    assert all(t["met"] is None for t in unmeasured.values())


def test_each_model_and_engine_has_its_own_targets() -> None:
    from onnx2sql.bench.runner import speed_targets

    one_b = "models/llama3.2-1b-shape"
    targets = speed_targets(_result(0.149, 20.1, {}, model_dir=one_b))
    assert targets["duckdb-sql decode_ratio"]["met"] is False and targets["duckdb-sql decode_ratio"]["want"] == ">= 0.15"
    assert targets["duckdb-sql ttft_ratio_prompt_128"]["met"] is False
    assert "duckdb-sql statements_per_step" not in targets
    assert speed_targets(_result(0.15, 20.0, {}, model_dir=one_b))["duckdb-sql decode_ratio"]["met"]
    native = speed_targets(_result(0.5, 5.0, {}, model_dir=one_b, engine="duckdb"))
    assert native["duckdb decode_ratio"]["met"] and native["duckdb ttft_ratio_prompt_128"]["met"]
    assert speed_targets(_result(0.29, 10.0, {}, engine="duckdb"))["duckdb decode_ratio"]["met"] is False


def test_decode_growth_compares_the_longest_prompt_with_the_shortest() -> None:
    from onnx2sql.bench.runner import decode_growth

    runs = [{"prompt_len": 16, "decode_tokens_per_s": 2.0, "statements_per_step": 103},
            {"prompt_len": 512, "decode_tokens_per_s": 1.6, "statements_per_step": 103}]
    assert decode_growth(runs, {16: 2.0, 512: 1.6}) == {
        "statements_per_step": 103, "decode_step_growth": {"from_prompt_len": 16, "to_prompt_len": 512, "ratio": 1.25}}
    assert decode_growth(runs[:1], {16: 2.0}) == {"statements_per_step": 103}


def test_capped_targets_of_the_int8_race() -> None:
    from onnx2sql.bench.runner import capped_ratios, speed_targets

    one_b = "models/llama3.2-1b-shape"
    capped = {"duckdb": {"finished": True, "decode_tokens_per_s": 0.25},
              "duckdb-int8": {"finished": True, "decode_tokens_per_s": 1.5},
              "onnxruntime": {"finished": False},
              "llama.cpp": {"finished": True, "decode_tokens_per_s": 0.5},
              "llama.cpp-q8_0": {"finished": True, "decode_tokens_per_s": 3.0}}
    met = speed_targets(_result(0.1, 10.0, capped, model_dir=one_b))
    assert met["capped duckdb finishes"]["met"] and met["capped duckdb-int8 finishes"]["met"]
    assert met["capped duckdb-int8/llama.cpp decode"] == {"want": ">= 3.0", "value": 3.0, "met": True}
    assert met["capped duckdb-int8 finishes where onnxruntime does not"]["met"] is True
    assert capped_ratios(capped) == {"duckdb/llama.cpp": 0.5, "duckdb/llama.cpp-q8_0": 0.25 / 3.0,
                                     "duckdb-int8/llama.cpp": 3.0, "duckdb-int8/llama.cpp-q8_0": 0.5}

    capped["duckdb-int8"]["decode_tokens_per_s"] = 1.49
    capped["onnxruntime"]["finished"] = True
    capped["duckdb"] = {"finished": False}
    missed = speed_targets(_result(0.1, 10.0, capped, model_dir=one_b))
    assert missed["capped duckdb-int8/llama.cpp decode"]["met"] is False
    assert missed["capped duckdb-int8 finishes where onnxruntime does not"]["met"] is False
    assert missed["capped duckdb finishes"]["met"] is False

    # SmolLM2 is held to finishing only; an engine that did not run is not judged.
    smol = speed_targets(_result(0.1, 10.0, {"duckdb": {"finished": True}}))
    assert smol["capped duckdb finishes"]["met"] is True and smol["capped duckdb-int8 finishes"]["met"] is None
    assert "capped duckdb-int8/llama.cpp decode" not in smol


def test_a_batch_that_failed_at_one_length_keeps_the_other_lengths_run() -> None:
    from onnx2sql.bench.report import format_batch

    result = {"engines": {"duckdb": {"precision": "fp32", "batch": {
        "size": 8, "runs": [{"prompt_len": 16}], "decode_tokens_per_s_by_prompt_len": {"16": 2.5},
        "ttft_s": {"16": 3.0}, "speedup_over_batch_1": 9.0, "not_run": {"128": "MemoryError: out of memory"}}}},
        "batch_agreement": {}}
    assert format_batch(result) == ["batch of 8, duckdb: prompt 16: first tokens 3.000 s, decode 2.50 tokens/s; "
                                    "prompt 128: not run (MemoryError: out of memory); 9.00x one sequence's decode"]


def test_postgres_is_an_engine_of_the_same_run(tiny_llama3_dir: Path, postgres_url: str,
                                               tmp_path: Path) -> None:
    """`--engines postgres,onnxruntime --postgres-url URL`: PostgreSQL's figures beside
    onnxruntime's, its greedy tokens the same, alone and in a batch."""
    result = subprocess.run(
        [sys.executable, "-m", "onnx2sql", "bench", str(tiny_llama3_dir), "--engines", "postgres,onnxruntime",
         "--postgres-url", postgres_url, "--prompt-lens", "4", "--new-tokens", "3", "--repeats", "1",
         "--batch", "3", "--no-warmup", "--out", str(tmp_path), "--plot", str(tmp_path)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    figures = results["engines"]["postgres"]
    assert figures["available"] and figures["decode_tokens_per_s"] > 0 and figures["ttft_s"]["4"] > 0
    assert figures["precision"] == "fp32" and figures["statements_per_step"] > 0
    assert results["agreement"]["postgres vs onnxruntime"]["4"]["all_agree"]
    assert results["batch_agreement"]["postgres vs onnxruntime"]["4"] == {"sequences": 3, "agreeing": 3,
                                                                          "all_agree": True}
    assert results["ratios"]["postgres/onnxruntime"]["decode_tokens_per_s"] > 0
    assert "MISMATCH" not in result.stdout


@pytest.mark.sqlite
def test_sqlite_engines_are_engines_of_the_same_run(tiny_llama3_dir: Path, tmp_path: Path) -> None:
    """`--engines sqlite,sqlite-sql,onnxruntime`: SQLite's figures (with its kernels extension and in
    pure SQL) beside onnxruntime's, their greedy tokens the same, alone and in a batch."""
    result = subprocess.run(
        [sys.executable, "-m", "onnx2sql", "bench", str(tiny_llama3_dir), "--engines", "sqlite,sqlite-sql,onnxruntime",
         "--prompt-lens", "4", "--new-tokens", "3", "--repeats", "1", "--batch", "3", "--no-warmup",
         "--out", str(tmp_path), "--plot", str(tmp_path)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    for engine, kernels in (("sqlite", "native"), ("sqlite-sql", "sql")):
        figures = results["engines"][engine]
        assert figures["available"] and figures["decode_tokens_per_s"] > 0 and figures["ttft_s"]["4"] > 0
        assert figures["kernels"] == kernels and figures["statements_per_step"] > 0
        assert results["agreement"][f"{engine} vs onnxruntime"]["4"]["all_agree"]
        assert results["batch_agreement"][f"{engine} vs onnxruntime"]["4"] == {"sequences": 3, "agreeing": 3,
                                                                                "all_agree": True}
        assert results["ratios"][f"{engine}/onnxruntime"]["decode_tokens_per_s"] > 0
    assert "MISMATCH" not in result.stdout
