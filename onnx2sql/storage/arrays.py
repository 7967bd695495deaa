"""numpy arrays in and out of chunked tensor tables (the layout note is in onnx2sql/emit/sql.py)
through DuckDB's own numpy conversion: what every run writes (its feeds) and reads (its outputs).

pyarrow is not needed here, and a process that only runs a compiled model is ~25 MB smaller
without it. Weights, written once by compile and far larger, go through pyarrow
(storage/tables.py), which converts them about ten times faster."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import duckdb
import numpy as np

from onnx2sql.emit.sql import quote_ident, sql_type
from onnx2sql.errors import ShapeError

_REGISTERED = "_onnx2sql_numpy_source"


def chunk_rows(shape: tuple[int, ...], chunk: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The rows of the chunked table of an array of `shape` (rank >= 1): its index columns (i0..,
    c) and where each row's values start in the flat array, then the element count."""
    lead_shape, last = shape[:-1], shape[-1]
    rows = int(np.prod(lead_shape, dtype=np.int64))
    per_row = -(-last // chunk) if last else 0
    starts = (np.arange(rows, dtype=np.int64)[:, None] * last
              + np.arange(per_row, dtype=np.int64)[None, :] * chunk).ravel()
    offsets = np.append(starts, rows * last).astype(np.int64)
    if lead_shape and rows * per_row:
        index = np.unravel_index(np.repeat(np.arange(rows), per_row), lead_shape)
    else:
        index = tuple(np.zeros(0, dtype=np.int64) for _ in lead_shape)
    columns = {f"i{k}": idx.astype(np.int32) for k, idx in enumerate(index)}
    columns["c"] = np.tile(np.arange(per_row, dtype=np.int32), rows)
    return columns, offsets


def chunk_pieces(arr: np.ndarray, chunk: int) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    """The rows of the chunked table of `arr` (rank >= 1) in order, as chunk_rows gives them: each
    row's index values (i0, .., c) and its elements."""
    columns, offsets = chunk_rows(arr.shape, chunk)
    flat = np.ascontiguousarray(arr).reshape(-1)
    for k, key in enumerate(zip(*(column.tolist() for column in columns.values()))):
        yield key, flat[offsets[k]:offsets[k + 1]]


def write_feed(con: duckdb.DuckDBPyConnection, table: str, array: np.ndarray, chunk: int) -> None:
    """An array as a temporary chunked table: each row's chunk goes to DuckDB as a numpy array."""
    arr = np.ascontiguousarray(array.reshape(1) if array.ndim == 0 else array)
    columns, offsets = chunk_rows(arr.shape, chunk)
    pieces = np.split(arr.reshape(-1), offsets[1:-1]) if len(offsets) > 1 else []
    columns["v"] = np.fromiter(pieces, dtype=object, count=len(pieces))
    select = ", ".join([name for name in columns if name != "v"] + [f"{_list_values(arr.dtype)} AS v"])
    with _ctrl_c_as_keyboard_interrupt():
        con.register(_REGISTERED, columns)
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {quote_ident(table)} AS SELECT {select} FROM {_REGISTERED}")
        finally:
            con.unregister(_REGISTERED)


@contextmanager
def _ctrl_c_as_keyboard_interrupt() -> Iterator[None]:
    """DuckDB reads the numpy objects through Python, and a Ctrl-C that arrives meanwhile comes back
    as a duckdb.Error "KeyboardInterrupt: ...": it is raised as the KeyboardInterrupt it is."""
    try:
        yield
    except duckdb.Error as exc:
        if str(exc).startswith("KeyboardInterrupt"):
            raise KeyboardInterrupt from exc
        raise


def _list_values(dtype: np.dtype) -> str:
    """The column v as a list of the array's SQL type. DuckDB reads a NaN in a numpy array as
    NULL; a feed holds no NULL, so every NULL of a float feed is a NaN."""
    cast = f"{sql_type(dtype)}[]"
    if np.dtype(dtype).kind == "f":
        return f"CAST(list_transform(v, lambda x: coalesce(x, 'nan')) AS {cast})"
    return f"CAST(v AS {cast})"


def read_table(con: duckdb.DuckDBPyConnection, table: str, rank: int, shape: tuple[int, ...],
               dtype: np.dtype, where: str = "TRUE") -> np.ndarray:
    """A dense tensor table (or the rows matching `where`, a trusted SQL condition) back into an
    array of `shape`; checks that every element is there."""
    order = ", ".join([f"i{k}" for k in range(max(rank - 1, 0))] + ["c"])
    rows = con.execute(f"SELECT v FROM {quote_ident(table)} WHERE {where} ORDER BY {order}").fetchnumpy()["v"]
    flat = _concatenated(rows)
    expected = int(np.prod(shape, dtype=np.int64))
    if flat.size != expected:
        raise ShapeError(f"table {table} holds {flat.size} elements, shape {list(shape)} needs {expected}")
    return flat.astype(dtype).reshape(shape)


def _concatenated(rows: np.ndarray) -> np.ndarray:
    """The lists of the rows end to end (a NULL list holds nothing); a NULL element reads as NaN."""
    lists = [values for values in rows if values is not None]
    if not lists:
        return np.zeros(0)
    if any(isinstance(values, np.ma.MaskedArray) for values in lists):
        return np.ma.concatenate(lists).astype(np.float64).filled(np.nan)
    return np.concatenate(lists)
