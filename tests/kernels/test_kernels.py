"""The native kernels extension: onnx2sql_tile_matvec and onnx2sql_dot against numpy, NULLs, errors, loading.

Tolerance: the kernels accumulate in float32 (SIMD partial sums), numpy is the float64 reference of the
same float32 inputs; a result may differ by 1e-5 of the sum of |a[i] * b[i]| (plus 1e-30 for all-zero sums).
Every numeric test runs with the SIMD code this CPU picks and with the portable C code.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest

import onnx2sql
from decoder_feeds import feeds as decoder_feeds
from onnx2sql.errors import KernelsUnavailable, Onnx2SqlError
from onnx2sql.runtime import kernels
from onnx2sql.runtime.kernels import KERNEL_CONFIG, build_extension, extension_path, load_kernels

REPO = Path(__file__).resolve().parents[2]
SIZES = [1, 3, 7, 8, 9, 64, 576, 1000]
REL_TOL = 1e-5


@pytest.fixture(scope="session")
def extension() -> Path:
    return build_extension()


@pytest.fixture(params=["native", "portable"])
def con(request: pytest.FixtureRequest, extension: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh in-memory DuckDB with the kernels; the implementation is picked as the extension loads."""
    if request.param == "portable":
        monkeypatch.setenv("ONNX2SQL_KERNELS_PORTABLE", "1")
    else:
        monkeypatch.delenv("ONNX2SQL_KERNELS_PORTABLE", raising=False)
    connection = duckdb.connect(config=KERNEL_CONFIG)
    load_kernels(connection)
    isa = connection.execute("SELECT onnx2sql_kernels_isa()").fetchone()[0]
    assert isa == "portable" if request.param == "portable" else isa in ("avx2+fma", "portable")
    yield connection
    connection.close()


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def assert_close(got: np.ndarray, tile: np.ndarray, x: np.ndarray) -> None:
    """got[r] == tile[r] @ x within REL_TOL of sum_i |tile[r, i] * x[i]|."""
    products = tile.astype(np.float64) * x.astype(np.float64)
    reference = products.sum(axis=-1)
    bound = REL_TOL * np.abs(products).sum(axis=-1) + 1e-30
    assert got.shape == reference.shape
    assert np.all(np.abs(got.astype(np.float64) - reference) <= bound), (got, reference)


def error_of(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> str:
    with pytest.raises(duckdb.Error) as info:
        con.execute(sql, params or []).fetchall()
    return str(info.value)


# ------------------------------------------------------------------ onnx2sql_dot

@pytest.mark.parametrize("n", SIZES)
def test_dot_matches_numpy(con: duckdb.DuckDBPyConnection, n: int) -> None:
    a, b = rng(n).standard_normal((2, n), dtype=np.float32)
    got = con.execute("SELECT onnx2sql_dot(?::FLOAT[], ?::FLOAT[])", [a.tolist(), b.tolist()]).fetchone()[0]
    assert_close(np.array(got, dtype=np.float32), a, b)


def test_dot_over_table_rows_of_varying_lengths(con: duckdb.DuckDBPyConnection) -> None:
    """Rows of many lengths, filtered so that list offsets are not contiguous."""
    g = rng(1)
    rows = [g.standard_normal((2, int(n)), dtype=np.float32) for n in g.integers(0, 70, size=3000)]
    con.execute("CREATE TABLE pairs (id INTEGER, a FLOAT[], b FLOAT[])")
    con.executemany("INSERT INTO pairs VALUES (?, ?, ?)",
                    [[i, a.tolist(), b.tolist()] for i, (a, b) in enumerate(rows)])
    got = con.execute("SELECT id, onnx2sql_dot(a, b) FROM pairs WHERE id % 3 <> 1 ORDER BY id").fetchall()
    assert [i for i, _ in got] == [i for i in range(len(rows)) if i % 3 != 1]
    for i, value in got:
        a, b = rows[i]
        assert_close(np.array(value, dtype=np.float32), a, b)


def test_dot_null_and_empty(con: duckdb.DuckDBPyConnection) -> None:
    got = con.execute("SELECT onnx2sql_dot(NULL, [1]::FLOAT[]), onnx2sql_dot([1]::FLOAT[], NULL), "
                      "onnx2sql_dot([]::FLOAT[], []::FLOAT[])").fetchone()
    assert got == (None, None, 0.0)
    con.execute("CREATE TABLE t AS SELECT * FROM (VALUES ([1, 2]::FLOAT[], [3, 4]::FLOAT[]), "
                "(NULL, [1, 1]::FLOAT[]), ([2, 2]::FLOAT[], NULL), ([1]::FLOAT[], [5]::FLOAT[])) v(a, b)")
    assert [r[0] for r in con.execute("SELECT onnx2sql_dot(a, b) FROM t").fetchall()] == [11.0, None, None, 5.0]


def test_dot_errors(con: duckdb.DuckDBPyConnection) -> None:
    message = error_of(con, "SELECT onnx2sql_dot([1, 2, 3]::FLOAT[], [1, 2]::FLOAT[])")
    assert "onnx2sql_dot: list lengths differ: len(a) = 3, len(b) = 2" in message
    message = error_of(con, "SELECT onnx2sql_dot([1, NULL]::FLOAT[], [1, 2]::FLOAT[])")
    assert "onnx2sql_dot: a list holds a NULL element" in message


# ------------------------------------------------------------------ onnx2sql_tile_matvec

def matvec(con: duckdb.DuckDBPyConnection, tile: np.ndarray, x: np.ndarray) -> list[float] | None:
    blob = np.ascontiguousarray(tile, dtype="<f4").tobytes()
    return con.execute("SELECT onnx2sql_tile_matvec(?::BLOB, ?::FLOAT[])", [blob, x.tolist()]).fetchone()[0]


@pytest.mark.parametrize("k", SIZES)
@pytest.mark.parametrize("rows", [1, 5, 64])
def test_tile_matvec_matches_numpy(con: duckdb.DuckDBPyConnection, k: int, rows: int) -> None:
    g = rng(k * 100 + rows)
    tile = g.standard_normal((rows, k), dtype=np.float32)
    x = g.standard_normal(k, dtype=np.float32)
    assert_close(np.array(matvec(con, tile, x), dtype=np.float32), tile, x)


def test_tile_matvec_many_rows_joined_with_tiles(con: duckdb.DuckDBPyConnection) -> None:
    """Prefill shape: 300 x rows joined with 5 tiles of 1..5 rows, more than one DuckDB vector of output."""
    g = rng(7)
    k = 9
    xs = g.standard_normal((300, k), dtype=np.float32)
    tiles = [g.standard_normal((t + 1, k), dtype=np.float32) for t in range(5)]
    con.execute("CREATE TABLE xs (i INTEGER, x FLOAT[])")
    con.executemany("INSERT INTO xs VALUES (?, ?)", [[i, x.tolist()] for i, x in enumerate(xs)])
    con.execute("CREATE TABLE tiles (t INTEGER, w BLOB)")
    con.executemany("INSERT INTO tiles VALUES (?, ?)", [[t, w.astype('<f4').tobytes()] for t, w in enumerate(tiles)])
    got = con.execute("SELECT i, t, onnx2sql_tile_matvec(w, x) FROM xs, tiles ORDER BY i, t").fetchall()
    assert len(got) == 1500
    for i, t, y in got:
        assert_close(np.array(y, dtype=np.float32), tiles[t], xs[i])


def test_tile_matvec_one_x_many_tiles(con: duckdb.DuckDBPyConnection) -> None:
    """Decode shape: one x (a constant vector) against a table of 64-row tiles of a 2048 x 576 matrix."""
    g = rng(3)
    weight = g.standard_normal((2048, 576), dtype=np.float32)
    x = g.standard_normal(576, dtype=np.float32)
    con.execute("CREATE TABLE w (c INTEGER, tile BLOB)")
    con.executemany("INSERT INTO w VALUES (?, ?)",
                    [[c, weight[c * 64:(c + 1) * 64].astype('<f4').tobytes()] for c in range(32)])
    rows = con.execute("SELECT onnx2sql_tile_matvec(tile, ?::FLOAT[]) FROM w ORDER BY c", [x.tolist()]).fetchall()
    assert_close(np.concatenate([np.array(r[0], dtype=np.float32) for r in rows]), weight, x)


def test_tile_matvec_null_and_empty(con: duckdb.DuckDBPyConnection) -> None:
    got = con.execute("SELECT onnx2sql_tile_matvec(NULL, [1]::FLOAT[]), "
                      "onnx2sql_tile_matvec('\\x00\\x00\\x80?'::BLOB, NULL), "
                      "onnx2sql_tile_matvec(''::BLOB, []::FLOAT[]), "
                      "onnx2sql_tile_matvec(''::BLOB, [1, 2]::FLOAT[])").fetchone()
    assert got == (None, None, [], [])
    one = np.float32(1.0).tobytes()
    con.execute("CREATE TABLE t (w BLOB, x FLOAT[])")
    con.executemany("INSERT INTO t VALUES (?, ?)", [[one, [2.0]], [None, [3.0]], [one * 2, None], [one * 2, [4.0]]])
    assert [r[0] for r in con.execute("SELECT onnx2sql_tile_matvec(w, x) FROM t").fetchall()] == [
        [2.0], None, None, [4.0, 4.0]]


def test_tile_matvec_errors(con: duckdb.DuckDBPyConnection) -> None:
    twelve_bytes = np.zeros(3, dtype="<f4").tobytes()
    message = error_of(con, "SELECT onnx2sql_tile_matvec(?::BLOB, [1, 2]::FLOAT[])", [twelve_bytes])
    assert "onnx2sql_tile_matvec: tile of 12 bytes is not a whole number of rows of len(x) = 2" in message
    message = error_of(con, "SELECT onnx2sql_tile_matvec('abc'::BLOB, [1]::FLOAT[])")
    assert "tile of 3 bytes" in message
    message = error_of(con, "SELECT onnx2sql_tile_matvec(?::BLOB, []::FLOAT[])", [twelve_bytes])
    assert "onnx2sql_tile_matvec: x is empty but the tile has 12 bytes" in message
    message = error_of(con, "SELECT onnx2sql_tile_matvec(?::BLOB, [1, NULL, 2]::FLOAT[])", [twelve_bytes])
    assert "onnx2sql_tile_matvec: x holds a NULL element" in message


# ------------------------------------------------------------------ loading

def test_load_without_unsigned_extensions_is_refused(extension: Path) -> None:
    con = duckdb.connect()
    with pytest.raises(KernelsUnavailable) as info:
        load_kernels(con)
    assert isinstance(info.value, Onnx2SqlError)
    assert str(extension_path()) in str(info.value)
    assert "make kernels" in str(info.value)
    assert "allow_unsigned_extensions" in str(info.value)


def test_load_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "onnx2sql_kernels.duckdb_extension"
    monkeypatch.setattr(kernels, "extension_path", lambda: missing)
    with pytest.raises(KernelsUnavailable) as info:
        load_kernels(duckdb.connect(config=KERNEL_CONFIG))
    assert str(missing) in str(info.value)
    assert "make kernels" in str(info.value)


def test_build_is_idempotent(extension: Path) -> None:
    before = extension.stat().st_mtime_ns
    assert build_extension() == extension
    assert extension.stat().st_mtime_ns == before


def test_extension_is_not_committed(extension: Path) -> None:
    """The extension is a build product: ignored by git, never tracked."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files", "*.duckdb_extension", "build"],
                             capture_output=True, text=True, check=True).stdout
    assert tracked.strip() == ""
    ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", str(extension)])
    assert ignored.returncode == 0


def test_load_refused_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file DuckDB does not take as an extension: the message names it and how to rebuild."""
    junk = tmp_path / "onnx2sql_kernels.duckdb_extension"
    junk.write_bytes(b"not an extension" * 64)
    monkeypatch.setattr(kernels, "extension_path", lambda: junk)
    with pytest.raises(KernelsUnavailable) as info:
        load_kernels(duckdb.connect(config=KERNEL_CONFIG))
    assert str(junk) in str(info.value)
    assert "make kernels" in str(info.value)


# ---------------------------------------------------------------- kernel modes without the extension

def _without_kernels(tmp_path: Path) -> dict[str, str]:
    """An environment where the extension is not built and cannot be: no C compiler."""
    import os

    return {**os.environ, "ONNX2SQL_KERNELS_BUILD_DIR": str(tmp_path / "empty"), "CC": str(tmp_path / "no-cc")}


def test_auto_falls_back_to_sql_with_one_line_saying_why(tmp_path: Path, tiny_llama3_dir: Path) -> None:
    out = tmp_path / "compiled"
    result = subprocess.run([sys.executable, "-m", "onnx2sql", "compile", str(tiny_llama3_dir / "model.onnx"),
                             "-o", str(out), "-q", "--kernels", "auto"],
                            capture_output=True, text=True, env=_without_kernels(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("onnx2sql: native kernels unavailable (")
    assert "no-cc" in lines[0] and lines[0].endswith("; running pure SQL")
    assert "-- Kernels: sql (pure SQL)." in (out / "program.sql").read_text()


def test_native_without_the_extension_is_a_clear_error(tmp_path: Path, tiny_llama3_dir: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "onnx2sql", "compile", str(tiny_llama3_dir / "model.onnx"),
                             "-o", str(tmp_path / "compiled"), "-q", "--kernels", "native"],
                            capture_output=True, text=True, env=_without_kernels(tmp_path), timeout=300)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "no-cc" in result.stderr and "make kernels" in result.stderr
    assert not (tmp_path / "compiled").exists()


def test_a_native_database_where_the_extension_cannot_load_names_the_fix(tmp_path: Path,
                                                                        tiny_llama3_dir: Path) -> None:
    out = tmp_path / "compiled"
    onnx2sql.compile(tiny_llama3_dir / "model.onnx", out, kernels="native")
    assert "-- Kernels: native" in (out / "program.sql").read_text()
    assert "(c INTEGER, m BLOB);" in (out / "schema.sql").read_text()
    feeds = tmp_path / "feeds.npz"
    np.savez(feeds, **decoder_feeds(tiny_llama3_dir / "model.onnx", np.array([[3, 4]])))
    result = subprocess.run([sys.executable, "-m", "onnx2sql", "run", str(out), "--inputs", str(feeds),
                             "-o", str(tmp_path / "out.npz")],
                            capture_output=True, text=True, env=_without_kernels(tmp_path), timeout=300)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "compiled with --kernels native" in result.stderr and "make kernels" in result.stderr
    assert "--kernels sql" in result.stderr


def test_a_requested_mode_recompiles_the_model_folder_database(tmp_path: Path, tiny_llama3_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """generate with a mode (the flag, or ONNX2SQL_KERNELS) compiles the folder's own database again in
    that mode; with none asked, the database's own mode stays."""
    import shutil

    from onnx2sql.runtime.generate import Generator

    folder = tmp_path / "model"
    shutil.copytree(tiny_llama3_dir, folder, ignore=shutil.ignore_patterns("sql", "hf"))
    monkeypatch.delenv("ONNX2SQL_KERNELS", raising=False)
    with Generator(folder, progress=False, kernels="native") as gen:
        native = gen.generate_ids([5, 9, 2], 3).token_ids
        assert gen.program.kernels == "native"
    monkeypatch.setenv("ONNX2SQL_KERNELS", "sql")
    with Generator(folder, progress=False) as gen:
        assert gen.program.kernels == "sql"
        assert gen.generate_ids([5, 9, 2], 3).token_ids == native
    monkeypatch.delenv("ONNX2SQL_KERNELS")
    with Generator(folder, progress=False) as gen:
        assert gen.program.kernels == "sql"
