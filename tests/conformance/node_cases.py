"""The onnx package's own backend node cases, generated in memory (the wheel ships no data/node).

Every case belongs to one op type: a case's model is a single node of that op, and an
`_expanded` case is the same test run on the op's function body (other ops) instead.
"""
from __future__ import annotations

import warnings
from collections import defaultdict
from functools import lru_cache
from typing import Callable

import numpy as np
import onnx
import onnx.numpy_helper

from onnx2sql.errors import Onnx2SqlError
from onnx2sql.graph.visitor import find_unsupported

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


def case_op(name: str) -> str:
    """The op type a case tests ("domain::Op" outside the default domain)."""
    base = all_cases()[name.split("_expanded")[0]]
    node = base.model.graph.node[0]
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"


@lru_cache(maxsize=1)
def cases_by_op() -> dict[str, list[str]]:
    by_op: dict[str, list[str]] = defaultdict(list)
    for name in sorted(all_cases()):
        by_op[case_op(name)].append(name)
    return dict(by_op)


# Cases onnx2sql lowers but cannot match, each with its reason.
KNOWN_FAILURES: dict[str, str] = {
    "test_isinf_negative": "IsInf's detect_negative attribute is not read: every infinity is reported",
    "test_isinf_positive": "IsInf's detect_positive attribute is not read: every infinity is reported",
    **{f"test_training_dropout{suffix}": "Dropout in training mode draws a random mask (numpy's generator in "
       "the reference); a compiled program cannot reproduce it"
       for suffix in ("", "_default", "_default_mask", "_mask")},
}

UNSUPPORTED_TYPE = "element types without a DuckDB column type (float16, bfloat16, float8/4, int4/2, string, complex)"
NOT_TENSOR = "optional- or sequence-typed graph inputs: onnx2sql values are tensors"


@lru_cache(maxsize=None)
def exclusion_reason(name: str) -> str | None:
    """Why a case does not run, or None when it runs (and must pass)."""
    model = all_cases()[name].model
    if name in KNOWN_FAILURES:
        return KNOWN_FAILURES[name]
    if uses_unsupported_type(model):
        return UNSUPPORTED_TYPE
    if not all(v.type.HasField("tensor_type") for v in model.graph.input):
        return NOT_TENSOR
    try:
        unsupported = sorted({p.op_type for p in find_unsupported(model)})
    except Onnx2SqlError:  # a model of the ai.onnx.ml or training domains only
        unsupported = sorted(case_ops(model))
    return "ops not lowered: " + ", ".join(unsupported) if unsupported else None


def fully_passing(op: str, passes: Callable[[str], bool]) -> bool:
    """Every case of the op passes, leaving out only those of unsupported element types; at least one runs."""
    names = cases_by_op()[op]
    return any(passes(n) for n in names) and all(passes(n) or exclusion_reason(n) == UNSUPPORTED_TYPE for n in names)


def assert_matches(case, got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    """onnx2sql's outputs are the case's: same names, shapes, dtypes; values within the case's tolerance."""
    assert list(got) == list(expected)
    for key, want in expected.items():
        have = got[key]
        assert have.shape == want.shape, f"{key}: shape {have.shape} != {want.shape}"
        assert have.dtype == want.dtype, f"{key}: dtype {have.dtype} != {want.dtype}"
        if want.dtype.kind in "fc":
            np.testing.assert_allclose(have, want, rtol=max(case.rtol, 1e-5), atol=max(case.atol, 1e-6), err_msg=key)
        else:
            np.testing.assert_array_equal(have, want, err_msg=key)
