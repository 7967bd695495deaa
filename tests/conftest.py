"""Shared fixtures: exported models under <repo>/models/, reused across test runs."""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

# Tests never touch the network: every Hugging Face hub access must fail fast.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = REPO_ROOT / "models"
# The files of an exported model folder that compile and generate read (not hf/, sql/ or bench/).
TINY_FOLDER_FILES = ["model.onnx", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                     "special_tokens_map.json", "chat_template.jinja"]


def export_or_skip(recipe: str) -> Path:
    """models/<recipe>, exported on first use; skipped where the export extra is not installed."""
    from onnx2sql.export import export_model, is_complete_export

    out_dir = MODELS_DIR / recipe
    if not is_complete_export(out_dir) and importlib.util.find_spec("torch") is None:
        pytest.skip(f"{recipe} is not exported yet and the export extra (torch) is not installed")
    return export_model(recipe, out_dir)


@pytest.fixture(scope="session")
def tiny_llama3_dir() -> Path:
    """models/tiny-llama3: a 2-layer random Llama 3 (vocab 320), model.onnx < 1 MB, HF copy in hf/."""
    return export_or_skip("tiny-llama3")


@pytest.fixture(scope="session")
def tiny_compiled_dir(tiny_llama3_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny-llama3 model folder (no hf/, no sql/) with its own database compiled into
    sql/ once; tests that damage a model folder copy this one first."""
    import onnx2sql

    folder = tmp_path_factory.mktemp("tiny") / "tiny"
    folder.mkdir()
    for name in TINY_FOLDER_FILES:
        shutil.copy(tiny_llama3_dir / name, folder / name)
    onnx2sql.compile(folder / "model.onnx", folder / "sql")
    return folder


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """models/smollm2-135m: SmolLM2-135M-Instruct (fp32, 539 MB model.onnx); ~1 min the first time."""
    return export_or_skip("smollm2-135m")


@pytest.fixture(scope="session")
def smollm2_compiled(smollm2_dir: Path) -> Path:
    """models/smollm2-135m/sql: the compiled database `make compile` writes, compiled once if missing
    or stale (generation uses the same database)."""
    from onnx2sql.runtime.generate import Generator

    Generator(smollm2_dir, progress=False).close()  # compiles MODEL_DIR/sql when needed
    return smollm2_dir / "sql"


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory):
    """A private PostgreSQL server (with pgvector) for the whole session, stopped at its end."""
    from onnx2sql.runtime.postgres import PostgresServer

    with PostgresServer(tmp_path_factory.mktemp("postgres") / "data") as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server) -> str:
    return postgres_server.url


@pytest.fixture(scope="session")
def spark_session():
    """The tests' local Spark (local[2]), started once and stopped at the end of the session."""
    from onnx2sql.runtime.spark import start_spark

    spark = start_spark()
    yield spark
    spark.stop()
