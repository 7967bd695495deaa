"""MatMul and Gemm against onnxruntime.

Chunk size 4 (the harness default) with inner dims K = 3, 4, 9, 17 runs one partial chunk, one
full chunk and ragged multi-chunk dot products."""
from __future__ import annotations

import numpy as np
import pytest

from harness import assert_parity, node_model
from onnx2sql.ops import reduce

rng = np.random.default_rng(5)

TOL = dict(rtol=1e-5, atol=1e-5)


def f32(*shape: int) -> np.ndarray:
    return np.asarray(rng.standard_normal(shape), dtype=np.float32)


# ---------------------------------------------------------------- MatMul

# (A shape, B shape)
MATMUL_SHAPES = [
    pytest.param((3, 4), (4, 5), id="K4"),
    pytest.param((2, 3), (3, 5), id="K3"),
    pytest.param((3, 9), (9, 6), id="K9"),
    pytest.param((2, 17), (17, 3), id="K17"),
    pytest.param((1, 9), (9, 1), id="single-element"),
    pytest.param((9,), (9, 5), id="vector-matrix"),
    pytest.param((2, 3, 9), (9,), id="matrix-vector"),
    pytest.param((17,), (17,), id="vector-vector"),
    pytest.param((9,), (2, 9, 5), id="vector-batched"),
    pytest.param((2, 3, 4, 9), (3, 9, 5), id="batch-rank4-rank3"),
    pytest.param((2, 3, 4, 9), (2, 3, 9, 6), id="batch-equal"),
    pytest.param((1, 4, 9), (2, 9, 6), id="batch-broadcast-a"),
    pytest.param((2, 1, 4, 9), (1, 3, 9, 6), id="batch-broadcast-both"),
    pytest.param((2, 3, 5, 17), (17, 6), id="batch-shared-b"),
    pytest.param((0, 4), (4, 5), id="empty-rows"),
    pytest.param((3, 4), (4, 0), id="empty-columns"),
    pytest.param((3, 0), (0, 5), id="empty-inner"),
    pytest.param((2, 0, 9), (9, 5), id="empty-batch-rows"),
    # A known B of >= 128 rows is read by two UNION ALL branches over ranges of its rows.
    pytest.param((2, 3, 17), (17, 131), id="b-rows-split-unevenly"),
    pytest.param((4, 9), (9, 128), id="b-rows-split-evenly"),
]


@pytest.mark.parametrize("a_shape,b_shape", MATMUL_SHAPES)
@pytest.mark.parametrize("b_known", [False, True], ids=["b-input", "b-initializer"])
def test_matmul(a_shape: tuple, b_shape: tuple, b_known: bool) -> None:
    a, b = f32(*a_shape), f32(*b_shape)
    if b_known:
        assert_parity(node_model("MatMul", {"a": a}, constants={"b": b}), {"a": a}, **TOL)
    else:
        assert_parity(node_model("MatMul", {"a": a, "b": b}), {"a": a, "b": b}, **TOL)


# Symbolic dims cannot broadcast (a symbol is never known to be 1), nor can an empty inner axis be filled.
DYNAMIC_SHAPES = [p for p in MATMUL_SHAPES if 1 not in p.values[0][:-2] + p.values[1][:-2] and p.values[0][-1] != 0]


@pytest.mark.parametrize("a_shape,b_shape", DYNAMIC_SHAPES)
def test_matmul_dynamic(a_shape: tuple, b_shape: tuple) -> None:
    a, b = f32(*a_shape), f32(*b_shape)
    assert_parity(node_model("MatMul", {"a": a, "b": b}, dynamic=["a", "b"]), {"a": a, "b": b}, **TOL)


@pytest.mark.parametrize("a_shape,b_shape", [((3, 9), (9, 5)), ((2, 17), (17,)), ((2, 2, 4), (2, 4, 3))], ids=str)
def test_matmul_int64(a_shape: tuple, b_shape: tuple) -> None:
    a = np.asarray(rng.integers(-100, 100, a_shape), dtype=np.int64)
    b = np.asarray(rng.integers(-100, 100, b_shape), dtype=np.int64)
    assert_parity(node_model("MatMul", {"a": a, "b": b}), {"a": a, "b": b})


@pytest.mark.parametrize("fold", [True, False], ids=["folded", "weight-tables"])
@pytest.mark.parametrize("op,shapes,attrs", [
    ("MatMul", [(2, 3, 9), (9, 4)], {}),
    ("Gemm", [(9, 3), (4, 9), (4,)], {"transA": 1, "transB": 1, "alpha": 0.5}),
], ids=["MatMul", "Gemm"])
def test_known_operands(monkeypatch: pytest.MonkeyPatch, fold: bool, op: str, shapes: list, attrs: dict) -> None:
    """Known operands fold with numpy, or (with folding off) become (transposed) weight tables."""
    if not fold:
        monkeypatch.setattr(reduce, "FOLD_LIMIT", 0)
    constants = {name: f32(*shape) for name, shape in zip("abc", shapes)}
    assert_parity(node_model(op, {}, constants=constants, **attrs), {}, **TOL)


def test_matmul_known_a_runtime_b() -> None:
    a, b = f32(3, 9), f32(2, 9, 4)
    assert_parity(node_model("MatMul", {"b": b}, constants={"a": a}, order=["a", "b"]), {"b": b}, **TOL)


def test_matmul_large_values() -> None:
    a, b = f32(2, 17) * 1e3, f32(17, 5) * 1e3
    assert_parity(node_model("MatMul", {"a": a, "b": b}), {"a": a, "b": b}, rtol=1e-5, atol=1e-1)


# ---------------------------------------------------------------- Gemm

# (A shape, B shape, C shape or None, attributes)
GEMM_CASES = [
    pytest.param((3, 9), (9, 5), None, {}, id="plain"),
    pytest.param((9, 3), (9, 5), None, {"transA": 1}, id="transA"),
    pytest.param((3, 17), (5, 17), None, {"transB": 1}, id="transB"),
    pytest.param((4, 3), (5, 4), None, {"transA": 1, "transB": 1}, id="transA-transB"),
    pytest.param((3, 9), (9, 5), None, {"alpha": 0.5}, id="alpha"),
    pytest.param((3, 9), (9, 5), (5,), {}, id="bias-row"),
    pytest.param((3, 9), (9, 5), (3, 1), {"beta": 2.0}, id="bias-column-beta"),
    pytest.param((3, 9), (5, 9), (3, 5), {"alpha": 2.0, "beta": 0.5, "transB": 1}, id="bias-full"),
    pytest.param((3, 9), (9, 5), (), {"alpha": -1.0}, id="bias-scalar"),
    pytest.param((3, 9), (9, 5), (1, 5), {"beta": 0.0}, id="beta-zero"),
    pytest.param((3, 0), (0, 5), (5,), {}, id="empty-inner"),
]


@pytest.mark.parametrize("a_shape,b_shape,c_shape,attrs", GEMM_CASES)
@pytest.mark.parametrize("known", [(), ("b",), ("b", "c")], ids=["inputs", "b-initializer", "b-c-initializers"])
def test_gemm(a_shape: tuple, b_shape: tuple, c_shape: tuple | None, attrs: dict, known: tuple) -> None:
    operands = {"a": f32(*a_shape), "b": f32(*b_shape)} | ({"c": f32(*c_shape)} if c_shape is not None else {})
    inputs = {n: v for n, v in operands.items() if n not in known}
    constants = {n: v for n, v in operands.items() if n in known}
    model = node_model("Gemm", inputs, constants=constants, order=list(operands), **attrs)
    assert_parity(model, inputs, **TOL)


@pytest.mark.parametrize("a_shape,b_shape,c_shape,attrs", GEMM_CASES[:9])
def test_gemm_dynamic_a(a_shape: tuple, b_shape: tuple, c_shape: tuple | None, attrs: dict) -> None:
    a, b = f32(*a_shape), f32(*b_shape)
    constants = {"b": b} | ({"c": f32(*c_shape)} if c_shape is not None else {})
    model = node_model("Gemm", {"a": a}, constants=constants, dynamic=["a"], **attrs)
    assert_parity(model, {"a": a}, **TOL)


def test_graph_output_rows_from_variable() -> None:
    """With the output-rows variable set, a product with a known B that is a graph output holds only
    the rows of A's last leading index from that value on; unset, it holds every row."""
    from onnx2sql.emit.program import OUTPUT_ROWS_FROM
    from onnx2sql.graph.visitor import lower_model
    from onnx2sql.runtime.session import Session, connect
    from onnx2sql.storage.arrays import read_table
    from onnx2sql.storage.tables import write_weight

    a, b = f32(2, 5, 9), f32(9, 7)
    program = lower_model(node_model("MatMul", {"a": a}, constants={"b": b}), chunk=4)
    con = connect()
    for weight in program.weights:
        write_weight(con, weight)
    session = Session(con, program)
    out = program.outputs[0].runtime()

    session.bind({"a": a})
    session.load_inputs({"a": a})
    session.execute()
    np.testing.assert_allclose(read_table(con, out.table, 3, (2, 5, 7), np.dtype(np.float32)), a @ b, **TOL)

    con.execute(f"SET VARIABLE {OUTPUT_ROWS_FROM} = 3")
    session.execute()
    kept = read_table(con, out.table, 3, (2, 2, 7), np.dtype(np.float32), where="TRUE")
    np.testing.assert_allclose(kept, (a @ b)[:, 3:], **TOL)
    con.close()


@pytest.mark.parametrize("k_used_elsewhere", [False, True], ids=["only-matmul", "also-output"])
def test_transpose_feeding_matmul_is_read_untransposed(k_used_elsewhere: bool) -> None:
    """Attention's Q @ K^T: B is a Transpose of the last two axes, which MatMul would swap back.
    The product reads K itself; the Transpose statement is gone unless something else reads it."""
    import onnx.helper as oh
    from harness import graph_model
    from onnx2sql.graph.visitor import lower_model

    q, k = f32(2, 3, 5, 9), f32(2, 3, 7, 9)
    nodes = [oh.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
             oh.make_node("MatMul", ["q", "kt"], ["y"])]
    outputs = ["y", "kt"] if k_used_elsewhere else ["y"]
    model = graph_model(nodes, {"q": q, "k": k}, outputs)
    assert_parity(model, {"q": q, "k": k}, **TOL)
    comments = [s.comment for s in lower_model(model, chunk=4).statements]
    assert sum("Transpose" in c for c in comments) == int(k_used_elsewhere), comments


@pytest.mark.parametrize("op,scalar_first", [("Mul", False), ("Mul", True), ("Div", False)],
                         ids=["k-times-s", "s-times-k", "k-over-s"])
def test_scaled_transpose_feeding_matmul_is_read_untransposed(op: str, scalar_first: bool) -> None:
    """Optimum's attention scales K^T before Q @ K^T: Mul(Transpose(K), s). The scale is applied to
    K itself and the product reads that, so no statement swaps K's last two axes."""
    import onnx.helper as oh
    from harness import graph_model
    from onnx2sql.graph.visitor import lower_model

    q, k = f32(1, 3, 2, 9), f32(1, 3, 7, 9)
    scale = np.array(0.35, dtype=np.float32)
    operands = ["s", "kt"] if scalar_first else ["kt", "s"]
    nodes = [oh.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
             oh.make_node(op, operands, ["kts"]),
             oh.make_node("MatMul", ["q", "kts"], ["y"])]
    model = graph_model(nodes, {"q": q, "k": k}, ["y"], constants={"s": scale})
    assert_parity(model, {"q": q, "k": k}, **TOL)
    comments = [s.comment for s in lower_model(model, chunk=4).statements]
    assert not any("Transpose" in c for c in comments), comments
    assert sum(f"<- {op} " in c for c in comments) == 1, comments
