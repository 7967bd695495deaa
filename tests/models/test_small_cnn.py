"""A small LeNet-like convolutional network, built with onnx.helper (random weights, symbolic batch):
DuckDB equals onnxruntime within 1e-4 for batch 1 and 3, compiled once for every batch size."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper
import onnxruntime as ort
import pytest

import onnx2sql

CLASSES = 10
_rng = np.random.default_rng(7)


def _weight(*shape: int, scale: float = 0.3) -> np.ndarray:
    return (_rng.standard_normal(shape) * scale).astype(np.float32)


def _batch_norm(prefix: str, channels: int) -> tuple[list[str], dict[str, np.ndarray]]:
    params = {f"{prefix}_scale": 1 + _weight(channels, scale=0.1), f"{prefix}_bias": _weight(channels, scale=0.1),
              f"{prefix}_mean": _weight(channels, scale=0.1),
              f"{prefix}_var": np.abs(_weight(channels)) + np.float32(0.5)}
    return list(params), params


def lenet(head: str) -> onnx.ModelProto:
    """Conv -> BatchNormalization -> Relu -> MaxPool -> Conv -> Relu -> (AveragePool | Pad, Clip,
    GlobalAveragePool) -> Flatten -> Gemm -> Softmax on [batch, 1, 16, 16] images."""
    bn_names, weights = _batch_norm("bn1", 6)
    weights.update(w1=_weight(6, 1, 3, 3), b1=_weight(6), w2=_weight(8, 6, 3, 3), b2=_weight(8))
    nodes = [
        oh.make_node("Conv", ["image", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        oh.make_node("BatchNormalization", ["c1", *bn_names], ["n1"], epsilon=1e-5),
        oh.make_node("Relu", ["n1"], ["r1"]),
        oh.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),  # [b, 6, 8, 8]
        oh.make_node("Conv", ["p1", "w2", "b2"], ["c2"], kernel_shape=[3, 3]),  # [b, 8, 6, 6]
        oh.make_node("Relu", ["c2"], ["r2"]),
    ]
    if head == "average_pool":
        nodes.append(oh.make_node("AveragePool", ["r2"], ["pooled"], kernel_shape=[2, 2], strides=[2, 2]))
        features = 8 * 3 * 3
    else:
        weights["pads"] = np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64)
        weights["low"], weights["high"] = np.array(0, np.float32), np.array(6, np.float32)
        nodes += [oh.make_node("Pad", ["r2", "pads"], ["padded"], mode="reflect"),
                  oh.make_node("Clip", ["padded", "low", "high"], ["clipped"]),
                  oh.make_node("GlobalAveragePool", ["clipped"], ["pooled"])]
        features = 8
    weights.update(fc_w=_weight(CLASSES, features), fc_b=_weight(CLASSES))
    nodes += [
        oh.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        oh.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
        oh.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    graph = oh.make_graph(
        nodes, f"lenet_{head}",
        [oh.make_tensor_value_info("image", onnx.TensorProto.FLOAT, ["batch", 1, 16, 16])],
        [oh.make_tensor_value_info("probs", onnx.TensorProto.FLOAT, ["batch", CLASSES])],
        initializer=[onnx.numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="module", params=["average_pool", "global_average_pool"])
def compiled(request, tmp_path_factory) -> tuple[onnx.ModelProto, Path]:
    model = lenet(request.param)
    return model, onnx2sql.compile(model, tmp_path_factory.mktemp(request.param) / "sql", chunk_size=8)


@pytest.mark.parametrize("batch", [1, 3])
def test_small_cnn_equals_onnxruntime(compiled: tuple[onnx.ModelProto, Path], batch: int) -> None:
    model, folder = compiled
    images = _rng.standard_normal((batch, 1, 16, 16)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"image": images})[0]
    got = onnx2sql.run(folder, {"image": images})["probs"]
    assert got.shape == (batch, CLASSES)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
