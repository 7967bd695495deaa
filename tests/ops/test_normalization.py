"""LayerNormalization and Trilu against onnxruntime (chunk size 4: last axes of 3, 4, 9 and 17)."""
from __future__ import annotations

import numpy as np
import pytest

import onnx2sql
from harness import assert_parity, node_model
from onnx2sql.ops import reduce

rng = np.random.default_rng(3)


def f32(*shape: int) -> np.ndarray:
    return np.asarray(rng.standard_normal(shape), dtype=np.float32)


# ---------------------------------------------------------------- LayerNormalization

# (X shape, axis, with bias, epsilon)
LAYER_NORM_CASES = [
    pytest.param((2, 3, 9), -1, True, 1e-5, id="last"),
    pytest.param((2, 3, 17), 2, False, 1e-5, id="last-positive-no-bias"),
    pytest.param((2, 3, 4), -2, True, 1e-5, id="last-two"),
    pytest.param((2, 3, 9), 1, True, 1e-3, id="middle-epsilon"),
    pytest.param((3, 9), 0, True, 1e-5, id="all-axes"),
    pytest.param((17,), -1, True, 1e-5, id="vector"),
    pytest.param((4, 3), -1, False, 1e-5, id="one-chunk"),
    pytest.param((0, 9), -1, True, 1e-5, id="empty-rows"),
]


@pytest.mark.parametrize("shape,axis,bias,epsilon", LAYER_NORM_CASES)
@pytest.mark.parametrize("mode", ["inputs", "weights-initializers", "dynamic"])
def test_layer_norm(shape: tuple, axis: int, bias: bool, epsilon: float, mode: str) -> None:
    x = f32(*shape) * 3 + 1
    weights = {"scale": f32(*shape[axis:])} | ({"bias": f32(*shape[axis:])} if bias else {})
    attrs = dict(axis=axis, epsilon=epsilon)
    if mode == "weights-initializers":
        model = node_model("LayerNormalization", {"x": x}, constants=weights, **attrs)
        feeds = {"x": x}
    else:
        feeds = {"x": x} | weights
        model = node_model("LayerNormalization", feeds, dynamic=["x"] if mode == "dynamic" else (), **attrs)
    assert_parity(model, feeds, rtol=1e-5, atol=1e-5)


def test_layer_norm_broadcast_scale() -> None:
    # Scale and B only need to broadcast to the normalized axes.
    x = f32(2, 3, 9)
    model = node_model("LayerNormalization", {"x": x}, constants={"scale": f32(1, 9), "bias": f32(9)}, axis=1)
    assert_parity(model, {"x": x}, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fold", [True, False], ids=["folded", "weight-table"])
@pytest.mark.parametrize("op,constants,attrs", [
    ("LayerNormalization", {"x": f32(3, 9), "scale": f32(9), "bias": f32(9)}, {}),
    ("Trilu", {"x": f32(3, 9), "k": np.array(1, dtype=np.int64)}, {"upper": 0}),
], ids=["LayerNormalization", "Trilu"])
def test_known_input(monkeypatch: pytest.MonkeyPatch, fold: bool, op: str, constants: dict, attrs: dict) -> None:
    """A known input folds with numpy, or (with folding off) runs in SQL over a weight table."""
    if not fold:
        monkeypatch.setattr(reduce, "FOLD_LIMIT", 0)
    assert_parity(node_model(op, {}, constants=constants, **attrs), {}, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,axis", [((2, 9), -1), ((2, 3, 9), 1), ((4, 5), 0)], ids=str)
def test_layer_norm_statistics_outputs(shape: tuple, axis: int) -> None:
    """The optional Mean and InvStdDev outputs, with the normalized axes kept as size 1."""
    x = f32(*shape) * 3 + 1
    scale = f32(*shape[axis:])
    model = node_model("LayerNormalization", {"x": x}, n_outputs=3, constants={"scale": scale}, axis=axis)
    assert_parity(model, {"x": x}, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- Trilu

# (X shape, upper, k or None for the default 0, dtype)
TRILU_CASES = [
    pytest.param((5, 7), 1, None, np.float32, id="upper"),
    pytest.param((5, 7), 0, None, np.float32, id="lower"),
    pytest.param((9, 9), 1, 2, np.float32, id="upper-k2"),
    pytest.param((9, 9), 0, -3, np.float32, id="lower-k-3"),
    pytest.param((4, 17), 1, -2, np.float32, id="upper-k-2-wide"),
    pytest.param((17, 4), 0, 5, np.float32, id="lower-k5-tall"),
    pytest.param((3, 5), 1, 9, np.float32, id="upper-k-beyond"),
    pytest.param((3, 5), 0, -9, np.float32, id="lower-k-beyond"),
    pytest.param((2, 3, 6, 6), 0, 0, np.float32, id="batched-lower"),
    pytest.param((2, 6, 9), 1, 1, np.int64, id="int64-upper"),
    pytest.param((0, 4), 1, None, np.float32, id="empty"),
]


@pytest.mark.parametrize("shape,upper,k,dtype", TRILU_CASES)
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_trilu(shape: tuple, upper: int, k: int | None, dtype: type, dynamic: bool) -> None:
    x = np.asarray(rng.integers(1, 50, shape), dtype=dtype)
    constants = {"k": np.array(k, dtype=np.int64)} if k is not None else {}
    model = node_model("Trilu", {"x": x}, constants=constants, dynamic=["x"] if dynamic else (), upper=upper)
    assert_parity(model, {"x": x})


def test_trilu_rejects_vectors() -> None:
    x = f32(5)
    with pytest.raises(onnx2sql.errors.UnsupportedOpError, match="rank >= 2"):
        onnx2sql.run(node_model("Trilu", {"x": x}), {"x": x})
