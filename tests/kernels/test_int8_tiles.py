"""int8 tiles: the quantizer (storage/quantize.py) and onnx2sql_tile_matvec_q8 against numpy.

The kernel multiplies int8 rows (a float32 scale per 32 values) with float32 x. Its reference is
numpy's float64 product of the dequantized weights with x; the tolerance is the fp32 kernels' one,
1e-5 of the sum of |w[i] * x[i]|. Every numeric test runs with the SIMD and the portable code
(the `con` fixture of test_kernels.py).
"""
from __future__ import annotations

import struct

import duckdb
import numpy as np
import pytest

from onnx2sql.storage.quantize import GROUP, dequantize_rows, encode_rows, quantize_rows, row_bytes
from test_kernels import SIZES, assert_close, con, error_of, extension, rng  # noqa: F401 - fixtures

ROWS = [1, 5, 64]


def matvec_q8(con: duckdb.DuckDBPyConnection, blob: bytes, x: np.ndarray) -> list[float] | None:
    return con.execute("SELECT onnx2sql_tile_matvec_q8(?::BLOB, ?::FLOAT[])", [blob, x.tolist()]).fetchone()[0]


def test_the_documented_row_layout_by_hand(con: duckdb.DuckDBPyConnection) -> None:
    """One row of 3 weights: its scale 0.5, then int8 values 2, -1, 4, so w = [1, -0.5, 2]."""
    blob = struct.pack("<f", 0.5) + struct.pack("<3b", 2, -1, 4)
    assert matvec_q8(con, blob, np.array([1, 2, 3], np.float32)) == [6.0]


def test_groups_have_their_own_scales(con: duckdb.DuckDBPyConnection) -> None:
    """k = 40: a whole group of 32 (scale 1) and a partial group of 8 (scale 2), all q = 1."""
    blob = struct.pack("<2f", 1.0, 2.0) + bytes([1] * 40)
    assert matvec_q8(con, blob, np.ones(40, np.float32)) == [32 * 1.0 + 8 * 2.0]


@pytest.mark.parametrize("k", SIZES + [32, 64, 2048])
@pytest.mark.parametrize("rows", ROWS)
def test_tile_matvec_q8_matches_the_dequantized_product(con: duckdb.DuckDBPyConnection, k: int,
                                                        rows: int) -> None:
    g = rng(k * 100 + rows)
    tile = g.standard_normal((rows, k), dtype=np.float32)
    x = g.standard_normal(k, dtype=np.float32)
    blob = encode_rows(tile).tobytes()
    assert len(blob) == rows * row_bytes(k)
    got = np.array(matvec_q8(con, blob, x), dtype=np.float32)
    assert_close(got, dequantize_rows(*quantize_rows(tile)), x)


def test_tile_matvec_q8_over_a_table_of_tiles(con: duckdb.DuckDBPyConnection) -> None:
    """Prefill shape: 100 rows of x joined with 3 tiles of a 150 x 576 matrix, the last tile short."""
    g = rng(11)
    weight = g.standard_normal((150, 576), dtype=np.float32)
    xs = g.standard_normal((100, 576), dtype=np.float32)
    encoded = encode_rows(weight)
    con.execute("CREATE TABLE w (c INTEGER, m BLOB)")
    con.executemany("INSERT INTO w VALUES (?, ?)", [[c, encoded[c * 64:(c + 1) * 64].tobytes()] for c in range(3)])
    con.execute("CREATE TABLE xs (i INTEGER, x FLOAT[])")
    con.executemany("INSERT INTO xs VALUES (?, ?)", [[i, x.tolist()] for i, x in enumerate(xs)])
    rows = con.execute("SELECT i, list(y ORDER BY c) FROM (SELECT i, c, onnx2sql_tile_matvec_q8(m, x) AS y "
                       "FROM xs, w) GROUP BY i ORDER BY i").fetchall()
    reference = dequantize_rows(*quantize_rows(weight))
    assert len(rows) == 100
    for i, parts in rows:
        assert_close(np.concatenate([np.array(p, dtype=np.float32) for p in parts]), reference, xs[i])


def test_tile_matvec_q8_null_empty_and_errors(con: duckdb.DuckDBPyConnection) -> None:
    assert con.execute("SELECT onnx2sql_tile_matvec_q8(NULL, [1]::FLOAT[]), onnx2sql_tile_matvec_q8(''::BLOB, NULL), "
                       "onnx2sql_tile_matvec_q8(''::BLOB, []::FLOAT[])").fetchone() == (None, None, [])
    seven = struct.pack("<f", 1.0) + bytes(3)  # one row of k = 3 is 7 bytes
    message = error_of(con, "SELECT onnx2sql_tile_matvec_q8(?::BLOB, [1, 2]::FLOAT[])", [seven])
    assert ("onnx2sql_tile_matvec_q8: tile of 7 bytes is not a whole number of rows of len(x) = 2 int8 rows"
            in message)
    message = error_of(con, "SELECT onnx2sql_tile_matvec_q8(?::BLOB, [1, NULL, 2]::FLOAT[])", [seven])
    assert "onnx2sql_tile_matvec_q8: x holds a NULL element" in message


# ------------------------------------------------------------------ the quantizer

def test_quantization_error_is_at_most_half_a_step() -> None:
    g = rng(5)
    w = g.standard_normal((7, 100), dtype=np.float32) * np.float32(3)
    q, scales = quantize_rows(w)
    assert q.dtype == np.int8 and scales.shape == (7, 4)
    assert int(np.abs(q.astype(np.int32)).max()) <= 127
    step = np.repeat(scales, GROUP, axis=1)[:, :100]
    assert np.all(np.abs(dequantize_rows(q, scales) - w) <= step / 2 * (1 + 1e-6))
    # Each group's largest weight is exact: it is +-127 steps.
    for r in range(7):
        for g0 in range(0, 100, GROUP):
            block = w[r, g0:g0 + GROUP]
            top = int(np.argmax(np.abs(block)))
            assert abs(int(q[r, g0 + top])) == 127


def test_an_all_zero_group_stays_zero() -> None:
    w = np.zeros((2, 40), np.float32)
    w[1, 35] = -4.0
    q, scales = quantize_rows(w)
    assert scales[0].tolist() == [0.0, 0.0] and scales[1, 0] == 0.0
    assert np.array_equal(dequantize_rows(q, scales), w)
