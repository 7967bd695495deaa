"""Gather against onnxruntime: embedding lookups on weight tables, leading and last axes, scalar
and matrix indices, negative indices, indices known at compile time, dtypes, empty and dynamic."""
from __future__ import annotations

import numpy as np
import onnx.helper as oh
import pytest

from harness import OpCase, assert_parity, graph_model, sample, table


def indices(shape: tuple[int, ...], dim: int, dtype: type = np.int64) -> np.ndarray:
    """Valid indices into an axis of length dim, negative ones included."""
    return np.asarray(sample(shape, np.int64).clip(-dim, dim - 1), dtype=dtype)


def gather(label: str, data: np.ndarray, index: np.ndarray, axis: int = 0, known: tuple[str, ...] = (),
           dynamic: tuple[str, ...] = ()) -> OpCase:
    values = {"data": data, "indices": index}
    return OpCase(label, "Gather", {k: v for k, v in values.items() if k not in known},
                  {k: v for k, v in values.items() if k in known}, {"axis": axis},
                  dynamic=dynamic, order=("data", "indices"))


GATHER = table(
    gather("embedding", sample((10, 9)), indices((2, 3), 10), known=("data",)),
    gather("embedding-dynamic", sample((10, 9)), indices((2, 3), 10), known=("data",), dynamic=("indices",)),
    gather("rows", sample((5, 9)), indices((4,), 5)),
    gather("row-scalar-index", sample((5, 9)), indices((), 5)),
    gather("middle-axis", sample((2, 5, 9)), indices((3,), 5), axis=1),
    gather("middle-axis-matrix", sample((2, 5, 3)), indices((2, 2), 5), axis=-2),
    gather("last-axis", sample((3, 9)), indices((4,), 9), axis=-1),
    gather("last-axis-matrix", sample((3, 9)), indices((2, 2), 9), axis=1),
    gather("last-axis-scalar", sample((3, 9)), indices((), 9), axis=1),
    gather("vector-scalar", sample((9,)), indices((), 9)),
    gather("known-scalar-row", sample((4, 9)), np.array(-1, dtype=np.int64), known=("indices",)),
    gather("known-scalar-last", sample((3, 9)), np.array(5, dtype=np.int64), axis=1, known=("indices",)),
    gather("known-vector", sample((4, 6)), np.array([3, -1, 0], dtype=np.int64), known=("indices",)),
    gather("folded", sample((4, 6)), np.array([[1], [2]], dtype=np.int64), axis=1, known=("data", "indices")),
    gather("int32-indices", sample((5, 3)), indices((3,), 5, np.int32)),
    gather("int64-data", sample((5, 3), np.int64), indices((2,), 5)),
    gather("bool-data", sample((3, 7), np.bool_), indices((2,), 7), axis=1),
    gather("empty-indices", sample((5, 3)), indices((0,), 5)),
    gather("empty-data-rows", sample((5, 0)), indices((2,), 5)),
    gather("dynamic-last-token", sample((2, 3, 9)), np.array(-1, dtype=np.int64), axis=1, known=("indices",),
           dynamic=("data",)),
    gather("dynamic-rows", sample((2, 3, 9)), indices((2,), 3), axis=1, dynamic=("data", "indices")),
)


@pytest.mark.parametrize("case", GATHER)
def test_gather(case: OpCase) -> None:
    case.check()


@pytest.mark.parametrize("shape", [(2, 3, 9), (1, 1, 9), (2, 6, 9)], ids=str)
def test_last_position_from_shape_arithmetic(shape: tuple[int, ...]) -> None:
    """x[:, seq - 1] with seq read from Shape: a symbolic index, resolved when the program runs."""
    nodes = [
        oh.make_node("Shape", ["x"], ["shape"]),
        oh.make_node("Gather", ["shape", "one"], ["seq"], axis=0),
        oh.make_node("Sub", ["seq", "one"], ["last"]),
        oh.make_node("Gather", ["x", "last"], ["y"], axis=1),
    ]
    model = graph_model(nodes, {"x": sample(shape)}, ["y"], constants={"one": np.array(1, dtype=np.int64)},
                        dynamic=["x"])
    assert_parity(model, {"x": sample(shape)})
