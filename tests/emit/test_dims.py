"""The runtime's reader of stored dims (emit/dims.py) gives sympy's value for every dim compiled
programs hold and for every construct sympy prints, and refuses any other text."""
from __future__ import annotations

import itertools
import random
from pathlib import Path

import onnx
import pytest
import sympy

from onnx2sql.emit.dims import dim_symbols, evaluate_dim, static_dim
from onnx2sql.errors import DatabaseError
from onnx2sql.graph.symbolic import dim_from_text, dim_to_text, make_symbol
from onnx2sql.graph.visitor import lower_model

# Every non-constant dim of the programs lowered by the op, conformance, decoder (Llama, Qwen2,
# GPT-2), CNN and reliability tests.
STORED = [
    "2*s0", "2*s1", "2*s2", "2*s3", "4*s1", "Max(0, -Min(1, s0) + Min(s0, Max(0, s0 - 1)))",
    "Max(0, Piecewise((-Min(1, s1) + Min(s1, Max(0, 2*s1 - 1)), s1 < 1), "
    "(-Min(1, s1) + Min(s1, Max(0, s1 - 1)), True)))",
    "Max(0, s1 - Min(2, s1))",
    "Piecewise((ceiling(s2/2 - 1/2), s2 <= 2*ceiling(s2/2 - 1/2) - 1), (ceiling(s2/2 - 1/2) + 1, True))",
    "Piecewise((ceiling(s2/2 - 3/2), s2 <= 2*ceiling(s2/2 - 3/2)), (ceiling(s2/2 - 3/2) + 1, True))",
    "Piecewise((ceiling(s3/2 - 1/2), s3 <= 2*ceiling(s3/2 - 1/2)), (ceiling(s3/2 - 1/2) + 1, True))",
    "Piecewise((ceiling(s3/2 - 3/2), s3 <= 2*ceiling(s3/2 - 3/2)), (ceiling(s3/2 - 3/2) + 1, True))",
    "ceiling(s2/2)", "ceiling(s3/2)", "floor(s2/2 - 1/2) + 1", "floor(s2/2 - 3/2) + 1", "floor(s2/2)",
    "floor(s3/2 - 1/2) + 1", "floor(s3/2)", "floor(s4/2)", "s0", "s0 + s1", "s0*s1", "s0*s1*s2", "s0*s1*s2/8",
    "s1", "s1 + 1", "s1 + s2", "s1 + s3", "s1*s2", "s1/4", "s2", "s2 + 3", "s2 + 5", "s2 + s6", "s2 - 1",
    "s2 - 2", "s2/2", "s3", "s3 + 1", "s3 - 1", "s3/2", "s4", "s5", "s6", "s7", "0", "1", "320", "-1",
]
s0, s1, s2 = make_symbol(0), make_symbol(1), make_symbol(2)
# Each construct sympy prints, alone and nested, as lowering could build it.
BUILT = [
    s0 - 7, (s0 - 7) / 2, -(s1 + 1) / 3, s0 ** 2, s0 ** 3 * s1, sympy.floor((s0 - 5) / 3), sympy.ceiling(-s0 / 4),
    sympy.Mod(s0, 4), sympy.Mod(s0 + s1, 3) + 1, sympy.Mod(s0 / 2, 3), sympy.Min(s0, s1, 5), sympy.Max(s0 - s1, 0),
    sympy.Piecewise((1, sympy.Eq(s0, 0)), (s1 + 2, True)),
    sympy.Piecewise((s0, sympy.Ne(s0, s1)), (0, True)),
    sympy.Piecewise((s0 + 1, sympy.And(s0 > 2, s1 < 3)), (s1, sympy.Or(s0 >= 5, sympy.Eq(s1, 0))), (7, True)),
    sympy.Piecewise((2, sympy.Not(sympy.Eq(s0, s1))), (3, True)),
    sympy.Piecewise((s2, s0 <= s1), (s1 * s2, True)),
    sympy.Rational(3, 2) * s0 + sympy.Rational(1, 3) * s1, s0 * s1 / (s2 + 1),
]
VALUES = [0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 63, 64, 65, 1000]


def sympy_value(text: str, bindings: dict[str, int]) -> int:
    """What the runtime computed with sympy before: the dim read back, substituted, truncated."""
    value = dim_from_text(text).subs({sympy.Symbol(k, integer=True, nonnegative=True): v for k, v in bindings.items()})
    return int(value)


def binding_samples(symbols: frozenset[str], count: int = 40) -> list[dict[str, int]]:
    names = sorted(symbols)
    grid = list(itertools.product(VALUES, repeat=len(names)))
    picked = grid if len(grid) <= count else random.Random(0).sample(grid, count)
    return [dict(zip(names, values)) for values in picked]


def assert_same_as_sympy(text: str) -> None:
    for bindings in binding_samples(dim_symbols(text)):
        try:
            want = sympy_value(text, bindings)
        except (TypeError, ValueError):  # undefined there (a Piecewise with no true condition)
            with pytest.raises(ValueError):
                evaluate_dim(text, bindings)
            continue
        assert evaluate_dim(text, bindings) == want, (text, bindings)


@pytest.mark.parametrize("text", STORED)
def test_stored_dims_equal_sympy(text: str) -> None:
    assert_same_as_sympy(text)


@pytest.mark.parametrize("expr", BUILT, ids=str)
def test_every_printed_construct_equals_sympy(expr: sympy.Expr) -> None:
    assert_same_as_sympy(dim_to_text(expr))


def test_dims_of_a_lowered_decoder_equal_sympy(tiny_llama3_dir: Path) -> None:
    program = lower_model(onnx.load(str(tiny_llama3_dir / "model.onnx")))
    texts = {dim for spec in program.inputs + program.outputs for dim in spec.shape}
    assert "s1 + s2" in texts
    for text in texts:
        assert_same_as_sympy(text)
        assert static_dim(text) == (int(text) if dim_from_text(text).is_Integer else None)


def test_unbound_symbols_are_named() -> None:
    with pytest.raises(ValueError, match=r"unbound symbols \['s1', 's3'\]"):
        evaluate_dim("s1 + s2*s3", {"s2": 4})


@pytest.mark.parametrize("text", [
    "__import__('os').system('true')", "s0.__class__", "(lambda: 1)()", "1.5*s0", "[s0][0]", "s0 if s1 else 2",
    "Abs(s0)", "floor(s0, 2)", "Min()", "0 < s0 < 4", "Piecewise(s0)", "Piecewise((s0, 2))", "s0 & s1", "~s0",
    "x", "s0 +", "Max(s0, key=s1)", "'s0'", "s0 == s1", "",
])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(DatabaseError, match="compile the model again"):
        evaluate_dim(text, {"s0": 1, "s1": 2})
