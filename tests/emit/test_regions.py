"""Regions: which lowered statements run together as one SQL statement, and that grouping them
changes no result."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import onnx2sql
from onnx2sql.emit.regions import build_regions, region_query, region_reads
from onnx2sql.graph.load import load_model
from onnx2sql.graph.visitor import lower_model
from onnx2sql.ops.context import Statement
from decoder_feeds import feeds as decoder_feeds, past_specs


def stmt(table: str, *reads: str) -> Statement:
    return Statement(table, f"SELECT * FROM {table}_src", f"{table} <- op", tuple(f'"{r}"' for r in reads))


def members(statements: list[Statement], keep: set[str], size: int = 100) -> list[list[str]]:
    return [[statements[k].table for k in r.members] for r in build_regions(statements, keep, size)]


def test_a_chain_is_one_region_ending_at_the_kept_table() -> None:
    chain = [stmt("a", "in0"), stmt("b", "a"), stmt("c", "b")]
    assert members(chain, {"in0", "c"}) == [["a", "b", "c"]]


def test_a_diamond_read_within_one_region_is_not_stored() -> None:
    diamond = [stmt("a", "in0"), stmt("b", "a"), stmt("c", "a"), stmt("d", "b", "c")]
    assert members(diamond, {"d"}) == [["a", "b", "c", "d"]]


def test_a_table_read_by_two_regions_is_stored() -> None:
    # c is a graph output, so it is stored; a is read by c's region and by e's: stored too.
    graph = [stmt("a", "in0"), stmt("b", "a"), stmt("c", "b"), stmt("d", "a"), stmt("e", "d", "c")]
    assert members(graph, {"c", "e"}) == [["a"], ["b", "c"], ["d", "e"]]


def test_a_kept_table_inside_a_chain_ends_its_region() -> None:
    chain = [stmt("a", "in0"), stmt("b", "a"), stmt("c", "b")]
    assert members(chain, {"b", "c"}) == [["a", "b"], ["c"]]


def test_region_size_bounds_members() -> None:
    chain = [stmt(f"t{k}", f"t{k - 1}" if k else "in0") for k in range(7)]
    assert members(chain, {"t6"}, size=3) == [["t0"], ["t1", "t2", "t3"], ["t4", "t5", "t6"]]
    assert members(chain, {"t6"}, size=1) == [[f"t{k}"] for k in range(7)]
    with pytest.raises(ValueError, match="region size must be at least 1, got 0"):
        build_regions(chain, {"t6"}, 0)


def test_every_region_reads_only_what_earlier_regions_stored() -> None:
    graph = [stmt("a", "in0"), stmt("b", "a"), stmt("c", "b"), stmt("d", "a"), stmt("e", "d", "c")]
    regions = build_regions(graph, {"c", "e"}, 100)
    stored = {"in0"}
    for region in regions:
        assert region_reads(graph, region) <= stored
        stored.add(graph[region.sink].table)


def test_region_query_names_each_member_as_a_cte() -> None:
    graph = [stmt("a", "in0"), stmt("b", "a")]
    (region,) = build_regions(graph, {"b"}, 100)
    sql = region_query(graph, region, comments=True)
    assert sql.startswith('WITH\n-- a <- op\n"a" AS (\nSELECT * FROM a_src\n),')
    assert '"b" AS (' in sql and sql.endswith('SELECT * FROM "b"')


def test_tiny_llama3_program_runs_as_a_few_statements_per_layer(tiny_llama3_dir: Path) -> None:
    """Two layers: per layer the normed input, the two K/V caches and the residual stream are
    stored (each read by more than one region or a graph output), plus the embedding, the mask,
    the rotary tables shared by every layer and the head."""
    program = lower_model(load_model(tiny_llama3_dir / "model.onnx"))
    assert len(program.statements) > 10 * len(program.regions)
    assert len(program.regions) == 5 + 4 * 2
    sinks = {program.statements[r.sink].table for r in program.regions}
    outputs = {o.table for o in program.outputs}
    assert outputs <= sinks


@pytest.mark.parametrize("region_size", [1, 5])
def test_region_size_changes_no_output(tiny_llama3_dir: Path, region_size: int) -> None:
    """The same model run as one statement per op, as small regions, and as the default regions
    gives identical outputs (the same SQL, grouped differently)."""
    path = tiny_llama3_dir / "model.onnx"
    model = load_model(path)
    rng = np.random.default_rng(1)
    past = {name: rng.standard_normal((1, heads, 2, dim)).astype(np.float32)
            for name, heads, dim in past_specs(path)}
    feeds = decoder_feeds(path, np.array([[5, 17, 3]]), past=past)
    want = onnx2sql.run(model, feeds)
    got = onnx2sql.run(model, feeds, region_size=region_size)
    assert list(got) == list(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
