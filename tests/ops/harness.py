"""Build one-node (or small) ONNX models and compare onnx2sql in DuckDB with onnxruntime."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import onnx
import onnx.helper as oh
import onnxruntime as ort

import onnx2sql

OPSET = 18


def node_model(op: str, inputs: Mapping[str, np.ndarray], n_outputs: int = 1, opset: int = OPSET,
               constants: Mapping[str, np.ndarray] | None = None, dynamic: Sequence[str] = (),
               order: Sequence[str] | None = None, **attrs: object) -> onnx.ModelProto:
    """A model of one node. `inputs` become graph inputs (their concrete shapes, or symbolic dims
    for the names in `dynamic`), `constants` become initializers. The node reads them in `order`
    ("" for an absent optional input), by default inputs first, then constants."""
    constants = dict(constants or {})
    names = list(order) if order is not None else list(inputs) + list(constants)
    outputs = [f"y{k}" for k in range(n_outputs)]
    node = oh.make_node(op, [n if n else "" for n in names], outputs, name=f"{op}_node", **attrs)
    return graph_model([node], inputs, outputs, opset=opset, constants=constants, dynamic=dynamic, name=op)


def graph_model(nodes: Sequence[onnx.NodeProto], inputs: Mapping[str, np.ndarray], outputs: Sequence[str],
                opset: int = OPSET, constants: Mapping[str, np.ndarray] | None = None,
                dynamic: Sequence[str] = (), name: str = "test") -> onnx.ModelProto:
    """A model of several nodes; inputs, constants and `dynamic` as in node_model."""
    graph_inputs = []
    for input_name, arr in inputs.items():
        shape = ([f"{input_name}_d{k}" for k in range(arr.ndim)] if input_name in dynamic else list(arr.shape))
        graph_inputs.append(oh.make_tensor_value_info(input_name, oh.np_dtype_to_tensor_dtype(arr.dtype), shape))
    graph = oh.make_graph(
        list(nodes), f"{name}_graph", graph_inputs,
        [oh.make_empty_tensor_value_info(o) for o in outputs],
        initializer=[onnx.numpy_helper.from_array(v, k) for k, v in (constants or {}).items()],
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def ort_run(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, dict(feeds))))


def assert_parity(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], rtol: float = 1e-5,
                  atol: float = 1e-6, chunk_size: int = 4) -> dict[str, np.ndarray]:
    """onnx2sql's outputs equal onnxruntime's: same names, shapes, dtypes; values within tolerance."""
    expected = ort_run(model, feeds)
    got = onnx2sql.run(model, feeds, chunk_size=chunk_size)
    assert list(got) == list(expected)
    for name, want in expected.items():
        have = got[name]
        assert have.shape == want.shape, f"{name}: shape {have.shape} != {want.shape}"
        assert have.dtype == want.dtype, f"{name}: dtype {have.dtype} != {want.dtype}"
        if want.dtype.kind == "f":
            np.testing.assert_allclose(have, want, rtol=rtol, atol=atol, err_msg=name)
        else:
            np.testing.assert_array_equal(have, want, err_msg=name)
    return got


_rng = np.random.default_rng(20240611)


def sample(shape: Sequence[int], dtype: type | np.dtype = np.float32) -> np.ndarray:
    """Random test data of a shape and dtype: normal floats, small ints (signed), random bools."""
    dt, shape = np.dtype(dtype), tuple(shape)
    if dt == np.bool_:
        return np.asarray(_rng.random(shape) > 0.5)
    if dt.kind in "iu":
        return np.asarray(_rng.integers(-9 if dt.kind == "i" else 0, 10, shape), dtype=dt)
    return np.asarray(_rng.standard_normal(shape), dtype=dt)


@dataclass
class OpCase:
    """One row of an op's test table: a one-node model, its feeds and the chunk size to run with.

    `inputs` are graph inputs (fed at run time), `constants` initializers; the node reads them in
    `order` (names, "" for an omitted optional input), by default inputs then constants."""

    label: str
    op: str
    inputs: dict[str, np.ndarray]
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, object] = field(default_factory=dict)
    dynamic: tuple[str, ...] = ()
    opset: int = OPSET
    outputs: int = 1
    order: tuple[str, ...] | None = None
    chunk_size: int = 4

    def model(self) -> onnx.ModelProto:
        names = list(self.order) if self.order is not None else list(self.inputs) + list(self.constants)
        outputs = [f"y{k}" for k in range(self.outputs)]
        node = oh.make_node(self.op, names, outputs, name=f"{self.op}_node", **self.attrs)
        return graph_model([node], self.inputs, outputs, opset=self.opset, constants=self.constants,
                           dynamic=self.dynamic, name=self.op)

    def check(self) -> dict[str, np.ndarray]:
        return assert_parity(self.model(), self.inputs, chunk_size=self.chunk_size)


def table(*cases: OpCase) -> list:
    """pytest parameters of a case table, named by their labels."""
    import pytest

    return [pytest.param(c, id=c.label) for c in cases]
