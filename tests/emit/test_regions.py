"""Regions: which lowered statements run together as one SQL statement, and that grouping them
changes no result."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import onnx2sql
from onnx2sql.emit.regions import Statement, build_regions, region_query, region_reads
from onnx2sql.graph.load import load_model
from onnx2sql.graph.visitor import lower_model
from onnx2sql.runtime.kernel_mode import resolve_kernels
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


def cheap(table: str, *reads: str) -> Statement:
    return Statement(table, "SELECT 1", f"{table} <- op", tuple(f'"{r}"' for r in reads), recomputable=True)


def test_a_cheap_region_read_by_a_few_regions_is_copied_into_them() -> None:
    # n = norm(h) is read by the regions of k, v and o (each a graph output): computed in each.
    graph = [stmt("h", "in0"), cheap("p", "h"), cheap("n", "p", "h"),
             stmt("k", "n"), stmt("v", "n"), stmt("o", "n", "h")]
    assert members(graph, {"k", "v", "o"}) == [["h"], ["p", "n", "k"], ["p", "n", "v"], ["p", "n", "o"]]


def test_a_cheap_region_read_by_too_many_regions_is_stored() -> None:
    graph = [stmt("h", "in0"), cheap("n", "h")] + [stmt(f"o{k}", "n") for k in range(4)]
    assert members(graph, {f"o{k}" for k in range(4)}) == [["h", "n"], ["o0"], ["o1"], ["o2"], ["o3"]]


def test_a_region_holding_costly_work_is_never_copied() -> None:
    graph = [stmt("h", "in0"), stmt("m", "h"), cheap("n", "m"), stmt("k", "n"), stmt("v", "n")]
    assert members(graph, {"k", "v"}) == [["h", "m", "n"], ["k"], ["v"]]


def test_every_region_reads_only_what_earlier_regions_stored() -> None:
    graph = [stmt("a", "in0"), stmt("b", "a"), stmt("c", "b"), stmt("d", "a"), stmt("e", "d", "c"),
             cheap("f", "e"), cheap("g", "f", "a"), stmt("x", "g"), stmt("y", "g", "c")]
    regions = build_regions(graph, {"c", "e", "x", "y"}, 100)
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
    """Two layers: per layer the two K/V caches (graph outputs) and the residual stream (read by
    the next layer's three regions) are stored, plus the embedding, the mask and the rotary
    tables shared by every layer; the last residual is computed in the head's region. RMSNorm's
    output is computed again in each of its three reader regions, not stored."""
    program = lower_model(load_model(tiny_llama3_dir / "model.onnx"))
    assert len(program.statements) > 10 * len(program.regions)
    assert len(program.regions) == 5 + 3 * 2
    stored = [program.statements[r.sink].comment for r in program.regions]
    assert not any("layernorm" in c for c in stored)
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


# ---------------------------------------------------------------- a KV cache grown in place

def test_kv_cache_concat_appends_to_the_past_table(tiny_llama3_dir: Path) -> None:
    """Optimum's Concat(past_key_values.*, new) -> present.* becomes an append to the past table:
    present.* is that table, and no statement copies the past."""
    program = lower_model(load_model(tiny_llama3_dir / "model.onnx"))
    tables = {spec.name: spec.table for spec in program.inputs + program.outputs}
    presents = [name for name in tables if name.startswith("present.")]
    assert len(presents) == 4
    for present in presents:
        assert tables[present] == tables[present.replace("present.", "past_key_values.")]
    appended = sorted(s.table for s in program.statements if s.appends)
    assert appended == sorted(tables[p] for p in presents)
    sinks = [program.statements[r.sink] for r in program.regions]
    assert sorted(s.table for s in sinks if s.appends) == appended


def test_in_place_cache_and_generic_concat_give_identical_outputs(tiny_llama3_dir: Path) -> None:
    path = tiny_llama3_dir / "model.onnx"
    model = load_model(path)
    rng = np.random.default_rng(2)
    past = {name: rng.standard_normal((1, heads, 4, dim)).astype(np.float32) for name, heads, dim in past_specs(path)}
    feeds = decoder_feeds(path, np.array([[7, 11]]), past=past)
    kernels = resolve_kernels(None)  # the mode the suite runs in, for both programs
    generic = lower_model(model, append_in_place=False, kernels=kernels)
    assert not any(s.appends for s in generic.statements)
    want = _run_program(generic, feeds)
    got = onnx2sql.run(model, feeds, kernels=kernels)
    assert list(got) == list(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_a_past_read_twice_keeps_the_generic_concat() -> None:
    """When another node also reads the past, appending in place would change what it reads: the
    Concat copies instead, and the result matches onnxruntime."""
    import onnx.helper as oh
    from harness import assert_parity, graph_model

    past = np.arange(12, dtype=np.float32).reshape(1, 1, 3, 4)
    new = -np.arange(8, dtype=np.float32).reshape(1, 1, 2, 4)
    nodes = [oh.make_node("Concat", ["past", "new"], ["present"], axis=2),
             oh.make_node("ReduceSum", ["past"], ["total"], keepdims=0)]
    model = graph_model(nodes, {"past": past, "new": new}, ["present", "total"], dynamic=["past", "new"])
    assert not any(s.appends for s in lower_model(model).statements)
    assert_parity(model, {"past": past, "new": new})
    alone = graph_model(nodes[:1], {"past": past, "new": new}, ["present"], dynamic=["past", "new"])
    assert [s.appends for s in lower_model(alone).statements] == [True]
    assert_parity(alone, {"past": past, "new": new})


def _run_program(program, feeds):
    from onnx2sql.api import _store_weights
    from onnx2sql.runtime.session import Session, connect

    con = connect()
    try:
        _store_weights(con, program, progress=False)
        return Session(con, program).run(feeds)
    finally:
        con.close()
