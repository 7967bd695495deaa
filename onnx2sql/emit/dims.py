"""The dims of a compiled program, evaluated without sympy.

A program stores each dim of its inputs and outputs as sympy's text of an expression over the
symbols s0, s1, ... (graph/symbolic.py writes it). Running a compiled program needs only their
values once the symbols are bound, and importing sympy alone costs a process ~0.4 s and ~33 MB, so
the text is read here: parsed by Python's `ast` and interpreted over exact fractions, as sympy
computes. Only what sympy prints for the expressions lowering builds is accepted (integers,
symbols, + - * / **, floor, ceiling, Min, Max, Mod, Piecewise and its conditions); the text comes
from a database file and is never evaluated as Python.
"""
from __future__ import annotations

import ast
import math
import operator
import re
from fractions import Fraction
from functools import lru_cache
from typing import Callable, Mapping

from onnx2sql.errors import DatabaseError

Value = Fraction | bool  # a number, or a Piecewise condition
Bindings = Mapping[str, int]
Evaluator = Callable[[Bindings], Value]

SYMBOL = re.compile(r"s[0-9]+\Z")


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    if exponent.denominator != 1:
        raise ValueError(f"{base} ** {exponent} is not rational")
    return base ** int(exponent)


_ARITHMETIC: dict[type, Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Pow: _power,
}
# sympy prints And, Or and Not as &, | and ~.
_LOGIC: dict[type, Callable[[bool, bool], bool]] = {ast.BitAnd: operator.and_, ast.BitOr: operator.or_}
_COMPARISONS: dict[type, Callable[[Fraction, Fraction], bool]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
}
# Mod is sympy's floored modulo, as Python's % on fractions.
_FUNCTIONS: dict[str, Callable[..., Value]] = {
    "floor": lambda x: Fraction(math.floor(x)), "ceiling": lambda x: Fraction(math.ceil(x)),
    "Min": min, "Max": max, "Mod": operator.mod, "Eq": operator.eq, "Ne": operator.ne,
}
_ARITY = {"floor": (1, 1), "ceiling": (1, 1), "Min": (1, None), "Max": (1, None), "Mod": (2, 2),
          "Eq": (2, 2), "Ne": (2, 2)}


def evaluate_dim(text: str, bindings: Bindings) -> int:
    """The integer value of a stored dim under symbol values ({"s0": 1, ...}), truncated as sympy's
    int() truncates."""
    missing = sorted(dim_symbols(text) - bindings.keys())
    if missing:
        raise ValueError(f"dimension {text} has unbound symbols {missing}")
    value = _compiled(text)[0](bindings)
    if isinstance(value, bool):
        raise ValueError(f"dimension {text} is a condition, not a number")
    return int(value)


def static_dim(text: str) -> int | None:
    """The dim's value when it is a plain integer (sympy's is_Integer), else None."""
    if dim_symbols(text):
        return None
    value = _compiled(text)[0]({})
    return int(value) if not isinstance(value, bool) and value.denominator == 1 else None


def dim_symbols(text: str) -> frozenset[str]:
    return _compiled(text)[1]


@lru_cache(maxsize=4096)
def _compiled(text: str) -> tuple[Evaluator, frozenset[str]]:
    """The dim as a tree of closures, and the symbols it reads."""
    try:
        tree = ast.parse(text, mode="eval")
        evaluator = _compile(tree.body, text)
    except (SyntaxError, ValueError, RecursionError):
        raise _not_a_dim(text) from None
    symbols = frozenset(node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and SYMBOL.match(node.id))
    return evaluator, symbols


def _compile(node: ast.expr, text: str) -> Evaluator:
    if isinstance(node, ast.Constant) and type(node.value) in (int, bool):
        constant: Value = node.value if isinstance(node.value, bool) else Fraction(node.value)
        return lambda bindings: constant
    if isinstance(node, ast.Name) and SYMBOL.match(node.id):
        name = node.id
        return lambda bindings: Fraction(bindings[name])
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Invert)):
        return _unary(node, text)
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        return _binary(_ARITHMETIC[type(node.op)], Fraction, node.left, node.right, text)
    if isinstance(node, ast.BinOp) and type(node.op) in _LOGIC:
        return _binary(_LOGIC[type(node.op)], bool, node.left, node.right, text)
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARISONS:
        return _binary(_COMPARISONS[type(node.ops[0])], Fraction, node.left, node.comparators[0], text)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        if node.func.id == "Piecewise":
            return _piecewise(node.args, text)
        if node.func.id in _FUNCTIONS and _arity_fits(node.func.id, len(node.args)):
            return _call(_FUNCTIONS[node.func.id], node.args, text)
    raise _not_a_dim(text)


def _unary(node: ast.UnaryOp, text: str) -> Evaluator:
    operand = _compile(node.operand, text)
    if isinstance(node.op, ast.USub):
        return lambda bindings: -_checked(operand(bindings), Fraction, text)
    return lambda bindings: not _checked(operand(bindings), bool, text)


def _binary(op: Callable, kind: type, left: ast.expr, right: ast.expr, text: str) -> Evaluator:
    a, b = _compile(left, text), _compile(right, text)
    return lambda bindings: op(_checked(a(bindings), kind, text), _checked(b(bindings), kind, text))


def _call(function: Callable[..., Value], args: list[ast.expr], text: str) -> Evaluator:
    compiled = [_compile(arg, text) for arg in args]
    return lambda bindings: function(*(_checked(arg(bindings), Fraction, text) for arg in compiled))


def _piecewise(args: list[ast.expr], text: str) -> Evaluator:
    """The value of the first (value, condition) pair whose condition holds."""
    if not args or not all(isinstance(arg, ast.Tuple) and len(arg.elts) == 2 for arg in args):
        raise _not_a_dim(text)
    pieces = [(_compile(arg.elts[0], text), _compile(arg.elts[1], text)) for arg in args]

    def value(bindings: Bindings) -> Value:
        for piece, condition in pieces:
            if _checked(condition(bindings), bool, text):
                return piece(bindings)
        raise ValueError(f"dimension {text} is undefined for {dict(bindings)}")

    return value


def _arity_fits(name: str, count: int) -> bool:
    least, most = _ARITY[name]
    return count >= least and (most is None or count <= most)


def _checked(value: Value, kind: type, text: str) -> Value:
    # A condition where a number belongs (or the reverse) is not an expression sympy would print.
    if isinstance(value, bool) != (kind is bool):
        raise _not_a_dim(text)
    return value


def _not_a_dim(text: str) -> DatabaseError:
    return DatabaseError(f"the compiled program holds a dimension onnx2sql does not write, {text!r}; "
                         "compile the model again")
