"""onnx2sql.backend, the onnx.backend.base adapter: prepare once, run many times, by position or name."""
from __future__ import annotations

import numpy as np
import onnx
import onnx.helper as oh
import pytest

import onnx2sql
from onnx2sql import backend


def _model(nodes: list, inputs: list, outputs: list[tuple[str, int]],
           initializers: dict | None = None) -> onnx.ModelProto:
    """A model whose outputs are float tensors of unnamed dims (the onnx checker wants a shape)."""
    out = [oh.make_tensor_value_info(o, onnx.TensorProto.FLOAT, [None] * rank) for o, rank in outputs]
    graph = oh.make_graph(nodes, "g", inputs, out,
                          initializer=[onnx.numpy_helper.from_array(v, k) for k, v in (initializers or {}).items()])
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18)])


@pytest.fixture(scope="module")
def two_outputs() -> onnx.ModelProto:
    """y = relu(x + w), z = y * 2, with a symbolic batch and w an initializer."""
    return _model([oh.make_node("Add", ["x", "w"], ["s"]), oh.make_node("Relu", ["s"], ["y"]),
                   oh.make_node("Mul", ["y", "two"], ["z"])],
                  [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 3])], [("z", 2), ("y", 2)],
                  {"w": np.array([1, -1, 0.5], np.float32), "two": np.array(2, np.float32)})


def test_a_prepared_model_runs_many_times(two_outputs: onnx.ModelProto) -> None:
    rep = backend.prepare(two_outputs)
    for n in (1, 4):
        x = np.arange(3 * n, dtype=np.float32).reshape(n, 3) - 4
        z, y = rep.run([x])
        np.testing.assert_allclose(y, np.maximum(x + [1, -1, 0.5], 0))
        np.testing.assert_allclose(z, 2 * y)
    assert list(rep.run({"x": x})._fields) == ["z", "y"]
    assert rep.run(x)["y"].shape == (4, 3)


def test_run_model_and_run_node() -> None:
    x = np.array([[1, -2], [3, -4]], dtype=np.float32)
    (y,) = backend.run_node(oh.make_node("LeakyRelu", ["x"], ["y"], alpha=0.5), [x])
    np.testing.assert_allclose(y, np.where(x < 0, 0.5 * x, x))
    model = _model([oh.make_node("Neg", ["x"], ["y"])],
                   [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 2])], [("y", 2)])
    np.testing.assert_allclose(backend.run_model(model, [x])[0], -x)


def test_shape_inputs_computed_from_data_compile_per_run() -> None:
    model = _model([oh.make_node("Pad", ["x", "pads"], ["y"])],
                   [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2]),
                    oh.make_tensor_value_info("pads", onnx.TensorProto.INT64, [2])], [("y", 1)])
    rep = backend.prepare(model)
    x = np.array([1, 2], np.float32)
    np.testing.assert_allclose(rep.run([x, np.array([1, 0])])[0], [0, 1, 2])
    np.testing.assert_allclose(rep.run([x, np.array([0, 2])])[0], [1, 2, 0, 0])


def test_devices_compatibility_and_errors(two_outputs: onnx.ModelProto) -> None:
    assert backend.supports_device("CPU") and not backend.supports_device("CUDA")
    assert backend.is_compatible(two_outputs)
    unsupported = _model([oh.make_node("Det", ["x"], ["y"])],
                         [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 2])], [("y", 0)])
    assert not backend.is_compatible(unsupported)
    with pytest.raises(onnx2sql.UnsupportedOpError, match="Det"):
        backend.prepare(unsupported)
    with pytest.raises(onnx2sql.InputError, match="expects 1"):
        backend.prepare(two_outputs).run([np.zeros((1, 3), np.float32)] * 2)
