"""numpy <-> chunked tensor tables (see the layout note in onnx2sql/emit/sql.py)."""
from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

from onnx2sql.emit.sql import quote_ident, sql_type
from onnx2sql.errors import ShapeError

_REGISTERED = "_onnx2sql_arrow_source"


def to_arrow(array: np.ndarray, chunk: int) -> pa.Table:
    """A chunked Arrow table of an array: leading index columns, c, and a list of <= chunk values."""
    arr = np.ascontiguousarray(array.reshape(1) if array.ndim == 0 else array)
    last = arr.shape[-1]
    rows = int(np.prod(arr.shape[:-1], dtype=np.int64))
    per_row = -(-last // chunk) if last else 0
    starts = (np.arange(rows, dtype=np.int64)[:, None] * last
              + np.arange(per_row, dtype=np.int64)[None, :] * chunk).ravel()
    offsets = np.append(starts, rows * last).astype(np.int64)
    flat = arr.reshape(-1)
    values = pa.array(flat.astype(np.uint8) if flat.dtype == np.bool_ else flat)
    if flat.dtype == np.bool_:
        values = values.cast(pa.bool_())
    lists = pa.LargeListArray.from_arrays(pa.array(offsets), values)
    columns: dict[str, pa.Array] = {}
    lead_shape = arr.shape[:-1]
    if lead_shape and rows * per_row:
        index = np.unravel_index(np.repeat(np.arange(rows), per_row), lead_shape)
    else:
        index = tuple(np.zeros(0, dtype=np.int64) for _ in lead_shape)
    for k, idx in enumerate(index):
        columns[f"i{k}"] = pa.array(idx.astype(np.int32))
    columns["c"] = pa.array(np.tile(np.arange(per_row, dtype=np.int32), rows))
    columns["v"] = lists
    return pa.table(columns)


def write_table(con: duckdb.DuckDBPyConnection, table: str, array: np.ndarray, chunk: int,
                temporary: bool = False) -> None:
    arrow = to_arrow(array, chunk)
    con.register(_REGISTERED, arrow)
    try:
        lead = [f"i{k}" for k in range(max(array.ndim - 1, 0))]
        select = ", ".join(lead + ["c", f"CAST(v AS {sql_type(array.dtype)}[]) AS v"])
        kind = "TEMP TABLE" if temporary else "TABLE"
        con.execute(f"CREATE OR REPLACE {kind} {quote_ident(table)} AS SELECT {select} FROM {_REGISTERED}")
    finally:
        con.unregister(_REGISTERED)


def read_table(con: duckdb.DuckDBPyConnection, table: str, rank: int, shape: tuple[int, ...],
               dtype: np.dtype, where: str = "TRUE") -> np.ndarray:
    """A dense tensor table (or the rows matching `where`, a trusted SQL condition) back into an
    array of `shape`; checks that every element is there."""
    order = ", ".join([f"i{k}" for k in range(max(rank - 1, 0))] + ["c"])
    result = con.sql(f"SELECT v FROM {quote_ident(table)} WHERE {where} ORDER BY {order}").to_arrow_table()
    values = result.column("v").combine_chunks()
    flat = values.flatten().to_numpy(zero_copy_only=False) if len(values) else np.zeros(0)
    expected = int(np.prod(shape, dtype=np.int64))
    if flat.size != expected:
        raise ShapeError(f"table {table} holds {flat.size} elements, shape {list(shape)} needs {expected}")
    return flat.astype(dtype).reshape(shape)
