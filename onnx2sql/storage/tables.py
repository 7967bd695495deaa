"""numpy -> chunked tensor tables through pyarrow, as compile writes weights (see the layout note in
onnx2sql/emit/sql.py; a run's feeds and outputs go through storage/arrays.py)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa

from onnx2sql.emit.sql import quote_ident, sql_type
from onnx2sql.storage.arrays import chunk_rows
from onnx2sql.storage.quantize import encode_rows

if TYPE_CHECKING:
    from onnx2sql.ops.context import WeightTable

_REGISTERED = "_onnx2sql_arrow_source"


def to_arrow(array: np.ndarray, chunk: int) -> pa.Table:
    """A chunked Arrow table of an array: leading index columns, c, and a list of <= chunk values."""
    arr = np.ascontiguousarray(array.reshape(1) if array.ndim == 0 else array)
    index, offsets = chunk_rows(arr.shape, chunk)
    flat = arr.reshape(-1)
    values = pa.array(flat.astype(np.uint8) if flat.dtype == np.bool_ else flat)
    if flat.dtype == np.bool_:
        values = values.cast(pa.bool_())
    columns: dict[str, pa.Array] = {name: pa.array(column) for name, column in index.items()}
    columns["v"] = pa.LargeListArray.from_arrays(pa.array(offsets), values)
    return pa.table(columns)


def write_table(con: duckdb.DuckDBPyConnection, table: str, array: np.ndarray, chunk: int,
                temporary: bool = False) -> None:
    lead = [f"i{k}" for k in range(max(array.ndim - 1, 0))]
    select = ", ".join(lead + ["c", f"CAST(v AS {sql_type(array.dtype)}[]) AS v"])
    _create_from_arrow(con, table, to_arrow(array, chunk), select, temporary)


def write_weight(con: duckdb.DuckDBPyConnection, weight: "WeightTable") -> None:
    """A weight table in its layout: chunked, or tiles of whole rows."""
    if weight.tile_rows and weight.blob == "q8":
        write_q8_tiles(con, weight.table, weight.array, weight.tile_rows, weight.first_tile)
    elif weight.tile_rows and weight.blob:
        write_blob_tiles(con, weight.table, weight.array, weight.tile_rows, weight.first_tile)
    elif weight.tile_rows:
        write_tiles(con, weight.table, weight.array, weight.tile_rows, weight.first_tile)
    else:
        write_table(con, weight.table, weight.array, weight.chunk)


def write_tiles(con: duckdb.DuckDBPyConnection, table: str, matrix: np.ndarray, tile_rows: int,
                first_tile: int) -> None:
    """A matrix as rows (c, m): m holds the whole rows tile_rows * (c - first_tile) onwards, at most
    tile_rows of them, as a list of lists."""
    rows, width = matrix.shape
    inner = pa.LargeListArray.from_arrays(pa.array(np.arange(rows + 1, dtype=np.int64) * width),
                                          pa.array(np.ascontiguousarray(matrix).reshape(-1)))
    tiles = pa.LargeListArray.from_arrays(pa.array(_tile_starts(rows, tile_rows)), inner)
    _create_from_arrow(con, table, _tile_table(tiles, first_tile), f"c, CAST(m AS {sql_type(matrix.dtype)}[][]) AS m")


def write_blob_tiles(con: duckdb.DuckDBPyConnection, table: str, matrix: np.ndarray, tile_rows: int,
                     first_tile: int) -> None:
    """A float32 matrix as rows (c, m): m is a BLOB of the tile's rows, little-endian float32,
    row-major, as the native kernel onnx2sql_tile_matvec reads it."""
    rows = np.ascontiguousarray(matrix, dtype="<f4").view(np.uint8)
    _write_byte_rows(con, table, rows, tile_rows, first_tile)


def write_q8_tiles(con: duckdb.DuckDBPyConnection, table: str, matrix: np.ndarray, tile_rows: int,
                   first_tile: int) -> None:
    """A float matrix as rows (c, m): m is a BLOB of the tile's rows quantized to int8, each row its
    group scales then its int8 values (storage/quantize.py), as onnx2sql_tile_matvec_q8 reads it."""
    _write_byte_rows(con, table, encode_rows(np.asarray(matrix, dtype=np.float32)), tile_rows, first_tile)


def _write_byte_rows(con: duckdb.DuckDBPyConnection, table: str, rows: np.ndarray, tile_rows: int,
                     first_tile: int) -> None:
    """Rows of bytes (uint8 [n, row_bytes]) as BLOB tiles of tile_rows rows each."""
    count, row_bytes = rows.shape
    starts = _tile_starts(count, tile_rows) * row_bytes
    tiles = pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(starts) - 1,
                                             [None, pa.py_buffer(starts), pa.py_buffer(rows.reshape(-1))])
    _create_from_arrow(con, table, _tile_table(tiles, first_tile), "c, CAST(m AS BLOB) AS m")


def _tile_starts(rows: int, tile_rows: int) -> np.ndarray:
    """The first row of each tile, then the row count: tiles of tile_rows rows, the last one shorter."""
    tiles = -(-rows // tile_rows)
    return np.minimum(np.arange(tiles + 1, dtype=np.int64) * tile_rows, rows)


def _tile_table(tiles: pa.Array, first_tile: int) -> pa.Table:
    return pa.table({"c": pa.array(np.arange(first_tile, first_tile + len(tiles), dtype=np.int32)), "m": tiles})


def _create_from_arrow(con: duckdb.DuckDBPyConnection, table: str, arrow: pa.Table, select: str,
                       temporary: bool = False) -> None:
    con.register(_REGISTERED, arrow)
    try:
        kind = "TEMP TABLE" if temporary else "TABLE"
        con.execute(f"CREATE OR REPLACE {kind} {quote_ident(table)} AS SELECT {select} FROM {_REGISTERED}")
    finally:
        con.unregister(_REGISTERED)

