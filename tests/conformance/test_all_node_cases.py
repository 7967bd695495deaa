"""Every onnx backend node case, through the backend adapter (onnx2sql.backend) in DuckDB, against
the case's expected outputs (the onnx reference results) at the case's own tolerance.

A case runs unless node_cases.exclusion_reason gives a reason: an element type DuckDB has no
column type for, an op not lowered (named in the reason), a non-tensor graph input, or one of
node_cases.KNOWN_FAILURES. Cases whose ops all belong to the transpiler's op set run in
test_transpiler_node_cases.py; the others run here. A newly lowered op's cases start running
by themselves.
"""
from __future__ import annotations

from collections import Counter

import pytest

from node_cases import (TRANSPILER_OPS, UNSUPPORTED_TYPE, all_cases, assert_matches, cases_by_op, cases_within,
                        exclusion_reason, feeds_and_expected, fully_passing)
from onnx2sql import backend

# Op types classic convolutional networks need; each must pass every one of its cases.
CNN_OPS = {"Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "BatchNormalization", "Relu", "Clip",
           "Flatten", "Gemm", "Softmax", "Concat", "Add", "Pad"}
MIN_FULLY_PASSING_OPS = 120

COVERED_ELSEWHERE = set(cases_within(TRANSPILER_OPS))
RUNNING = [name for name in sorted(all_cases()) if exclusion_reason(name) is None]
CASES = [name for name in RUNNING if name not in COVERED_ELSEWHERE]


def _runs(name: str) -> bool:
    return exclusion_reason(name) is None  # and then its test asserts that it passes


def test_most_cases_run() -> None:
    reasons = Counter(exclusion_reason(n) for n in all_cases())
    assert len(RUNNING) >= 1060, f"only {len(RUNNING)} of {len(all_cases())} cases run"
    assert reasons[UNSUPPORTED_TYPE] < 300


def test_fully_passing_op_types() -> None:
    passing = {op for op in cases_by_op() if fully_passing(op, _runs)}
    assert CNN_OPS <= passing, f"not fully passing: {sorted(CNN_OPS - passing)}"
    assert len(passing) >= MIN_FULLY_PASSING_OPS, f"{len(passing)} op types pass every case"


@pytest.mark.parametrize("name", CASES)
def test_node_case(name: str) -> None:
    case = all_cases()[name]
    feeds, expected = feeds_and_expected(case)
    rep = backend.prepare(case.model, chunk_size=4)
    outputs = rep.run(list(feeds.values()))
    assert_matches(case, dict(zip(rep.output_names, outputs)), expected)
