"""Generation on Spark (a local Spark the tests start): the model compiled into a folder of Parquet
weights, a batch of eight prompts of different lengths getting onnxruntime's greedy tokens, seeded
sampling equal to DuckDB's, the prompts-file command, and the errors of the folder and flags."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import onnx2sql
from onnx2sql.errors import InputError, UsageError
from onnx2sql.runtime.backends import open_generator
from onnx2sql.runtime.generate import Generator, Sampling
from onnx2sql.runtime.spark_models import META_FILE, compiled_folder
from onnx2sql.runtime.text import ModelFolder
from ort_loop import ort_greedy

pytestmark = pytest.mark.spark

# Eight prompts of seven lengths (one to 25 tokens), token limits of 1 to 3: rows leave the batch.
PROMPTS = [[315, 40, 41, 42], [315, 7], list(range(20, 45)), [9, 300, 12, 5, 77, 8], [1], [44, 45, 46],
           [100, 101, 102, 103, 104, 105, 106, 107, 108, 109], [7, 7]]
LIMITS = [3, 1, 3, 2, 3, 1, 2, 3]


@pytest.fixture(scope="module")
def spark_folder(tiny_llama3_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("spark") / "tiny"
    compiled_folder(tiny_llama3_dir / "model.onnx", folder)
    return folder


@pytest.fixture(scope="module")
def generator(tiny_llama3_dir: Path, spark_folder: Path, spark_session):
    with open_generator(tiny_llama3_dir, "spark", db=spark_folder, progress=False) as gen:
        yield gen


def test_a_batch_of_eight_gets_onnxruntimes_tokens_and_logits(generator, tiny_llama3_dir: Path) -> None:
    steps: list[list[np.ndarray]] = []
    batch = generator.generate_batch_ids(PROMPTS, LIMITS, on_logits=steps.append)
    assert [len(g.token_ids) for g in batch.generations] == LIMITS
    for k, (prompt, result) in enumerate(zip(PROMPTS, batch.generations)):
        want_tokens, want_rows = ort_greedy(tiny_llama3_dir, prompt, len(result.token_ids))
        assert result.token_ids == want_tokens, f"sequence {k}"
        for step, want in zip(steps, want_rows):
            np.testing.assert_allclose(step[k], want, rtol=1e-3, atol=1e-3)
    assert batch.statements_per_step > 0


def test_seeded_sampling_is_duckdbs(generator, tiny_llama3_dir: Path, tmp_path: Path) -> None:
    sampling = Sampling(temperature=1.5, top_k=50, top_p=0.95)
    got = generator.generate_batch_ids(PROMPTS[:2], 2, sampling, seeds=[11, 12])
    # A DuckDB database of this test's own: the Spark tests run beside the pure-SQL pass of `make
    # test`, which may compile the model folder's own database meanwhile.
    with Generator(tiny_llama3_dir, db=tmp_path / "tiny.duckdb", progress=False) as duckdb_gen:
        want = duckdb_gen.generate_batch_ids(PROMPTS[:2], 2, sampling, seeds=[11, 12])
    assert [g.token_ids for g in got.generations] == [g.token_ids for g in want.generations]


def test_the_folder_is_compiled_once(tiny_llama3_dir: Path, spark_folder: Path) -> None:
    meta = spark_folder / META_FILE
    before = meta.stat().st_mtime_ns
    compiled_folder(tiny_llama3_dir / "model.onnx", spark_folder)
    assert meta.stat().st_mtime_ns == before
    assert sorted(p.suffix for p in (spark_folder / "weights").iterdir()) == [".parquet"] * len(
        list((spark_folder / "weights").iterdir()))


def test_a_folder_of_another_model_is_refused_and_kept(tiny_llama3_dir: Path, spark_folder: Path,
                                                       tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(tiny_llama3_dir / "model.onnx", other / "model.onnx")
    before = (spark_folder / META_FILE).read_bytes()
    with pytest.raises(InputError, match="holds the model .* name another --db"):
        compiled_folder(other / "model.onnx", spark_folder)
    assert (spark_folder / META_FILE).read_bytes() == before


def test_a_folder_of_other_files_is_refused(tiny_llama3_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="is not empty and holds no compiled model"):
        compiled_folder(tiny_llama3_dir / "model.onnx", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_flags_spark_cannot_take_are_refused_by_name(tiny_llama3_dir: Path) -> None:
    with pytest.raises(UsageError, match="backend spark runs pure SQL: --kernels native"):
        open_generator(tiny_llama3_dir, "spark", kernels="native")
    with pytest.raises(UsageError, match="--spark-master is for --backend spark, not duckdb"):
        open_generator(tiny_llama3_dir, "duckdb", spark_master="local[1]")
    with pytest.raises(UsageError, match="--weights int8 is DuckDB's"):
        onnx2sql.run(tiny_llama3_dir / "model.onnx", {}, backend="spark", weights="int8")
    with pytest.raises(UsageError, match="backend spark runs in temporary views: db= \\(--db\\) is not used"):
        onnx2sql.run(tiny_llama3_dir / "model.onnx", {}, backend="spark", db="x")


@pytest.fixture
def spark_cluster(tmp_path: Path):
    """A standalone Spark cluster on 127.0.0.1: a master and two workers of one core each, started
    with pyspark's own spark-class and stopped at the end; its master URL."""
    import pyspark

    home = Path(pyspark.__file__).parent
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false"}
    port = _free_port()
    logs = [tmp_path / "master.log", tmp_path / "worker1.log", tmp_path / "worker2.log"]
    commands = [["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                 "--webui-port", "0"]]
    commands += [["org.apache.spark.deploy.worker.Worker", f"spark://127.0.0.1:{port}", "--host", "127.0.0.1",
                  "--cores", "1", "--memory", "1g", "--webui-port", "0", "--work-dir", str(tmp_path / f"work{k}")]
                 for k in (1, 2)]
    processes = []
    try:
        for command, log in zip(commands, logs):
            with log.open("w") as out:
                processes.append(subprocess.Popen([str(home / "bin" / "spark-class"), *command], env=env,
                                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + 120
        while logs[0].read_text().count("Registering worker") < 2:
            assert time.monotonic() < deadline, logs[0].read_text()[-2000:]
            time.sleep(0.5)
        yield f"spark://127.0.0.1:{port}"
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(timeout=60)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_prompts_file_on_a_cluster_of_two_workers(tiny_llama3_dir: Path, spark_folder: Path, spark_cluster: str,
                                                    tmp_path: Path) -> None:
    """The CLI in its own process, on the cluster: the eight prompts as a JSON-lines file, each
    sequence's tokens those onnxruntime gives it alone."""
    texts = ["The capital of France is", "Hello", "def f(x):", "1, 2, 3,", "Once upon a time there was",
             "A", "SELECT * FROM", "The sky is"]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps({"id": f"p{k}", "prompt": text, "max_new_tokens": 1 + k % 2})
                                 for k, text in enumerate(texts)) + "\n")
    out = tmp_path / "out.jsonl"
    done = subprocess.run([sys.executable, "-m", "onnx2sql", "generate", str(tiny_llama3_dir), "--backend", "spark",
                           "--db", str(spark_folder), "--spark-master", spark_cluster, "--batch", "8",
                           "--prompts-file", str(prompts), "-o", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == [f"p{k}" for k in range(8)]
    folder = ModelFolder.open(tiny_llama3_dir)
    for k, (line, text) in enumerate(zip(lines, texts)):
        assert line["token_ids"] == ort_greedy(tiny_llama3_dir, folder.encode(text), 1 + k % 2)[0], line["id"]
