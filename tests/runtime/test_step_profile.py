"""Generation's repeated program on tiny-llama3: regions read through table macros made once, the
same logits as the program's own statements; and a decode step profiled statement by statement."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onnx2sql.runtime.generate import Generator
from onnx2sql.runtime.session import RepeatingSession, Session
from onnx2sql.runtime.step_profile import planning_seconds, profile_decode_step, statement_kind
from ort_loop import ort_greedy

PROMPT = [315, 40, 41, 42, 7]


@pytest.fixture(scope="module")
def generator(tiny_llama3_dir: Path, tmp_path_factory):
    db = tmp_path_factory.mktemp("profile") / "tiny.duckdb"
    with Generator(tiny_llama3_dir, db=db, progress=False) as gen:
        yield gen


def region_macros(gen: Generator) -> list[str]:
    return [r[0] for r in gen.con.execute(
        "SELECT function_name FROM duckdb_functions() WHERE function_name LIKE 'onnx2sql_region_%'").fetchall()]


def test_regions_run_through_macros_made_once_with_the_statements_own_logits(generator) -> None:
    """Each region's query becomes a macro the first time it runs (one per region, however many
    steps and generations); the logits of every step equal those of the regions' own statements."""
    assert isinstance(generator.session, RepeatingSession)
    through_macros: list[np.ndarray] = []
    first = generator.generate_ids(PROMPT, 4, on_logits=through_macros.append)
    generator.generate_ids(PROMPT[:2], 3)
    assert sorted(region_macros(generator)) == sorted(f"onnx2sql_region_{k}" for k in range(len(generator.program.regions)))
    repeating, generator.session = generator.session, Session(generator.con, generator.program)
    try:
        plain: list[np.ndarray] = []
        again = generator.generate_ids(PROMPT, 4, on_logits=plain.append)
    finally:
        generator.session = repeating
    assert again.token_ids == first.token_ids
    for got, want in zip(through_macros, plain):
        np.testing.assert_array_equal(got, want)


def test_a_profiled_decode_step_counts_every_statement_and_changes_nothing(generator, tiny_llama3_dir: Path) -> None:
    """The profile covers the decode step's statements, regions and cache appends counted apart;
    planning fits inside each kind's wall time; the tokens are onnxruntime's, and generation after
    it runs unprofiled."""
    profile = profile_decode_step(generator, PROMPT)
    program = generator.program
    appends = sum(1 for r in program.regions if program.statements[r.sink].appends)
    kinds = profile["by_kind"]
    assert kinds["cache append"]["statements"] == appends > 0
    assert kinds["region"]["statements"] == len(program.regions) - appends
    assert kinds["feed"]["statements"] == sum(1 for s in program.inputs if not s.name.startswith("past_key_values."))
    assert profile["statements"] == profile["statements_per_step"] == sum(k["statements"] for k in kinds.values())
    for name in ("region", "cache append"):
        assert 0 < kinds[name]["planning_s"] <= kinds[name]["wall_s"], kinds[name]
    assert profile["tokens"] == ort_greedy(tiny_llama3_dir, PROMPT, 2)[0]
    assert generator.con.profiler is None
    assert generator.generate_ids(PROMPT, 2).token_ids == profile["tokens"]


def test_statement_kinds_and_profile_sections() -> None:
    inputs = frozenset({"in0", 'a"b'})
    assert statement_kind('CREATE OR REPLACE TEMP TABLE "t1" AS SELECT 1', inputs) == "region"
    assert statement_kind('CREATE OR REPLACE TEMP TABLE "in0" AS SELECT 1', inputs) == "feed"
    assert statement_kind('create temp table "a""b" AS SELECT 1', inputs) == "feed"
    assert statement_kind('  insert into "in3" BY NAME SELECT 1', inputs) == "cache append"
    assert statement_kind("SET VARIABLE s0 = 1", inputs) is None and statement_kind("", inputs) is None
    assert planning_seconds({"planner": {"total_time": 0.5}, "optimizer": {"total_time": 0.25},
                             "physical_planner": {"total_time": 0.125}, "query": {"cpu_time": 9.0}}) == 0.875
