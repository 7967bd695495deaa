"""Shared fixtures: exported models under <repo>/models/, reused across test runs."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

# Tests never touch the network: every Hugging Face hub access must fail fast.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = REPO_ROOT / "models"


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
