"""PostgresDatabase against a real PostgreSQL server (started once for the module in a temporary
directory): tensor tables in the layout of onnx2sql/emit/sql.py both ways, symbols, temporary
tables, and the errors a caller sees."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import psycopg

from onnx2sql.errors import InputError, ModelError, ShapeError
from onnx2sql.runtime.postgres import POSTGRES_TYPES, PostgresDatabase, PostgresServer
from onnx2sql.storage.arrays import chunk_rows

# A real PostgreSQL server; not run again by the pure-SQL pass of `make test` (no DuckDB kernels here).
pytestmark = pytest.mark.postgres


@pytest.fixture
def server(postgres_server: PostgresServer) -> PostgresServer:
    return postgres_server


@pytest.fixture
def db(postgres_server: PostgresServer) -> Iterator[PostgresDatabase]:
    with PostgresDatabase.connect(postgres_server.url) as database:
        yield database


def layout_rows(db: PostgresDatabase, table: str, rank: int) -> list[tuple]:
    """(i0 .., c, number of elements of v) of every row, in order."""
    index = ", ".join([f"i{k}" for k in range(rank - 1)] + ["c"])
    return db.fetchall(f'SELECT {index}, cardinality(v) FROM "{table}" ORDER BY {index}')


def expected_layout(shape: tuple[int, ...], chunk: int) -> list[tuple]:
    columns, offsets = chunk_rows(shape, chunk)
    counts = np.diff(offsets)
    return [tuple(int(columns[name][r]) for name in columns) + (int(counts[r]),) for r in range(len(counts))]


@pytest.mark.parametrize("temporary", [False, True])
def test_float32_keeps_nan_infinities_and_subnormals(db: PostgresDatabase, temporary: bool) -> None:
    array = np.random.default_rng(0).standard_normal((5, 130)).astype(np.float32)
    array[0, :4] = [np.nan, np.inf, -np.inf, np.float32(1e-45)]
    array[4, -1] = -0.0
    db.write_tensor("f32", array, 64, temporary=temporary)
    back = db.read_tensor("f32", 2, (5, 130), np.float32)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, array)
    assert np.signbit(back[4, -1])
    assert db.fetchall("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                       "WHERE attrelid = '\"f32\"'::regclass AND attname = 'v'") == [("double precision[]",)]


@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.int32, np.int16, np.int8, np.uint8, np.uint16, np.uint32])
def test_numbers_round_trip_to_their_limits(db: PostgresDatabase, dtype: type) -> None:
    info = np.finfo(dtype) if np.dtype(dtype).kind == "f" else np.iinfo(dtype)
    array = np.array([[info.min, info.max, 0, 1], [2, 3, info.max, info.min]], dtype=dtype)
    db.write_tensor("numbers", array, 3)
    back = db.read_tensor("numbers", 2, (2, 4), dtype)
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, array)
    element = db.fetchall("SELECT pg_typeof(v[1])::text FROM numbers LIMIT 1")[0][0]
    assert element == POSTGRES_TYPES[np.dtype(dtype)]


def test_booleans_round_trip(db: PostgresDatabase) -> None:
    array = np.random.default_rng(1).random((3, 100)) > 0.5
    db.write_tensor("flags", array, 64)
    np.testing.assert_array_equal(db.read_tensor("flags", 2, (3, 100), np.bool_), array)
    assert db.fetchall("SELECT v[1:3] FROM flags WHERE i0 = 0 AND c = 0") == [(array[0, :3].tolist(),)]


def test_scalar_is_stored_like_shape_one(db: PostgresDatabase) -> None:
    db.write_tensor("scalar", np.float32(2.5), 64)
    assert db.fetchall("SELECT c, v FROM scalar") == [(0, [2.5])]
    back = db.read_tensor("scalar", 0, (), np.float32)
    assert back.shape == () and back.dtype == np.float32 and back == np.float32(2.5)


def test_rank3_last_axis_not_a_multiple_of_the_chunk(db: PostgresDatabase) -> None:
    array = np.arange(2 * 3 * 70, dtype=np.int64).reshape(2, 3, 70)
    db.write_tensor("rank3", array, 64)
    assert layout_rows(db, "rank3", 3) == expected_layout((2, 3, 70), 64)
    # Element j of the last axis sits at v[j % chunk + 1] of the row with c = j // chunk.
    element = db.fetchall("SELECT v[66 % 64 + 1] FROM rank3 WHERE i0 = 1 AND i1 = 2 AND c = 66 / 64")
    assert element == [(array[1, 2, 66],)]
    np.testing.assert_array_equal(db.read_tensor("rank3", 3, (2, 3, 70), np.int64), array)


@pytest.mark.parametrize("shape, chunk", [((7,), 64), ((200,), 64), ((4, 1), 1), ((3, 2, 5), 2)])
def test_other_shapes_and_chunks(db: PostgresDatabase, shape: tuple[int, ...], chunk: int) -> None:
    array = np.random.default_rng(2).standard_normal(shape)
    db.write_tensor("shapes", array, chunk)
    assert layout_rows(db, "shapes", len(shape)) == expected_layout(shape, chunk)
    np.testing.assert_array_equal(db.read_tensor("shapes", len(shape), shape, np.float64), array)


@pytest.mark.parametrize("shape", [(3, 0), (0, 5), (0,)])
def test_empty_tensors_have_no_rows(db: PostgresDatabase, shape: tuple[int, ...]) -> None:
    db.write_tensor("empty", np.zeros(shape, dtype=np.float32), 64)
    assert db.fetchall("SELECT count(*) FROM empty") == [(0,)]
    back = db.read_tensor("empty", len(shape), shape, np.float32)
    assert back.shape == shape and back.dtype == np.float32


@pytest.mark.parametrize("temporary", [False, True])
def test_names_with_quotes_and_spaces(db: PostgresDatabase, temporary: bool) -> None:
    name = f'my "odd" {"temporary" if temporary else "permanent"} table; DROP TABLE x'
    array = np.arange(6, dtype=np.int32).reshape(2, 3)
    db.write_tensor(name, array, 2, temporary=temporary)
    np.testing.assert_array_equal(db.read_tensor(name, 2, (2, 3), np.int32), array)
    assert db.table_exists(name) is not temporary
    assert (name in db.temporary_tables()) is temporary


def test_write_replaces_a_table_of_another_type_and_rank(db: PostgresDatabase) -> None:
    db.write_tensor("replaced", np.ones((2, 2, 2), dtype=np.float32), 64)
    db.write_tensor("replaced", np.array([True, False]), 64)
    np.testing.assert_array_equal(db.read_tensor("replaced", 1, (2,), np.bool_), [True, False])
    columns = db.fetchall("SELECT attname FROM pg_attribute WHERE attrelid = 'replaced'::regclass AND attnum > 0 "
                          "ORDER BY attnum")
    assert columns == [("c",), ("v",)]


def test_permanent_and_temporary_tables_of_one_name_stay_apart(db: PostgresDatabase) -> None:
    db.write_tensor("twin", np.array([1, 2], dtype=np.int64), 64)
    db.write_tensor("twin", np.array([3, 4, 5], dtype=np.int64), 64, temporary=True)
    db.write_tensor("twin", np.array([6, 7], dtype=np.int64), 64)  # the permanent one, not the temporary
    assert db.fetchall("SELECT v FROM public.twin") == [([6, 7],)]
    np.testing.assert_array_equal(db.read_tensor("twin", 1, (3,), np.int64), [3, 4, 5])  # a temporary table hides
    db.drop_temporaries()
    np.testing.assert_array_equal(db.read_tensor("twin", 1, (2,), np.int64), [6, 7])


def test_rows_chunked_otherwise_null_elements_and_other_types_are_read(db: PostgresDatabase) -> None:
    db.execute("DROP TABLE IF EXISTS odd; CREATE TABLE odd (c integer, v double precision[]);"
               "INSERT INTO odd VALUES (2, '{6}'), (0, '{1,2,3}'), (1, '{4,NULL}'), (3, NULL), (4, '{}')")
    np.testing.assert_array_equal(db.read_tensor("odd", 1, (6,), np.float64), [1, 2, 3, 4, np.nan, 6])
    db.execute("DROP TABLE IF EXISTS sums; CREATE TABLE sums AS "
               "SELECT 0 AS c, ARRAY[sum(x)] AS v FROM (VALUES (9223372036854775807::bigint), (1)) AS t(x)")
    assert db.fetchall("SELECT pg_typeof(v)::text FROM sums") == [("numeric[]",)]
    np.testing.assert_array_equal(db.read_tensor("sums", 1, (1,), np.float64), [2.0 ** 63])


def test_a_wrong_shape_is_a_shape_error(db: PostgresDatabase) -> None:
    db.write_tensor("six", np.zeros((2, 3), dtype=np.float32), 64)
    with pytest.raises(ShapeError, match=r"table six holds 6 elements, shape \[2, 4\] needs 8"):
        db.read_tensor("six", 2, (2, 4), np.float32)
    with pytest.raises(ShapeError, match=r"table six holds 6 elements, shape \[100000, 100000\] needs 10000000000"):
        db.read_tensor("six", 2, (100_000, 100_000), np.float32)


def test_uint64_is_refused(db: PostgresDatabase) -> None:
    with pytest.raises(ModelError, match="uint64 is not supported on PostgreSQL"):
        db.write_tensor("unsigned", np.zeros(3, dtype=np.uint64), 64)
    assert not db.table_exists("unsigned")


def test_postgres_errors_come_out_as_psycopg_errors(db: PostgresDatabase) -> None:
    with pytest.raises(psycopg.errors.UndefinedTable):
        db.read_tensor("no such table", 1, (1,), np.float32)
    with pytest.raises(psycopg.errors.SyntaxError):
        db.execute("SELEC 1")


def test_execute_and_fetchall_bind_parameters(db: PostgresDatabase) -> None:
    assert db.fetchall("SELECT %s::int + 1, %s::text", [41, "a'b"]) == [(42, "a'b")]
    assert db.execute("SELECT 1; SELECT 2").fetchall() == [(2,)]  # several statements without parameters


def test_set_symbols_are_session_settings(db: PostgresDatabase, server: PostgresServer) -> None:
    db.set_symbols({"s0": 7, "s1": np.int64(12)})
    assert db.fetchall("SELECT current_setting('onnx2sql.s0'), current_setting('onnx2sql.s1')::int * 2") == [("7", 24)]
    db.set_symbols({"s0": 8})
    db.set_symbols({})
    assert db.fetchall("SELECT current_setting('onnx2sql.s0')") == [("8",)]
    with PostgresDatabase.connect(server.url) as other:
        assert other.fetchall("SELECT current_setting('onnx2sql.s0', true)") == [(None,)]


def test_drop_temporaries_keeps_permanent_tables(db: PostgresDatabase) -> None:
    for name in ["t b", "t a"]:
        db.write_tensor(name, np.zeros(2, dtype=np.float32), 64, temporary=True)
    db.write_tensor("kept", np.zeros(2, dtype=np.float32), 64)
    assert db.temporary_tables() == ["t a", "t b"]
    assert not db.table_exists("t a") and db.table_exists("kept")
    db.drop_temporaries()
    assert db.temporary_tables() == []
    assert db.table_exists("kept")
    db.drop_temporaries()  # nothing left to drop


def test_an_unreachable_server_is_an_input_error_without_the_password() -> None:
    with pytest.raises(InputError, match=r"cannot connect to PostgreSQL at 127\.0\.0\.1:1 \(database db\)") as error:
        PostgresDatabase.connect("postgresql://someone:secret-word@127.0.0.1:1/db")
    assert "secret-word" not in str(error.value)
    with pytest.raises(InputError, match="not a PostgreSQL URL") as error:
        PostgresDatabase.connect("postgresql://someone:secret-word@[::1/db")
    assert "secret-word" not in str(error.value)


def test_a_second_server_object_shares_the_running_server(server: PostgresServer) -> None:
    with PostgresServer(server.data_dir) as again:
        assert again.url == server.url
    with PostgresDatabase.connect(server.url) as database:  # still running
        assert database.fetchall("SELECT 1") == [(1,)]


def test_a_stopped_server_refuses_connections(tmp_path: Path) -> None:
    with PostgresServer(tmp_path / "data") as srv:
        url = srv.url
        with PostgresDatabase.connect(url) as database:
            assert database.fetchall("SELECT 1") == [(1,)]
    srv.stop()  # a second stop does nothing
    with pytest.raises(InputError, match="cannot connect"):
        PostgresDatabase.connect(url)
