"""A run's feeds and outputs cross into DuckDB without pyarrow (storage/arrays.py): a feed's table
equals the one compile's pyarrow writer makes of the same array, and reads back bit for bit."""
from __future__ import annotations

import duckdb
import numpy as np
import pytest

from onnx2sql.errors import ShapeError
from onnx2sql.storage.arrays import _ctrl_c_as_keyboard_interrupt, read_table, write_feed
from onnx2sql.storage.tables import write_table

DTYPES = [np.float32, np.float64, np.int64, np.int32, np.int16, np.int8, np.uint8, np.uint16, np.uint32,
          np.uint64, np.bool_]
SHAPES = [(), (0,), (5,), (3, 0), (2, 3, 130), (1, 2, 0, 16)]


@pytest.fixture()
def con():
    with duckdb.connect() as con:
        yield con


def sample(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """Values covering the type's range: NaN, infinities and -0.0 for floats, the extremes for integers."""
    size = int(np.prod(shape, dtype=np.int64))
    if np.dtype(dtype).kind == "f":
        special = np.array([np.nan, np.inf, -np.inf, -0.0, np.finfo(dtype).max, np.finfo(dtype).tiny], dtype)
        values = np.resize(np.concatenate([special, np.linspace(-3, 3, 7, dtype=dtype)]), size)
    elif np.dtype(dtype).kind == "b":
        values = np.arange(size) % 3 == 0
    else:
        info = np.iinfo(dtype)
        values = np.resize(np.array([info.min, info.max, 0, 1], dtype), size)
    return values.astype(dtype).reshape(shape)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("chunk", [1, 64])
def test_a_feed_table_equals_the_pyarrow_table_and_reads_back(con, shape, dtype, chunk: int) -> None:
    array = sample(shape, dtype)
    write_feed(con, "feed", array, chunk)
    write_table(con, "arrow", array, chunk, temporary=True)
    assert con.execute("DESCRIBE feed").fetchall() == con.execute("DESCRIBE arrow").fetchall()
    for a, b in (("feed", "arrow"), ("arrow", "feed")):
        assert con.execute(f"SELECT count(*) FROM (FROM {a} EXCEPT ALL FROM {b})").fetchall() == [(0,)]
    back = read_table(con, "feed", array.ndim, array.shape, array.dtype)
    assert back.dtype == array.dtype and back.shape == array.shape
    assert back.tobytes() == array.tobytes()  # NaN and -0.0 included


def test_a_null_element_reads_as_nan(con) -> None:
    con.execute("CREATE TABLE t AS SELECT 0 AS c, [1.0, NULL, 3.0]::FLOAT[] AS v")
    np.testing.assert_array_equal(read_table(con, "t", 1, (3,), np.dtype(np.float32)), [1.0, np.nan, 3.0])


def test_a_missing_row_is_a_shape_error(con) -> None:
    write_feed(con, "t", np.arange(10, dtype=np.int64).reshape(2, 5), 4)
    with pytest.raises(ShapeError, match="holds 6 elements"):
        read_table(con, "t", 2, (2, 5), np.dtype(np.int64), where="NOT (i0 = 1 AND c = 0)")


def test_ctrl_c_inside_duckdb_is_a_keyboard_interrupt() -> None:
    with pytest.raises(KeyboardInterrupt):
        with _ctrl_c_as_keyboard_interrupt():
            raise duckdb.Error("KeyboardInterrupt: ")
    with pytest.raises(duckdb.CatalogException):
        with _ctrl_c_as_keyboard_interrupt():
            raise duckdb.CatalogException("Table with name t does not exist")
