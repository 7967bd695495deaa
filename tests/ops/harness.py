"""Build one-node (or small) ONNX models and compare onnx2sql in DuckDB with onnxruntime."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import onnx
import onnx.helper as oh
import onnxruntime as ort

import onnx2sql

OPSET = 18


def node_model(op: str, inputs: Mapping[str, np.ndarray], n_outputs: int = 1, opset: int = OPSET,
               constants: Mapping[str, np.ndarray] | None = None, dynamic: Sequence[str] = (),
               **attrs: object) -> onnx.ModelProto:
    """A model of one node. `inputs` become graph inputs (their concrete shapes, or symbolic dims
    for the names in `dynamic`), `constants` become initializers."""
    constants = dict(constants or {})
    names = list(inputs) + list(constants)
    graph_inputs = []
    for name, arr in inputs.items():
        shape = [f"{name}_d{k}" for k in range(arr.ndim)] if name in dynamic else list(arr.shape)
        graph_inputs.append(oh.make_tensor_value_info(name, oh.np_dtype_to_tensor_dtype(arr.dtype), shape))
    outputs = [f"y{k}" for k in range(n_outputs)]
    node = oh.make_node(op, [n if n else "" for n in names], outputs, name=f"{op}_node", **attrs)
    graph = oh.make_graph(
        [node], f"{op}_graph", graph_inputs,
        [oh.make_empty_tensor_value_info(o) for o in outputs],
        initializer=[onnx.numpy_helper.from_array(v, k) for k, v in constants.items()],
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
