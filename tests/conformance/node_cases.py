"""The onnx package's own backend node cases, generated in memory (the wheel ships no data/node)."""
from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import onnx
import onnx.numpy_helper

# The op set issue "transpiler" requires; cases using only these ops are run.
TRANSPILER_OPS = frozenset("""
Constant Identity Unsqueeze Squeeze Shape Gather Cast Concat Reshape Flatten Transpose Slice Split Expand
Tile Range ConstantOfShape Where Equal Less LessOrEqual Greater And Or Not IsNaN Add Sub Mul Div Pow Sqrt
Neg Abs Reciprocal Exp Log Cos Sin Tanh Erf Sigmoid Relu Gelu Max Min MatMul Gemm Softmax ReduceMean
ReduceSum ReduceMax LayerNormalization Trilu ArgMax TopK
""".split())


@lru_cache(maxsize=1)
def all_cases() -> dict[str, object]:
    from onnx.backend.test.case import node

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = node.collect_testcases(None)
    return {c.name: c for c in cases if c.model is not None}


def case_ops(model: onnx.ModelProto) -> set[str]:
    return {n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx")} | \
           {f"{n.domain}::{n.op_type}" for n in model.graph.node if n.domain not in ("", "ai.onnx")}


def cases_within(ops: frozenset[str]) -> list[str]:
    return sorted(name for name, c in all_cases().items() if case_ops(c.model) <= ops)


def feeds_and_expected(case) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    inputs, outputs = case.data_sets[0]
    init = {i.name for i in case.model.graph.initializer}
    graph_inputs = [i for i in case.model.graph.input if i.name not in init]
    feeds = {i.name: _as_declared(x, i) for i, x in zip(graph_inputs, inputs)}
    expected = {o.name: _as_declared(y, o) for o, y in zip(case.model.graph.output, outputs)}
    return feeds, expected


def _as_declared(value: object, info: onnx.ValueInfoProto) -> np.ndarray:
    # Some cases store TensorProtos, or plain numbers in object arrays; give them the declared type.
    array = onnx.numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else np.asarray(value)
    if array.dtype == object and info.type.HasField("tensor_type"):
        array = array.astype(onnx.helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type))
    return array


# Element types DuckDB has no column type for; the project targets float32 / integer models.
UNSUPPORTED_TYPES = {
    onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.FLOAT8E4M3FN,
    onnx.TensorProto.FLOAT8E4M3FNUZ, onnx.TensorProto.FLOAT8E5M2, onnx.TensorProto.FLOAT8E5M2FNUZ,
    onnx.TensorProto.UINT4, onnx.TensorProto.INT4, onnx.TensorProto.FLOAT4E2M1, onnx.TensorProto.STRING,
    onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128,
} | {getattr(onnx.TensorProto, name) for name in ("FLOAT8E8M0", "UINT2", "INT2") if hasattr(onnx.TensorProto, name)}


def uses_unsupported_type(model: onnx.ModelProto) -> bool:
    """True when a graph input or output, initializer, constant or Cast target has such a type."""
    graph = model.graph
    types = {v.type.tensor_type.elem_type for v in list(graph.input) + list(graph.output) if v.type.HasField("tensor_type")}
    types |= {t.data_type for t in graph.initializer}
    for node in graph.node:
        for attr in node.attribute:
            if attr.name in ("to", "value") and attr.type == onnx.AttributeProto.INT:
                types.add(attr.i)
            elif attr.type == onnx.AttributeProto.TENSOR:
                types.add(attr.t.data_type)
    return bool(types & UNSUPPORTED_TYPES)
