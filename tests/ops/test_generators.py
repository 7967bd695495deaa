"""Range and ConstantOfShape against onnxruntime: folded at compile time, built in SQL when the
size is symbolic or past the fold limit, int and float, empty results."""
from __future__ import annotations

import numpy as np
import onnx
import onnx.helper as oh
import pytest

from harness import OpCase, assert_parity, graph_model, sample, table


def scalar(x: object, dtype: type) -> np.ndarray:
    return np.array(x, dtype=dtype)


def range_case(label: str, start: object, limit: object, delta: object, dtype: type = np.int64) -> OpCase:
    constants = {"start": scalar(start, dtype), "limit": scalar(limit, dtype), "delta": scalar(delta, dtype)}
    return OpCase(label, "Range", {}, constants)


RANGE = table(
    range_case("int", 0, 10, 3),
    range_case("int-negative-delta", 10, 4, -2),
    range_case("int-empty", 5, 2, 1),
    range_case("int32", -3, 6, 1, np.int32),
    range_case("float", 0.5, 3.2, 0.7, np.float32),
    range_case("float-negative", 1.0, -2.5, -0.5, np.float32),
    range_case("float-empty", 1.0, 1.0, 0.5, np.float32),
)


def value_tensor(x: object, dtype: type) -> onnx.TensorProto:
    return onnx.numpy_helper.from_array(np.array([x], dtype=dtype), "value")


def constant_of_shape(label: str, shape: list[int], value: onnx.TensorProto | None = None,
                      opset: int = 18) -> OpCase:
    attrs = {"value": value} if value is not None else {}
    return OpCase(label, "ConstantOfShape", {}, {"shape": np.array(shape, dtype=np.int64)}, attrs, opset=opset)


CONSTANT_OF_SHAPE = table(
    constant_of_shape("default-float-zero", [2, 9]),
    constant_of_shape("float-vector", [3], value_tensor(1.5, np.float32)),
    constant_of_shape("int64", [2, 3, 5], value_tensor(7, np.int64)),
    constant_of_shape("bool", [4, 2], value_tensor(True, np.bool_)),
    constant_of_shape("scalar", [], value_tensor(-2.0, np.float32)),
    constant_of_shape("empty", [2, 0], value_tensor(3, np.int64)),
    constant_of_shape("opset20-float-min", [2, 5], value_tensor(np.finfo(np.float32).min, np.float32),
                      opset=20),
    constant_of_shape("opset21-int64", [3, 2], value_tensor(-4, np.int64), opset=21),
)


@pytest.mark.parametrize("case", RANGE)
def test_range(case: OpCase) -> None:
    case.check()


@pytest.mark.parametrize("case", CONSTANT_OF_SHAPE)
def test_constant_of_shape(case: OpCase) -> None:
    case.check()


@pytest.mark.parametrize("case", RANGE + CONSTANT_OF_SHAPE)
def test_generators_in_sql_past_the_fold_limit(monkeypatch: pytest.MonkeyPatch, case) -> None:
    from onnx2sql.ops import shape

    monkeypatch.setattr(shape, "FOLD_LIMIT", 0)
    case.check()


def _seq_len_nodes() -> list:
    """seq = x.shape[1] as a scalar, past = x.shape[0] as a scalar: symbolic dims of x."""
    return [
        oh.make_node("Shape", ["x"], ["shape"]),
        oh.make_node("Gather", ["shape", "one"], ["seq"], axis=0),
        oh.make_node("Gather", ["shape", "zero"], ["past"], axis=0),
    ]


SYMBOLIC = {"one": np.array(1, dtype=np.int64), "zero": np.array(0, dtype=np.int64)}


@pytest.mark.parametrize("shape", [(2, 5), (0, 3), (3, 1), (1, 0)], ids=str)
def test_range_with_symbolic_bounds(shape: tuple[int, int]) -> None:
    """positions past .. past + seq - 1 as a column, added to x: a symbolic-length Range in SQL."""
    nodes = _seq_len_nodes() + [
        oh.make_node("Add", ["past", "seq"], ["end"]),
        oh.make_node("Range", ["past", "end", "step"], ["positions"]),
        oh.make_node("Cast", ["positions"], ["pos_f"], to=onnx.TensorProto.FLOAT),
        oh.make_node("Add", ["x", "pos_f"], ["y"]),
    ]
    model = graph_model(nodes, {"x": sample((2, 5))}, ["y", "positions"],
                        constants={**SYMBOLIC, "step": np.array(1, dtype=np.int64)}, dynamic=["x"])
    assert_parity(model, {"x": sample(shape)})


@pytest.mark.parametrize("shape", [(2, 5), (3, 9), (0, 4)], ids=str)
def test_constant_of_shape_with_symbolic_shape(shape: tuple[int, int]) -> None:
    nodes = [
        oh.make_node("Shape", ["x"], ["shape"]),
        oh.make_node("ConstantOfShape", ["shape"], ["ones"], value=value_tensor(1.0, np.float32)),
        oh.make_node("Add", ["x", "ones"], ["y"]),
    ]
    model = graph_model(nodes, {"x": sample((2, 5))}, ["y", "ones"], dynamic=["x"])
    assert_parity(model, {"x": sample(shape)})
