"""The SQLite extension over the kernels (kernels/sqlite_binding.c): onnx2sql_vector reads a JSON
array as float32, onnx2sql_dot matches numpy (the tolerance of test_kernels.py: 1e-5 of the sum
of |a[i] * b[i]|), NULLs give NULL, bad input is an error naming what is wrong; `auto` falls back
to pure SQL with one line when the extension cannot be built. Both the SIMD and the portable code."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from onnx2sql.errors import KernelsUnavailable
from onnx2sql.runtime.sqlite import SqliteDatabase, build_sqlite_kernels, load_sqlite_kernels, sqlite_kernels
from test_kernels import REL_TOL, SIZES, _without_kernels, rng

pytestmark = pytest.mark.sqlite


@pytest.fixture(params=["native", "portable"])
def lite(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    if request.param == "portable":
        monkeypatch.setenv("ONNX2SQL_KERNELS_PORTABLE", "1")
    else:
        monkeypatch.delenv("ONNX2SQL_KERNELS_PORTABLE", raising=False)
    build_sqlite_kernels()
    with SqliteDatabase.connect() as db:
        load_sqlite_kernels(db)
        isa = db.fetchall("SELECT onnx2sql_kernels_isa()")[0][0]
        assert isa == "portable" if request.param == "portable" else isa in ("avx2+fma", "portable")
        yield db


def vector_text(x: np.ndarray) -> str:
    return json.dumps(x.astype(np.float64).tolist())


@pytest.mark.parametrize("n", SIZES)
def test_dot_of_vectors_matches_numpy(lite: SqliteDatabase, n: int) -> None:
    a, b = rng(n).standard_normal((2, n)).astype(np.float32)
    got = lite.fetchall("SELECT onnx2sql_dot(onnx2sql_vector(?), onnx2sql_vector(?))", [vector_text(a), vector_text(b)])
    products = a.astype(np.float64) * b.astype(np.float64)
    assert abs(got[0][0] - products.sum()) <= REL_TOL * np.abs(products).sum() + 1e-30


def test_dot_takes_json_text_and_blobs_alike(lite: SqliteDatabase) -> None:
    a, b = rng(3).standard_normal((2, 77)).astype(np.float32)
    rows = lite.fetchall("SELECT onnx2sql_dot(?, ?), onnx2sql_dot(onnx2sql_vector(?), ?), onnx2sql_dot(?, onnx2sql_vector(?))",
                         [vector_text(a), vector_text(b)] * 3)[0]
    products = a.astype(np.float64) * b.astype(np.float64)
    for got in rows:
        assert abs(got - products.sum()) <= REL_TOL * np.abs(products).sum() + 1e-30


def test_vector_is_little_endian_float32(lite: SqliteDatabase) -> None:
    blob = lite.fetchall("SELECT onnx2sql_vector('[1.5, -2, 9e999, null, 0.1]')")[0][0]
    got = np.frombuffer(blob, dtype="<f4")
    np.testing.assert_array_equal(got[:3], np.array([1.5, -2, np.inf], dtype=np.float32))
    assert np.isnan(got[3]) and got[4] == np.float32(0.1)


def test_null_and_empty(lite: SqliteDatabase) -> None:
    assert lite.fetchall("SELECT onnx2sql_vector(NULL), onnx2sql_dot(NULL, onnx2sql_vector('[1]')), "
                         "onnx2sql_dot(onnx2sql_vector('[]'), onnx2sql_vector(' [ ] '))") == [(None, None, 0.0)]


@pytest.mark.parametrize(("sql", "message"), [
    ("onnx2sql_dot(onnx2sql_vector('[1, 2]'), onnx2sql_vector('[1]'))", "onnx2sql_dot: the vectors differ in length"),
    ("onnx2sql_dot(1.5, onnx2sql_vector('[1]'))", "onnx2sql_dot: a vector must be a float32 BLOB or the text of"),
    ("onnx2sql_dot(x'000000', onnx2sql_vector('[1]'))", "onnx2sql_dot: a BLOB vector is not a whole number of float32"),
    ("onnx2sql_dot('[1, ]', '[1]')", "onnx2sql_dot: the array holds something other than numbers"),
    ("onnx2sql_vector('{\"a\": 1}')", "onnx2sql_vector: the list is not a JSON array"),
    ("onnx2sql_vector('[1, \"x\"]')", "onnx2sql_vector: the array holds something other than numbers"),
    ("onnx2sql_vector('[1 2]')", "onnx2sql_vector: the array is not well formed"),
])
def test_errors_name_what_is_wrong(lite: SqliteDatabase, sql: str, message: str) -> None:
    import apsw

    with pytest.raises(apsw.Error, match=message):
        lite.fetchall(f"SELECT {sql}")


def test_auto_falls_back_to_sql_with_one_line_saying_why(tmp_path: Path, tiny_llama3_dir: Path) -> None:
    db = tmp_path / "m.sqlite"
    result = subprocess.run([sys.executable, "-m", "onnx2sql", "compile", str(tiny_llama3_dir / "model.onnx"),
                             "--backend", "sqlite", "--db", str(db), "-q"],
                            capture_output=True, text=True, env=_without_kernels(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("onnx2sql: SQLite kernels unavailable (")
    assert "no-cc" in lines[0] and lines[0].endswith("; running pure SQL")
    assert result.stdout.strip() == f"{db} (kernels sql)"


def test_native_without_the_extension_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in _without_kernels(tmp_path).items():
        monkeypatch.setenv(name, value)
    with SqliteDatabase.connect() as db, pytest.raises(KernelsUnavailable, match="--kernels native: .*no-cc.*; or use --kernels sql"):
        sqlite_kernels(db, "native")
