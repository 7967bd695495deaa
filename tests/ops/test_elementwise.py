"""Elementwise ops against onnxruntime: broadcasting, dtypes, symbolic shapes, special values."""
from __future__ import annotations

import numpy as np
import pytest

from harness import assert_parity, node_model

rng = np.random.default_rng(7)


def f32(*shape: int) -> np.ndarray:
    return np.asarray(rng.standard_normal(shape), dtype=np.float32)


def i64(*shape: int) -> np.ndarray:
    return np.asarray(rng.integers(-20, 20, shape), dtype=np.int64)


def pos(*shape: int) -> np.ndarray:
    return np.asarray(np.abs(rng.standard_normal(shape)) + 0.1, dtype=np.float32)


SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 3e38, -3.4e38, 1e-30], dtype=np.float32)

BINARY = ["Add", "Sub", "Mul", "Div"]
SHAPES = [((5,), (5,)), ((2, 3, 9), (9,)), ((2, 3, 9), (3, 1)), ((1, 9), (4, 1)), ((), (2, 5)),
          ((2, 1, 6), (1, 3, 1)), ((0, 5), (5,)), ((3, 0), (1,))]


@pytest.mark.parametrize("op", BINARY)
@pytest.mark.parametrize("shapes", SHAPES, ids=str)
def test_float_binary_broadcasting(op: str, shapes: tuple) -> None:
    a, b = f32(*shapes[0]), f32(*shapes[1])
    assert_parity(node_model(op, {"a": a, "b": b}), {"a": a, "b": b})


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
def test_int64_binary(op: str) -> None:
    a, b = i64(3, 7), i64(7)
    b[b == 0] = 3
    assert_parity(node_model(op, {"a": a, "b": b}), {"a": a, "b": b})


@pytest.mark.parametrize("op", ["Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"])
@pytest.mark.parametrize("maker", [f32, i64])
def test_comparisons(op: str, maker) -> None:
    a, b = maker(4, 6), maker(6)
    a[0] = b  # some equal elements
    assert_parity(node_model(op, {"a": a, "b": b}), {"a": a, "b": b})


@pytest.mark.parametrize("op", ["And", "Or", "Xor"])
def test_logical(op: str) -> None:
    a, b = rng.random((3, 5)) > 0.5, rng.random((5,)) > 0.5
    assert_parity(node_model(op, {"a": a, "b": b}), {"a": a, "b": b})


UNARY = [("Neg", f32), ("Abs", f32), ("Sqrt", pos), ("Exp", f32), ("Log", pos), ("Cos", f32), ("Sin", f32),
         ("Tanh", f32), ("Reciprocal", pos), ("Sigmoid", f32), ("Relu", f32), ("Erf", f32), ("Floor", f32),
         ("Ceil", f32), ("Neg", i64), ("Abs", i64)]


@pytest.mark.parametrize("op,maker", UNARY, ids=lambda x: getattr(x, "__name__", x))
@pytest.mark.parametrize("shape", [(7,), (2, 3, 5), (), (0, 3)], ids=str)
def test_unary(op: str, maker, shape: tuple) -> None:
    a = maker(*shape)
    assert_parity(node_model(op, {"a": a}), {"a": a}, rtol=2e-6, atol=2e-7)


@pytest.mark.parametrize("op", ["Add", "Mul", "Div", "Sub"])
def test_special_values(op: str) -> None:
    a, b = SPECIAL, SPECIAL[::-1].copy()
    assert_parity(node_model(op, {"a": a, "b": b}), {"a": a, "b": b})


@pytest.mark.parametrize("op", ["Exp", "Sigmoid", "Tanh", "Relu", "IsNaN", "IsInf", "Sqrt", "Log", "Neg"])
def test_unary_special_values(op: str) -> None:
    a = SPECIAL.copy()
    assert_parity(node_model(op, {"a": a}), {"a": a})


def test_pow_float_and_int_exponent() -> None:
    a, e = pos(3, 4), np.array(2.0, dtype=np.float32)
    assert_parity(node_model("Pow", {"a": a}, constants={"e": e}), {"a": a})
    b = f32(4)
    assert_parity(node_model("Pow", {"a": a, "b": b}), {"a": a, "b": b}, rtol=2e-6)


def test_where_three_way_broadcast() -> None:
    c, a, b = rng.random((2, 1, 5)) > 0.5, f32(3, 1), np.array(-3.4e38, dtype=np.float32)
    assert_parity(node_model("Where", {"c": c, "a": a, "b": b}), {"c": c, "a": a, "b": b})


@pytest.mark.parametrize("op", ["Max", "Min", "Sum", "Mean"])
def test_variadic(op: str) -> None:
    a, b, c = f32(2, 5), f32(5), f32(2, 1)
    assert_parity(node_model(op, {"a": a, "b": b, "c": c}), {"a": a, "b": b, "c": c})


CASTS = [(np.float32, 7), (np.float32, 9), (np.int64, 1), (np.bool_, 1), (np.float32, 6), (np.int64, 9),
         (np.bool_, 7), (np.int32, 7)]


@pytest.mark.parametrize("dtype,to", CASTS, ids=str)
def test_cast(dtype, to: int) -> None:
    if dtype == np.bool_:
        a = rng.random((3, 5)) > 0.5
    else:
        a = (rng.standard_normal((3, 5)) * 5).astype(dtype)
    assert_parity(node_model("Cast", {"a": a}, to=to), {"a": a})


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(approximate: str) -> None:
    a = f32(3, 9) * 3
    model = node_model("Gelu", {"a": a}, opset=20, approximate=approximate)
    assert_parity(model, {"a": a}, rtol=1e-5, atol=1e-6)


def test_symbolic_shapes_run_any_length() -> None:
    """One compiled program serves several lengths: the inputs have named symbolic dims."""
    import onnx2sql

    a, b = f32(2, 3, 9), f32(9)
    model = node_model("Add", {"a": a, "b": b}, dynamic=["a"])
    for shape in [(2, 3, 9), (1, 7, 9), (3, 1, 9)]:
        x = f32(*shape)
        got = onnx2sql.run(model, {"a": x, "b": b}, chunk_size=4)
        np.testing.assert_allclose(got["y0"], x + b, rtol=1e-6)


def test_rmsnorm_chain_fuses_into_one_statement_with_parity() -> None:
    """RMSNorm as Optimum exports it: Pow -> ReduceMean -> Add -> Sqrt -> Div -> Mul -> Mul. The five
    elementwise ops after the reduction become one statement; x, read by Pow and by Mul, stays a
    table; the outputs equal onnxruntime's. A graph output in the chain (rms) stays a statement."""
    import onnx.helper as oh
    from harness import graph_model
    from onnx2sql.graph.visitor import lower_model

    x = np.random.default_rng(3).standard_normal((2, 5, 9)).astype(np.float32)
    consts = {"two": np.array(2.0, np.float32), "eps": np.array(1e-5, np.float32),
              "one": np.array(1.0, np.float32), "w": np.linspace(0.5, 1.5, 9).astype(np.float32)}
    nodes = [oh.make_node("Pow", ["x", "two"], ["sq"]),
             oh.make_node("ReduceMean", ["sq"], ["ms"], axes=[-1], keepdims=1),
             oh.make_node("Add", ["ms", "eps"], ["var"]),
             oh.make_node("Sqrt", ["var"], ["rms"]),
             oh.make_node("Div", ["one", "rms"], ["inv"]),
             oh.make_node("Mul", ["x", "inv"], ["normed"]),
             oh.make_node("Mul", ["normed", "w"], ["y"])]
    model = graph_model(nodes, {"x": x}, ["y"], opset=17, constants=consts)
    assert_parity(model, {"x": x}, rtol=1e-5, atol=1e-6)
    ops = computed_ops(lower_model(model, chunk=4).statements)
    assert ops == ["Pow", "ReduceMean", "Mul"], ops

    shared = graph_model(nodes, {"x": x}, ["y", "rms"], opset=17, constants=consts)
    assert_parity(shared, {"x": x}, rtol=1e-5, atol=1e-6)
    ops = computed_ops(lower_model(shared, chunk=4).statements)
    assert ops == ["Pow", "ReduceMean", "Sqrt", "Mul"], ops


def computed_ops(statements: list) -> list[str]:
    """The op of each statement that reads a table: the weight w, written as VALUES rows, is not one."""
    return [s.comment.split("<- ")[1].split(" ")[0] for s in statements if s.reads]


@pytest.mark.parametrize("scalar", [np.array(2.5, np.float32), np.array([[np.inf]], np.float32),
                                    np.array([np.nan], np.float32), np.array([-3], np.int64)], ids=str)
def test_known_scalars_are_literals_in_the_expression(scalar: np.ndarray) -> None:
    """A known scalar (a rank the other input's covers) is a literal inside the one statement, not a
    constant of its own joined to every row; the values equal onnxruntime's, infinities and NaN included."""
    from onnx2sql.graph.visitor import lower_model

    x = f32(2, 3, 5) if scalar.dtype == np.float32 else i64(2, 3, 5)
    model = node_model("Mul", {"x": x}, constants={"s": scalar})
    assert_parity(model, {"x": x})
    program = lower_model(model, chunk=4)
    assert [s.reads for s in program.statements] == [(f'"{program.inputs[0].table}"',)]


def test_a_scalar_that_adds_axes_stays_a_table() -> None:
    """x [3] times a known [1, 1] is [1, 3]: the scalar gives the leading axis, so it is read as a
    (VALUES) constant, and the result equals onnxruntime's."""
    from onnx2sql.graph.visitor import lower_model

    x = f32(3)
    model = node_model("Add", {"x": x}, constants={"s": np.array([[1.5]], np.float32)})
    assert_parity(model, {"x": x})
    statements = lower_model(model, chunk=4).statements
    assert [bool(s.reads) for s in statements] == [False, True]
