"""Where a DuckDB decode step's time goes: DuckDB's own profiler on each statement of one step,
summed by kind. A statement's time splits into planning (binding, optimising, building the
physical plan: DuckDB does all three again on every execution, prepared or not) and its operators'
CPU time; the rest of its wall time is spent outside both (starting and ending the query,
scheduling its threads, committing the table it wrote).

Statements that write a table are profiled (a region's CREATE ... AS, a KV-cache append's INSERT,
a feed loaded into an input table); the token's choice and variable settings are timed without
the profiler, whose switching would replace the result a caller is about to fetch."""
from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import duckdb

from onnx2sql.emit.sql import quote_literal

# Statement kinds: a region's CREATE ... AS, a KV-cache append (INSERT), a feed loaded into an
# input table (CREATE ... AS from numpy), anything else (variables, the token's choice).
REGION, APPEND, FEED, OTHER = "region", "cache append", "feed", "other"
_CREATED = re.compile(r'CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMP\s+|TEMPORARY\s+)?TABLE\s+"((?:[^"]|"")*)"', re.I)


@dataclass
class KindTimes:
    """Sums over the statements of one kind."""

    statements: int = 0
    wall_s: float = 0.0
    planning_s: float = 0.0
    operators_cpu_s: float = 0.0

    def add(self, wall_s: float, planning_s: float, operators_cpu_s: float, statements: int = 1) -> None:
        self.statements += statements
        self.wall_s += wall_s
        self.planning_s += planning_s
        self.operators_cpu_s += operators_cpu_s

    def as_json(self) -> dict[str, Any]:
        return {"statements": self.statements, "wall_s": round(self.wall_s, 4),
                "planning_s": round(self.planning_s, 4), "operators_cpu_s": round(self.operators_cpu_s, 4)}


@dataclass
class StepProfile:
    """One decode step, statement by statement."""

    kinds: dict[str, KindTimes] = field(default_factory=dict)

    def times(self, kind: str) -> KindTimes:
        return self.kinds.setdefault(kind, KindTimes())

    def total(self) -> KindTimes:
        out = KindTimes()
        for k in self.kinds.values():
            out.add(k.wall_s, k.planning_s, k.operators_cpu_s, k.statements)
        return out

    def as_json(self) -> dict[str, Any]:
        return {**self.total().as_json(), "by_kind": {name: k.as_json() for name, k in sorted(self.kinds.items())}}


def statement_kind(sql: object, inputs: frozenset[str]) -> str | None:
    """The kind of a statement the profiler runs (None: timed only); `inputs` names the program's
    input tables."""
    if not isinstance(sql, str):
        return None
    head = sql.lstrip()[:6].upper()
    if head == "INSERT":
        return APPEND
    created = _CREATED.match(sql.lstrip())
    if created is None:
        return None
    return FEED if created.group(1).replace('""', '"') in inputs else REGION


def planning_seconds(profile: dict[str, Any]) -> float:
    """Binding, optimising and physical planning in a DuckDB JSON profile (a section each)."""
    sections = ("planner", "optimizer", "physical_planner")
    return sum(float(profile.get(key, {}).get("total_time") or 0.0) for key in sections)


def operators_cpu_seconds(profile: dict[str, Any]) -> float:
    return float(profile["query"].get("cpu_time") or 0.0)


class StatementProfiler:
    """Runs statements with DuckDB's JSON profiler while `on`, adding each one's times to `profile`."""

    def __init__(self, inputs: frozenset[str]) -> None:
        self.inputs = inputs
        self.on = False
        self.profile = StepProfile()
        self._dir = Path(tempfile.mkdtemp(prefix="onnx2sql-profile-"))
        self._count = 0

    def run(self, con: duckdb.DuckDBPyConnection, execute: Callable[[], Any], sql: object) -> Any:
        if not self.on:
            return execute()
        kind = statement_kind(sql, self.inputs)
        if kind is None:
            start = time.perf_counter()
            result = execute()
            self.profile.times(OTHER).add(time.perf_counter() - start, 0.0, 0.0)
            return result
        self._count += 1
        path = self._dir / f"{self._count}.json"
        con.execute("PRAGMA enable_profiling = 'json'")
        con.execute(f"SET profiling_output = {quote_literal(str(path))}")
        start = time.perf_counter()
        try:
            result = execute()
        finally:
            wall = time.perf_counter() - start
            con.execute("PRAGMA disable_profiling")
        data = json.loads(path.read_text())
        path.unlink()
        self.profile.times(kind).add(wall, planning_seconds(data), operators_cpu_seconds(data))
        return result

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


def profile_decode_step(generator: Any, prompt_ids: list[int]) -> dict[str, Any]:
    """Generate two tokens from `prompt_ids` and profile the decode step between them (the prompt's
    step is not profiled). DuckDB generators only."""
    con = generator.con
    if not hasattr(con, "profiler"):
        raise TypeError("a decode step is profiled on DuckDB only")
    profiler = StatementProfiler(frozenset(spec.table for spec in generator.program.inputs))
    steps = 0

    def switch(_results: object) -> None:
        nonlocal steps
        steps += 1
        profiler.on = steps == 1  # after the prompt's step: the next step is the first decode step

    con.profiler = profiler
    try:
        batch = generator.generate_batch_ids([prompt_ids], 2, on_step=switch)
    finally:
        con.profiler = None
        profiler.close()
    return {"past_tokens": len(prompt_ids), "statements_per_step": batch.statements_per_step,
            "tokens": batch.generations[0].token_ids, **profiler.profile.as_json()}
