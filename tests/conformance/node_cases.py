"""The onnx package's own backend node cases, generated in memory (the wheel ships no data/node)."""
from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import onnx

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
    names = [i.name for i in case.model.graph.input if i.name not in init]
    feeds = dict(zip(names, [np.asarray(x) for x in inputs]))
    expected = dict(zip([o.name for o in case.model.graph.output], [np.asarray(y) for y in outputs]))
    return feeds, expected
