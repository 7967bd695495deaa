"""Reductions, Softmax/LogSoftmax, ArgMax/ArgMin and TopK against onnxruntime.

Chunk size 4 (the harness default) with last axes of 3, 4, 9 and 17 runs the single-chunk,
exact-chunk and ragged multi-chunk paths."""
from __future__ import annotations

import numpy as np
import pytest

import onnx2sql
from harness import assert_parity, node_model, ort_run
from onnx2sql.ops import reduce

rng = np.random.default_rng(11)


def f32(*shape: int) -> np.ndarray:
    return np.asarray(rng.standard_normal(shape), dtype=np.float32)


def ties(*shape: int, dtype: type = np.float32) -> np.ndarray:
    """Values from a small range, so that rows hold equal elements."""
    return np.asarray(rng.integers(-2, 3, shape), dtype=dtype)


# ---------------------------------------------------------------- ReduceSum / Mean / Max / Min

REDUCE_OPS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin"]

# (shape, axes or None for "reduce all", keepdims, dynamic input)
REDUCE_CASES = [
    pytest.param((2, 3, 9), [-1], 1, False, id="last-keepdims"),
    pytest.param((2, 3, 17), [2], 0, False, id="last"),
    pytest.param((2, 3, 9), [1], 1, False, id="middle-keepdims"),
    pytest.param((2, 5, 4), [-2], 0, False, id="middle-negative"),
    pytest.param((2, 3, 9), [0], 0, False, id="first"),
    pytest.param((2, 3, 9), [0, 2], 1, False, id="first-and-last-keepdims"),
    pytest.param((2, 3, 9), [-3, -2], 0, False, id="leading-pair"),
    pytest.param((2, 3, 9), None, 0, False, id="all"),
    pytest.param((2, 3, 9), None, 1, False, id="all-keepdims"),
    pytest.param((17,), [0], 0, False, id="vector"),
    pytest.param((3,), [-1], 1, False, id="vector-keepdims"),
    pytest.param((2, 3, 9), [-1], 1, True, id="dynamic-last"),
    pytest.param((2, 3, 9), [1], 0, True, id="dynamic-middle"),
    pytest.param((3, 4), None, 0, True, id="dynamic-all"),
    pytest.param((0, 5), [1], 1, False, id="empty-kept-axis"),
    pytest.param((3, 0), [1], 0, False, id="empty-reduced-axis"),
]


def reduce_model(op: str, x: np.ndarray, axes: list[int] | None, keepdims: int, opset: int = 18,
                 dynamic: bool = False, **attrs: object):
    """Axes as an input where the op version takes one (ReduceSum from 13, the others from 18)."""
    axes_input = opset >= (13 if op == "ReduceSum" else 18)
    if axes is not None and not axes_input:
        attrs["axes"] = axes
    constants = {"axes": np.array(axes, dtype=np.int64)} if axes is not None and axes_input else {}
    return node_model(op, {"x": x}, opset=opset, constants=constants, dynamic=["x"] if dynamic else (),
                      keepdims=keepdims, **attrs)


@pytest.mark.parametrize("op", REDUCE_OPS)
@pytest.mark.parametrize("shape,axes,keepdims,dynamic", REDUCE_CASES)
def test_reduce(op: str, shape: tuple, axes: list[int] | None, keepdims: int, dynamic: bool) -> None:
    x = f32(*shape)
    assert_parity(reduce_model(op, x, axes, keepdims, dynamic=dynamic), {"x": x}, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("op", REDUCE_OPS)
@pytest.mark.parametrize("axes", [[1], [-1], None], ids=str)
def test_reduce_int64(op: str, axes: list[int] | None) -> None:
    x = np.asarray(rng.integers(-50, 50, (3, 9)), dtype=np.int64)
    assert_parity(reduce_model(op, x, axes, 0), {"x": x})


@pytest.mark.parametrize("op", REDUCE_OPS)
@pytest.mark.parametrize("opset", [13, 17])
def test_reduce_older_opsets(op: str, opset: int) -> None:
    x = f32(2, 3, 9)
    assert_parity(reduce_model(op, x, [-1, 0], 1, opset=opset), {"x": x}, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("op", REDUCE_OPS)
@pytest.mark.parametrize("noop", [0, 1])
def test_reduce_empty_axes(op: str, noop: int) -> None:
    x = f32(2, 9)
    model = node_model(op, {"x": x}, constants={"axes": np.zeros(0, dtype=np.int64)}, keepdims=1,
                       noop_with_empty_axes=noop)
    assert_parity(model, {"x": x}, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("fold", [True, False], ids=["folded", "weight-table"])
@pytest.mark.parametrize("op,attrs,n_outputs,extra", [
    ("ReduceMean", {}, 1, {"axes": np.array([1], dtype=np.int64)}),
    ("ReduceMax", {"keepdims": 0}, 1, {"axes": np.array([0], dtype=np.int64)}),
    ("Softmax", {"axis": 0}, 1, {}),
    ("LogSoftmax", {}, 1, {}),
    ("ArgMin", {"axis": 1}, 1, {}),
    ("TopK", {"axis": 0}, 2, {"k": np.array([2], dtype=np.int64)}),
], ids=lambda x: x if isinstance(x, str) else "")
def test_known_input(monkeypatch: pytest.MonkeyPatch, fold: bool, op: str, attrs: dict, n_outputs: int,
                     extra: dict) -> None:
    """A known input folds with numpy, or (with folding off) runs in SQL over a weight table."""
    if not fold:
        monkeypatch.setattr(reduce, "FOLD_LIMIT", 0)
    model = node_model(op, {}, n_outputs=n_outputs, constants={"x": f32(3, 9)} | extra, **attrs)
    assert_parity(model, {}, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- Softmax / LogSoftmax

# (shape, axis, dynamic)
SOFTMAX_CASES = [
    pytest.param((2, 3, 9), -1, False, id="last"),
    pytest.param((3, 17), 1, False, id="last-positive"),
    pytest.param((2, 3, 4), 1, False, id="middle"),
    pytest.param((2, 3, 9), -3, False, id="first"),
    pytest.param((17,), 0, False, id="vector"),
    pytest.param((2, 3, 9), -1, True, id="dynamic-last"),
    pytest.param((2, 3, 9), 0, True, id="dynamic-first"),
    pytest.param((0, 5), -1, False, id="empty"),
]


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("shape,axis,dynamic", SOFTMAX_CASES)
def test_softmax(op: str, shape: tuple, axis: int, dynamic: bool) -> None:
    x = f32(*shape) * 3
    model = node_model(op, {"x": x}, dynamic=["x"] if dynamic else (), axis=axis)
    assert_parity(model, {"x": x}, rtol=1e-5, atol=1e-6)


def masked_scores() -> np.ndarray:
    """Attention-like rows: masked by -inf and by float32's lowest value, huge logits, a fully
    masked (lowest-value) row; without the max subtraction exp overflows or gives 0/0."""
    rows = f32(6, 9)
    rows[0, 5:] = -np.inf
    rows[1, ::2] = np.finfo(np.float32).min
    rows[2] = np.finfo(np.float32).min
    rows[3] = 1e4 + f32(9)
    rows[4, :4] = 1e4
    rows[4, 4:] = -1e4
    rows[5, 1:] = -np.inf
    return rows


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_masked_and_large(op: str, axis: int) -> None:
    x = masked_scores()
    if axis == 0:
        x = np.ascontiguousarray(x.T)
    assert_parity(node_model(op, {"x": x}, axis=axis), {"x": x}, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("opset", [13, 21])
def test_softmax_opsets(opset: int) -> None:
    x = f32(2, 3, 9)
    assert_parity(node_model("Softmax", {"x": x}, opset=opset, axis=1), {"x": x}, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- ArgMax / ArgMin

# (data, axis, keepdims, select_last_index)
ARG_CASES = [
    pytest.param(lambda: ties(3, 9), -1, 1, 0, id="last-ties-first"),
    pytest.param(lambda: ties(3, 9), -1, 1, 1, id="last-ties-last"),
    pytest.param(lambda: ties(2, 5, 17), 1, 0, 0, id="middle"),
    pytest.param(lambda: ties(2, 5, 17), 1, 1, 1, id="middle-last-index"),
    pytest.param(lambda: f32(4, 3, 4), 0, 0, 0, id="first"),
    pytest.param(lambda: ties(17), 0, 0, 1, id="vector"),
    pytest.param(lambda: ties(3, 9, dtype=np.int64), -1, 0, 0, id="int64"),
    pytest.param(lambda: ties(3, 9, dtype=np.int64), 0, 1, 1, id="int64-first-axis"),
]


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("make,axis,keepdims,last", ARG_CASES)
def test_arg_extreme(op: str, make, axis: int, keepdims: int, last: int) -> None:
    x = make()
    model = node_model(op, {"x": x}, axis=axis, keepdims=keepdims, select_last_index=last)
    assert_parity(model, {"x": x})


def test_argmax_dynamic() -> None:
    x = ties(2, 3, 9)
    assert_parity(node_model("ArgMax", {"x": x}, dynamic=["x"], axis=-1, keepdims=0), {"x": x})


# ---------------------------------------------------------------- TopK

# (data, k, axis, largest, dynamic)
TOPK_CASES = [
    pytest.param(lambda: f32(3, 9), 3, -1, 1, False, id="last"),
    pytest.param(lambda: f32(3, 17), 5, 1, 0, False, id="last-smallest"),
    pytest.param(lambda: ties(4, 9), 6, -1, 1, False, id="ties-largest"),
    pytest.param(lambda: ties(4, 9), 6, -1, 0, False, id="ties-smallest"),
    pytest.param(lambda: f32(9, 3), 4, 0, 1, False, id="first-axis"),
    pytest.param(lambda: ties(2, 6, 3), 2, -2, 1, False, id="middle-axis"),
    pytest.param(lambda: f32(5), 5, 0, 1, False, id="whole-vector"),
    pytest.param(lambda: ties(3, 9, dtype=np.int64), 4, -1, 1, False, id="int64"),
    pytest.param(lambda: f32(2, 3, 9), 2, -1, 1, True, id="dynamic"),
]


@pytest.mark.parametrize("make,k,axis,largest,dynamic", TOPK_CASES)
def test_topk(make, k: int, axis: int, largest: int, dynamic: bool) -> None:
    x = make()
    model = node_model("TopK", {"x": x}, n_outputs=2, constants={"k": np.array([k], dtype=np.int64)},
                       dynamic=["x"] if dynamic else (), axis=axis, largest=largest)
    assert_parity(model, {"x": x})


def test_topk_unsorted_holds_the_same_elements() -> None:
    # sorted=0 leaves the order open: compare the elements, not their order.
    x = f32(3, 9)
    model = node_model("TopK", {"x": x}, n_outputs=2, constants={"k": np.array([4], dtype=np.int64)}, sorted=0)
    want, got = ort_run(model, {"x": x}), onnx2sql.run(model, {"x": x}, chunk_size=4)
    np.testing.assert_array_equal(np.sort(got["y0"], axis=-1), np.sort(want["y0"], axis=-1))
    np.testing.assert_array_equal(np.sort(got["y1"], axis=-1), np.sort(want["y1"], axis=-1))


def test_topk_needs_a_known_k(tmp_path) -> None:
    """compile() cannot know K from data; run() specialises the program to the fed K."""
    x, k = f32(3, 9), np.array([2], dtype=np.int64)
    model = node_model("TopK", {"x": x, "k": k}, n_outputs=2)
    with pytest.raises(onnx2sql.errors.UnsupportedOpError, match="input 1 \\(K, 'k'\\) is computed from data"):
        onnx2sql.compile(model, tmp_path / "out")
    assert_parity(model, {"x": x, "k": k})

