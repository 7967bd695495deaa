"""--weights int8: matrix weights stored as int8 tiles (a float32 scale per 32 values) that the
native kernels multiply directly.

Two checks against onnxruntime:
- exactness of the scheme: onnxruntime runs a copy of the model whose MatMul weights are replaced
  by their dequantized int8 values; DuckDB's int8 program must match it like an fp32 program
  matches the original (1e-4), so the error is the quantization's alone;
- its cost on a real model: SmolLM2-135M's greedy tokens for stated prompts, and its logits
  within a stated bound of onnxruntime's fp32 logits.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnx2sql
from decoder_feeds import feeds, ort_outputs, presents_as_past
from onnx2sql.bench.engines import EngineOptions, OnnxRuntimeEngine
from onnx2sql.runtime.generate import Generator
from onnx2sql.storage.quantize import dequantize_rows, quantize_rows

# SmolLM2's logits under int8 weights differ from onnxruntime's fp32 logits by at most this much.
# Logits reach 30-40 in magnitude; the largest difference measured over 16 tokens of four prompts
# was 0.92.
SMOLLM2_LOGIT_BOUND = 1.5
# Prompts whose 12 greedy tokens are the same with int8 weights as with fp32 in onnxruntime.
SMOLLM2_PROMPTS = ["The capital of France is", "def fibonacci(n):"]
NEW_TOKENS = 12


def dequantized_copy(model_path: Path, out: Path) -> Path:
    """The model with every MatMul weight (a 2-D float initializer B) replaced by the values its int8
    tiles stand for: the rows of B's transpose quantized in groups of 32 along K."""
    model = onnx.load(str(model_path))
    initializers = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "MatMul" or node.input[1] not in initializers:
            continue
        weight = numpy_helper.to_array(initializers[node.input[1]])
        if weight.ndim != 2 or weight.dtype != np.float32:
            continue
        name = f"{node.input[1]}.int8_reference"
        if name not in initializers:
            reference = dequantize_rows(*quantize_rows(weight.T)).T
            initializers[name] = numpy_helper.from_array(np.ascontiguousarray(reference), name)
            model.graph.initializer.append(initializers[name])
        node.input[1] = name
    onnx.save(model, str(out))
    return out


def assert_close(got: dict[str, np.ndarray], want: dict[str, np.ndarray], tol: float) -> None:
    assert list(got) == list(want)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=tol, atol=tol, err_msg=name)


@pytest.fixture(scope="module")
def tiny_int8(tiny_llama3_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(int8 compiled folder, the dequantized reference model) of tiny-llama3."""
    tmp = tmp_path_factory.mktemp("int8")
    compiled = onnx2sql.compile(tiny_llama3_dir / "model.onnx", tmp / "compiled", kernels="native", weights="int8")
    return compiled, dequantized_copy(tiny_llama3_dir / "model.onnx", tmp / "reference.onnx")


def test_int8_program_equals_onnxruntime_on_the_dequantized_weights(tiny_int8: tuple[Path, Path],
                                                                    tiny_llama3_dir: Path) -> None:
    compiled, reference = tiny_int8
    ids = np.random.default_rng(3).integers(0, 320, size=(1, 9))
    prefill = feeds(reference, ids)
    want = ort_outputs(reference, prefill)
    assert_close(onnx2sql.run(compiled, prefill), want, 1e-4)
    step = feeds(reference, np.array([[7]]), np.ones((1, 10), np.int64), presents_as_past(want))
    assert_close(onnx2sql.run(compiled, step), ort_outputs(reference, step), 1e-4)
    # And it is not the fp32 program: the weights did change.
    original = ort_outputs(tiny_llama3_dir / "model.onnx", prefill)["logits"]
    assert np.abs(original - want["logits"]).max() > 1e-4


def test_int8_tiles_replace_the_fp32_ones(tiny_int8: tuple[Path, Path]) -> None:
    compiled, _ = tiny_int8
    program = (compiled / "program.sql").read_text()
    schema = (compiled / "schema.sql").read_text()
    assert "-- Weights: int8" in program and "onnx2sql_tile_matvec_q8(b.m, a.v)" in program
    assert "onnx2sql_tile_matvec(b.m" not in program
    assert "int8 after a float32 scale per 32" in schema and "float32" not in schema.replace("a float32 scale", "")


def test_int8_needs_the_native_kernels(tiny_llama3_dir: Path, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "onnx2sql", "compile", str(tiny_llama3_dir / "model.onnx"), "-o",
                             str(tmp_path / "out"), "-q", "--weights", "int8", "--kernels", "sql"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--weights int8 needs the native kernels" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_db_of_the_other_weight_format_is_refused(tiny_int8: tuple[Path, Path], tiny_llama3_dir: Path) -> None:
    compiled, _ = tiny_int8
    with pytest.raises(onnx2sql.InputError) as info:
        Generator(tiny_llama3_dir, db=compiled / "model.duckdb", kernels="native", weights="fp32", progress=False)
    assert "was compiled with --weights int8, not fp32" in str(info.value)
    with Generator(tiny_llama3_dir, db=compiled / "model.duckdb", kernels="native", progress=False) as gen:
        assert gen.program.weight_format == "int8"  # no --weights: the database's own


@pytest.fixture(scope="module")
def smollm2_int8(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Generator:
    db = tmp_path_factory.mktemp("smollm2-int8") / "model.duckdb"
    with Generator(smollm2_dir, db=db, kernels="native", weights="int8", progress=False) as gen:
        yield gen


@pytest.mark.parametrize("prompt", SMOLLM2_PROMPTS)
def test_smollm2_int8_greedy_tokens_and_logit_error(smollm2_int8: Generator, smollm2_dir: Path, prompt: str) -> None:
    ids = smollm2_int8.folder.encode(prompt)
    oracle = OnnxRuntimeEngine(smollm2_dir, EngineOptions())
    oracle.setup()
    want = oracle.generate(ids, NEW_TOKENS, lambda k: None).tokens
    logits: list[np.ndarray] = []
    got = smollm2_int8.generate_ids(ids, NEW_TOKENS, on_logits=logits.append)
    assert got.token_ids == want
    # onnxruntime's fp32 logits at every step, on the same tokens.
    sequence = np.array([ids + want[:-1]])
    fp32 = ort_outputs(smollm2_dir / "model.onnx", feeds(smollm2_dir / "model.onnx", sequence))["logits"][0]
    errors = [float(np.abs(step - fp32[len(ids) - 1 + k]).max()) for k, step in enumerate(logits)]
    assert max(errors) <= SMOLLM2_LOGIT_BOUND, errors


def test_asking_for_fp32_keeps_the_databases_kernels(tiny_llama3_dir: Path, tmp_path: Path) -> None:
    """--weights fp32 alone says nothing of the kernels: a pure-SQL --db opens as it is."""
    compiled = onnx2sql.compile(tiny_llama3_dir / "model.onnx", tmp_path / "sql", kernels="sql")
    with Generator(tiny_llama3_dir, db=compiled / "model.duckdb", weights="fp32", progress=False) as gen:
        assert (gen.program.kernels, gen.program.weight_format) == ("sql", "fp32")
    with pytest.raises(onnx2sql.InputError) as info:
        Generator(tiny_llama3_dir, db=compiled / "model.duckdb", weights="int4", progress=False)
    assert "--weights must be one of fp32, int8, got 'int4'" in str(info.value)
