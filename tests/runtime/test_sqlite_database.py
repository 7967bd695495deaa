"""SqliteDatabase: tensors written as JSON arrays in chunks and read back exactly (NaN, infinities,
integers, booleans, empty and scalar tensors), missing elements detected, symbols kept as DuckDB's
variables are, temporary tables dropped and the database's own tables kept."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onnx2sql.errors import InputError, ShapeError
from onnx2sql.ops.context import WeightTable
from onnx2sql.runtime.sqlite import SqliteDatabase

pytestmark = pytest.mark.sqlite


@pytest.fixture
def lite():
    with SqliteDatabase.connect() as db:
        yield db


@pytest.mark.parametrize("array", [
    np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7,
    np.array([[np.nan, np.inf, -np.inf, 1e-38, -0.0, 3.4e38]], dtype=np.float32),
    np.arange(-5, 5, dtype=np.int64).reshape(2, 5) * (1 << 40),
    np.array([True, False, True]),
    np.zeros((3, 0), dtype=np.float32),
    np.array(2.5, dtype=np.float64),
], ids=["float32", "special", "int64", "bool", "empty", "scalar"])
@pytest.mark.parametrize("chunk", [1, 4, 64])
def test_tensors_round_trip_exactly(lite: SqliteDatabase, array: np.ndarray, chunk: int) -> None:
    lite.write_tensor("t", array, chunk)
    shape = array.shape or (1,)
    got = lite.read_tensor("t", len(shape), shape, array.dtype)
    np.testing.assert_array_equal(got, array.reshape(shape))


def test_chunks_hold_at_most_chunk_elements(lite: SqliteDatabase) -> None:
    lite.write_tensor("t", np.arange(10, dtype=np.int64).reshape(1, 10), 4)
    assert lite.fetchall("SELECT i0, c, v FROM t ORDER BY c") == [(0, 0, "[0,1,2,3]"), (0, 1, "[4,5,6,7]"),
                                                                 (0, 2, "[8,9]")]


def test_missing_elements_are_detected(lite: SqliteDatabase) -> None:
    lite.write_tensor("t", np.ones((2, 3), dtype=np.float32), 3)
    lite.execute("DELETE FROM t WHERE i0 = 1")
    with pytest.raises(ShapeError, match=r"table t holds 3 elements, shape \[2, 3\] needs 6"):
        lite.read_tensor("t", 2, (2, 3), np.dtype(np.float32))


def test_chunk_must_be_positive(lite: SqliteDatabase) -> None:
    with pytest.raises(InputError, match="chunk must be at least 1, not 0"):
        lite.write_tensor("t", np.ones(3), 0)


def test_vector_weights_are_float32_rows(lite: SqliteDatabase) -> None:
    rows = np.arange(6, dtype=np.float32).reshape(2, 3) / 3
    lite.write_weight(WeightTable("w", rows, "test", 3, blob="vector"))
    stored = lite.fetchall("SELECT i0, v FROM w ORDER BY i0")
    assert [i for i, _ in stored] == [0, 1]
    np.testing.assert_array_equal(np.stack([np.frombuffer(v, "<f4") for _, v in stored]), rows)


def test_symbols_stay_until_replaced(lite: SqliteDatabase) -> None:
    lite.set_symbols({"s0": 4, "s1": 9})
    lite.set_symbols({"s0": 5})
    assert lite.fetchall("SELECT name, value FROM temp.onnx2sql_symbols ORDER BY name") == [("s0", 5), ("s1", 9)]


def test_drop_temporaries_keeps_the_databases_tables(tmp_path: Path) -> None:
    with SqliteDatabase.connect(tmp_path / "db.sqlite") as db:
        db.write_tensor("kept", np.ones(2), 2)
        db.write_tensor("scratch", np.ones(2), 2, temporary=True)
        assert db.temporary_tables() == ["scratch"]
        db.drop_temporaries()
        assert db.temporary_tables() == [] and db.table_exists("kept") and not db.table_exists("scratch")


def test_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a folder; name a SQLite database file"):
        SqliteDatabase.connect(tmp_path)
