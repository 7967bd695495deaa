"""The installed `onnx2sql` command: help, compile, run, and clear failures."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh
import onnxruntime as ort
import pytest

SUBCOMMANDS = ["export", "compile", "run", "generate", "bench"]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onnx2sql", *args], capture_output=True, text=True, cwd=cwd)


def test_help_lists_every_subcommand() -> None:
    result = cli("--help")
    assert result.returncode == 0
    for name in SUBCOMMANDS:
        assert name in result.stdout


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_has_help(name: str) -> None:
    result = cli(name, "--help")
    assert result.returncode == 0, result.stderr
    assert f"usage: onnx2sql {name}" in result.stdout


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("onnx2sql")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "compile" in result.stdout


def _softmax_model(path: Path) -> Path:
    w = np.random.default_rng(1).standard_normal((6, 5)).astype(np.float32)
    nodes = [oh.make_node("MatMul", ["x", "w"], ["h"]), oh.make_node("Tanh", ["h"], ["y"])]
    graph = oh.make_graph(nodes, "g", [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 6])],
                          [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
                          initializer=[onnx.numpy_helper.from_array(w, "w")])
    onnx.save(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18)]), path)
    return path


def test_compile_then_run_equals_onnxruntime(tmp_path: Path) -> None:
    model = _softmax_model(tmp_path / "m.onnx")
    x = np.random.default_rng(2).standard_normal((3, 6)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    want = ort.InferenceSession(str(model)).run(None, {"x": x})[0]

    result = cli("compile", str(model), "-o", str(tmp_path / "out"), "-q")
    assert result.returncode == 0, result.stderr
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"model.duckdb", "model.duckdb.sha256.json",
                                                          "program.sql", "schema.sql"}
    for source in [tmp_path / "out", model]:  # a compiled folder, or the .onnx compiled on the fly
        result = cli("run", str(source), "--inputs", str(tmp_path / "in.npz"), "-o", str(tmp_path / "o.npz"))
        assert result.returncode == 0, result.stderr
        np.testing.assert_allclose(np.load(tmp_path / "o.npz")["y"], want, rtol=1e-5, atol=1e-6)


def test_run_with_missing_inputs_file_fails_clearly(tmp_path: Path) -> None:
    model = _softmax_model(tmp_path / "m.onnx")
    result = cli("run", str(model), "--inputs", str(tmp_path / "none.npz"), "-o", str(tmp_path / "o.npz"))
    assert result.returncode == 1
    assert "inputs file" in result.stderr and "none.npz" in result.stderr and "does not exist" in result.stderr


def test_run_on_a_folder_that_is_not_compiled(tmp_path: Path) -> None:
    np.savez(tmp_path / "in.npz", x=np.zeros(1))
    result = cli("run", str(tmp_path), "--inputs", str(tmp_path / "in.npz"), "-o", str(tmp_path / "o.npz"))
    assert result.returncode == 1
    assert "is not a compiled model folder" in result.stderr


def test_run_tiny_llama3_equals_onnxruntime(tiny_llama3_dir: Path, tmp_path: Path) -> None:
    """`onnx2sql run` on an Optimum export: every output (logits, present.*) within 1e-4."""
    model = tiny_llama3_dir / "model.onnx"
    feeds = {"input_ids": np.array([[315, 40, 41, 42, 43]], dtype=np.int64),
             "attention_mask": np.ones((1, 5), dtype=np.int64),
             "position_ids": np.arange(5, dtype=np.int64)[None]}
    sess = ort.InferenceSession(str(model))
    for inp in sess.get_inputs():
        if inp.name.startswith("past_key_values."):
            feeds[inp.name] = np.zeros((1, inp.shape[1], 0, inp.shape[3]), dtype=np.float32)
    np.savez(tmp_path / "in.npz", **feeds)
    result = cli("run", str(model), "--inputs", str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npz"))
    assert result.returncode == 0, result.stderr
    got = np.load(tmp_path / "out.npz")
    names = [o.name for o in sess.get_outputs()]
    for name, want in zip(names, sess.run(names, feeds)):
        np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.sqlite
@pytest.mark.parametrize("db", [None, "lite.sqlite"])
def test_run_on_sqlite_equals_onnxruntime(tmp_path: Path, db: str | None) -> None:
    """`onnx2sql run --backend sqlite [--db FILE]`: the MatMul-and-Tanh model in SQLite, in memory or
    in temporary tables of a database file."""
    model = _softmax_model(tmp_path / "m.onnx")
    x = np.random.default_rng(0).standard_normal((2, 6)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    want = ort.InferenceSession(str(model)).run(None, {"x": x})[0]
    flags = ["--db", str(tmp_path / db)] if db else []
    result = cli("run", str(model), "--inputs", str(tmp_path / "in.npz"), "-o", str(tmp_path / "o.npz"),
                 "--backend", "sqlite", *flags)
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(np.load(tmp_path / "o.npz")["y"], want, rtol=1e-5, atol=1e-6)


def test_run_on_postgres_equals_onnxruntime(tmp_path: Path, postgres_url: str) -> None:
    """`onnx2sql run --backend postgres --db URL`: the MatMul-and-Tanh model in a real PostgreSQL server."""
    model = _softmax_model(tmp_path / "m.onnx")
    x = np.random.default_rng(0).standard_normal((2, 6)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    want = ort.InferenceSession(str(model)).run(None, {"x": x})[0]
    result = cli("run", str(model), "--inputs", str(tmp_path / "in.npz"), "-o", str(tmp_path / "o.npz"),
                 "--backend", "postgres", "--db", postgres_url)
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(np.load(tmp_path / "o.npz")["y"], want, rtol=1e-5, atol=1e-6)


@pytest.mark.spark
def test_run_on_spark_equals_onnxruntime(tmp_path: Path) -> None:
    """`onnx2sql run --backend spark`: the MatMul-and-Tanh model in a local Spark of its own."""
    model = _softmax_model(tmp_path / "m.onnx")
    x = np.random.default_rng(0).standard_normal((2, 6)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    want = ort.InferenceSession(str(model)).run(None, {"x": x})[0]
    result = cli("run", str(model), "--inputs", str(tmp_path / "in.npz"), "-o", str(tmp_path / "o.npz"),
                 "--backend", "spark", "--spark-master", "local[1]")
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(np.load(tmp_path / "o.npz")["y"], want, rtol=1e-5, atol=1e-6)


@pytest.mark.spark
def test_a_spark_master_that_cannot_be_reached_is_named(tmp_path: Path) -> None:
    model = _softmax_model(tmp_path / "m.onnx")
    np.savez(tmp_path / "in.npz", x=np.zeros((2, 6), dtype=np.float32))
    result = cli("run", str(model), "--inputs", str(tmp_path / "in.npz"), "-o", str(tmp_path / "o.npz"),
                 "--backend", "spark", "--spark-master", "nowhere://x")
    assert result.returncode == 1
    assert "cannot start Spark on --spark-master 'nowhere://x'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o.npz").exists()


@pytest.mark.parametrize(("flags", "message"), [
    (["--spark-master", "local[1]"], "--spark-master is for --backend spark, not duckdb"),
    (["--backend", "postgres"], "backend postgres needs a database: pass db= (--db) a postgresql:// URL"),
    (["--backend", "postgres", "--db", "postgresql://u@127.0.0.1:1/x", "--kernels", "native"],
     "backend postgres multiplies through pgvector or in SQL"),
    (["--db", "postgresql://u@127.0.0.1:1/x"], "db= (--db) names a database of another backend"),
    (["--backend", "postgres", "--db", "postgresql://u@127.0.0.1:1/x"], "cannot connect to PostgreSQL at 127.0.0.1:1"),
])
def test_run_backend_flags_are_checked(tmp_path: Path, flags: list[str], message: str) -> None:
    model = _softmax_model(tmp_path / "m.onnx")
    np.savez(tmp_path / "in.npz", x=np.zeros((2, 6), dtype=np.float32))
    result = cli("run", str(model), "--inputs", str(tmp_path / "in.npz"), "-o", str(tmp_path / "o.npz"), *flags)
    assert result.returncode in (1, 2)
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o.npz").exists()
