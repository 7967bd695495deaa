"""The benchmark's results as a printed table, a JSON file and a PNG chart."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from onnx2sql.bench.memory import format_bytes

Figures = dict[str, Any]


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"


def _number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _range(f: Figures) -> str:
    s = f.get("decode_tokens_per_s_stats")
    return f"{s['min']:.2f}-{s['max']:.2f} (n={s['n']})" if s else "-"


def _growth(f: Figures) -> str:
    growth = f.get("decode_step_growth")
    return f"{growth['ratio']:.2f}x ({growth['from_prompt_len']}->{growth['to_prompt_len']})" if growth else "-"


def _step_profile(profile: dict[str, Any] | None) -> str:
    if not profile:
        return "-"
    return f"{profile['planning_s']:.2f} / {profile['operators_cpu_s']:.2f} / {profile['wall_s']:.2f} s"


def _rows(result: dict[str, Any]) -> list[tuple[str, Callable[[Figures], str], Callable[[Figures], str]]]:
    """(label, value of an engine, value of the ratio duckdb/onnxruntime) for each line of the table."""
    rows = [("setup (compile or load)", lambda f: f"{_seconds(f.get('setup_s'))} ({f.get('setup_kind', '-')})",
             lambda r: _ratio(r.get("setup_s")))]
    for n in result["settings"]["prompt_lens"]:
        rows.append((f"time to first token, prompt {n}", lambda f, n=str(n): _seconds(f.get("ttft_s", {}).get(n)),
                     lambda r, n=str(n): _ratio(r.get("ttft_s", {}).get(n))))
    rows += [
        ("decode tokens/s (median)", lambda f: _number(f.get("decode_tokens_per_s")),
         lambda r: _ratio(r.get("decode_tokens_per_s"))),
        ("decode tokens/s min-max", _range, lambda r: ""),
        ("decode step growth, longest/shortest prompt", _growth, lambda r: ""),
        ("SQL statements per decode step", lambda f: str(f.get("statements_per_step", "-")), lambda r: ""),
    ]
    if result["settings"].get("profile_step"):
        for n in result["settings"]["prompt_lens"]:
            rows.append((f"decode step after prompt {n}: planning / operators' CPU / wall",
                         lambda f, n=str(n): _step_profile(f.get("step_profile", {}).get(n)), lambda r: ""))
    rows += [
        ("kernels", lambda f: str(f.get("kernels", "-")), lambda r: ""),
        ("G multiply-adds/s in decode", lambda f: _number(f.get("g_multiply_adds_per_s")), lambda r: ""),
        ("fraction of memory bandwidth", lambda f: _percent(f.get("bandwidth_fraction")),
         lambda r: _ratio(r.get("bandwidth_fraction"))),
        ("peak resident memory", lambda f: format_bytes(f.get("peak_rss_bytes")),
         lambda r: _ratio(r.get("peak_rss_bytes"))),
        ("bytes on disk", lambda f: format_bytes(f.get("disk_bytes")), lambda r: _ratio(r.get("disk_bytes"))),
    ]
    return rows


def format_table(result: dict[str, Any]) -> str:
    engines = {n: f for n, f in result["engines"].items() if f.get("available")}
    ratio_name, ratio = next(iter(result["ratios"].items()), ("", {}))
    header = ["", *engines, *([ratio_name] if ratio_name else [])]
    lines = [header]
    for label, value, ratio_value in _rows(result):
        lines.append([label, *(value(f) for f in engines.values()), *([ratio_value(ratio)] if ratio_name else [])])
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    text = [_title(result)]
    text += ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in lines]
    text += [f"{name}: not run ({f['reason']})" for name, f in result["engines"].items() if not f.get("available")]
    text += format_agreement(result["agreement"], result["engines"])
    text += format_batch(result)
    if result.get("memory_capped"):
        text += format_capped(result["memory_capped"])
    text += format_targets(result.get("targets", {}))
    return "\n".join(text)


def format_targets(targets: dict[str, Any]) -> list[str]:
    verdict = {True: "met", False: "MISSED", None: "not measured"}
    lines = []
    for name, t in targets.items():
        value = t["value"]
        shown = _number(value, 3) if isinstance(value, (int, float)) else str(value)
        lines.append(f"target {name} ({t['want']}): {shown}: {verdict[t['met']]}")
    return lines


def _title(result: dict[str, Any]) -> str:
    m, s = result["machine"], result["settings"]
    return (f"{result['model_dir']}: {s['new_tokens']} new tokens, {s['repeats']} repeat(s), greedy; "
            f"{m['cores']} cores, {format_bytes(m['memory_bytes'])} memory, copy bandwidth "
            f"{result['bandwidth']['limit_bytes_per_s'] / 1e9:.1f} GB/s, "
            f"{format_bytes(result['weights']['per_token_bytes'])} of weights read per token")


def format_agreement(agreement: dict[str, Any], engines: dict[str, Any]) -> list[str]:
    """Engines of onnxruntime's precision must agree with it; an int8 engine's agreement is reported."""
    lines = []
    for pair, by_len in agreement.items():
        parts = [f"prompt {n}: {c['matching_prefix']}/{c['compared']} tokens" for n, c in by_len.items()]
        precision = engines.get(pair.split(" vs ")[0], {}).get("precision", "fp32")
        if all(c["all_agree"] for c in by_len.values()):
            lines.append(f"greedy tokens, {pair}: agree ({'; '.join(parts)})")
        elif precision != "fp32":
            lines.append(f"greedy tokens, {pair} ({precision} weights against fp32): {'; '.join(parts)} agree")
        else:
            lines.append(f"!!! MISMATCH: greedy tokens, {pair}, differ ({'; '.join(parts)} agree) !!!")
    return lines


def format_batch(result: dict[str, Any]) -> list[str]:
    """Each engine's batch: first tokens and aggregate decode per prompt length, and its speed-up over
    one sequence; then whether the sequences' tokens agree with onnxruntime's batch."""
    lines = []
    for name, f in result["engines"].items():
        batch = f.get("batch")
        if not batch:
            continue
        parts = [f"prompt {n}: first tokens {_seconds(batch['ttft_s'][n])}, decode {_number(v)} tokens/s"
                 for n, v in batch.get("decode_tokens_per_s_by_prompt_len", {}).items()]
        parts += [f"prompt {n}: not run ({reason})" for n, reason in batch.get("not_run", {}).items()]
        speedup = batch.get("speedup_over_batch_1")
        lines.append(f"batch of {batch['size']}, {name}: {'; '.join(parts)}"
                     + (f"; {_number(speedup)}x one sequence's decode" if speedup is not None else ""))
    for pair, by_len in result.get("batch_agreement", {}).items():
        parts = [f"prompt {n}: {c['agreeing']}/{c['sequences']} sequences" for n, c in by_len.items()]
        agree = all(c["all_agree"] for c in by_len.values())
        precision = result["engines"].get(pair.split(" vs ")[0], {}).get("precision", "fp32")
        verdict = "agree" if agree else "differ" if precision != "fp32" else "!!! MISMATCH: DIFFER"
        lines.append(f"batch greedy tokens, {pair}: {verdict} ({'; '.join(parts)})")
    return lines


def mismatches(result: dict[str, Any]) -> list[str]:
    """DuckDB and onnxruntime run the same file: any difference in their greedy tokens is an error."""
    pair = result["agreement"].get("duckdb vs onnxruntime", {})
    batch = result.get("batch_agreement", {}).get("duckdb vs onnxruntime", {})
    return [n for n, c in pair.items() if not c["all_agree"]] + [f"batch, prompt {n}" for n, c in batch.items()
                                                                 if not c["all_agree"]]


def format_capped(capped: dict[str, Any]) -> list[str]:
    lines = [f"memory cap {format_bytes(capped['cap_bytes'])} (weights {format_bytes(capped['weight_bytes'])}; "
             f"duckdb memory_limit {capped.get('duckdb_memory_limit')}), prompt {capped['prompt_len']}:"]
    if not capped["enforced"]:
        return lines + [f"  the cap cannot be enforced here: {capped['reason']}"]
    for name, f in capped["engines"].items():
        if f["finished"]:
            agreement = f.get("agreement")
            tokens = (f", {agreement['matching_prefix']}/{agreement['compared']} tokens as onnxruntime's"
                      if agreement else "")
            lines.append(f"  {name} ({f.get('precision', 'fp32')}): finished, time to first token "
                         f"{_seconds(f['ttft_s'])}, decode {_number(f['decode_tokens_per_s'])} tokens/s, peak "
                         f"resident {format_bytes(f.get('peak_rss_bytes'))}, "
                         f"cgroup peak {format_bytes(f.get('cgroup_peak_bytes'))}{tokens}")
        else:
            lines.append(f"  {name}: did not finish: {f.get('reason')}")
    lines += [f"  decode {pair} under the cap: {_number(ratio)}x" for pair, ratio in capped.get("decode_ratios", {}).items()]
    return lines


def plot(result: dict[str, Any], path: Path) -> None:
    """Decode tokens/s (median, min-max bars) and time to first token per prompt length, log scale:
    the engines differ by orders of magnitude."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    engines = {n: f for n, f in result["engines"].items() if f.get("available")}
    names = list(engines)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    _decode_bars(left, names, engines)
    _ttft_bars(right, names, engines, [str(n) for n in result["settings"]["prompt_lens"]])
    fig.suptitle(f"{result['model_dir']} - {result['machine']['cores']} cores, "
                 f"{result['settings']['new_tokens']} new tokens, {result['settings']['repeats']} repeat(s)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _decode_bars(ax: Any, names: list[str], engines: dict[str, Figures]) -> None:
    medians = [engines[n].get("decode_tokens_per_s") or 0 for n in names]
    low = [m - (engines[n].get("decode_tokens_per_s_stats") or {}).get("min", m) for n, m in zip(names, medians)]
    high = [(engines[n].get("decode_tokens_per_s_stats") or {}).get("max", m) - m for n, m in zip(names, medians)]
    ax.bar(names, medians, yerr=[low, high], capsize=4, color=[f"C{i}" for i in range(len(names))])
    for x, m in enumerate(medians):
        ax.annotate(f"{m:.2f}", (x + 0.08, m), ha="left", va="bottom", fontsize=8)  # beside the error bar
    _log_if_positive(ax, medians)
    ax.set_ylabel("decode tokens/s (median; bars: min-max)")
    ax.set_title("decode speed (higher is better)")


def _ttft_bars(ax: Any, names: list[str], engines: dict[str, Figures], lengths: list[str]) -> None:
    width = 0.8 / max(len(names), 1)
    values: list[float] = []
    for i, name in enumerate(names):
        ttft = [engines[name].get("ttft_s", {}).get(n) or 0 for n in lengths]
        values += ttft
        ax.bar([k + i * width for k in range(len(lengths))], ttft, width, label=name, color=f"C{i}")
    ax.set_xticks([k + width * (len(names) - 1) / 2 for k in range(len(lengths))], [f"prompt {n}" for n in lengths])
    _log_if_positive(ax, values)
    ax.set_ylabel("time to first token, s (median)")
    ax.set_title("time to first token (lower is better)")
    ax.legend()


def _log_if_positive(ax: Any, values: list[float]) -> None:
    if values and min(values) > 0:
        ax.set_yscale("log")
