"""What a graph value is at compile time: known now (folded) or computed by the database."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import sympy

from onnx2sql.graph.symbolic import Shape, as_shape


@dataclass(frozen=True, eq=False)
class Known:
    """A value known at compile time: an initializer, a Constant, or folded shape arithmetic.

    `array` is numeric, or an object array of sympy expressions when it depends on symbolic
    dims (e.g. the output of Shape). `dtype` is the ONNX element type as a numpy dtype.
    """

    array: np.ndarray
    dtype: np.dtype

    @staticmethod
    def of(array: np.ndarray | object, dtype: np.dtype | type | None = None) -> "Known":
        arr = np.asarray(array)
        dt = np.dtype(dtype) if dtype is not None else arr.dtype
        if arr.dtype == object:
            arr = np.vectorize(_simplify, otypes=[object])(arr) if arr.size else arr
            if all(_is_number(x) for x in arr.flat):
                arr = np.array([_to_python(x) for x in arr.flat], dtype=dt).reshape(arr.shape)
        elif arr.dtype != dt:
            arr = arr.astype(dt)
        return Known(arr, dt)

    @property
    def shape(self) -> Shape:
        return as_shape(self.array.shape)

    @property
    def rank(self) -> int:
        return self.array.ndim

    @property
    def symbolic(self) -> bool:
        return self.array.dtype == object

    def ints(self) -> list:
        """The values as a flat list of Python ints or sympy expressions."""
        return [x if isinstance(x, sympy.Basic) and not x.is_Integer else int(x) for x in self.array.flat]


@dataclass(frozen=True, eq=False)
class Runtime:
    """A tensor computed by the SQL program: a table in the chunked layout (see emit/layout.py)."""

    table: str
    dtype: np.dtype
    shape: Shape

    @property
    def rank(self) -> int:
        return len(self.shape)


Value = Known | Runtime


def shape_of(value: Value) -> Shape:
    return value.shape if isinstance(value, Runtime) else as_shape(value.array.shape)


def _simplify(x: object) -> object:
    if isinstance(x, sympy.Basic):
        return _simplified(x) if not x.is_Atom else x
    return x


@functools.lru_cache(maxsize=4096)
def _simplified(x: sympy.Basic) -> sympy.Basic:
    # Every layer repeats the same shape arithmetic; simplify is the slow part of lowering.
    return sympy.simplify(x)


def _is_number(x: object) -> bool:
    if isinstance(x, sympy.Basic):
        return bool(x.is_number) or x in (sympy.true, sympy.false)
    return True


def _to_python(x: object) -> object:
    if x is sympy.true:
        return True
    if x is sympy.false:
        return False
    if isinstance(x, sympy.Basic):
        return int(x) if x.is_Integer else float(x)
    return x
