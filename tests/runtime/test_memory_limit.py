"""Generation under a DuckDB memory limit smaller than the weights: the database reads from disk.

tiny-llama3's 0.55 MB of weights lie below DuckDB's own working minimum (every live table pins a
256 KB block; 8 MB fails before the weights matter), so this builds a wider random Llama from
tiny-llama3's checkpoint (56 MB of weights) and runs it under 24 MB."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from onnx2sql.runtime.generate import Generator
from ort_loop import ort_greedy

LIMIT_MB = 24


@pytest.fixture(scope="module")
def wide_llama(tiny_llama3_dir: Path, tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch")
    import transformers

    from onnx2sql.export import export_model

    source = tmp_path_factory.mktemp("wide") / "hf"
    shutil.copytree(tiny_llama3_dir / "hf", source)
    config = json.loads((source / "config.json").read_text())
    config.update(hidden_size=768, intermediate_size=2048, num_attention_heads=12, num_key_value_heads=4, head_dim=64)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.copy_(1 + 0.1 * torch.randn_like(param))
    (source / "model.safetensors").unlink()
    model.save_pretrained(source)
    return export_model(str(source), source.parent / "onnx")


def test_generation_under_a_limit_below_the_weights(wide_llama: Path, tmp_path: Path) -> None:
    weights = (wide_llama / "model.onnx").stat().st_size
    assert weights > 2 * LIMIT_MB * 1024 * 1024
    prompt = [315, 40, 41, 42]
    with Generator(wide_llama, db=tmp_path / "wide.duckdb", memory_limit=f"{LIMIT_MB}MB", progress=False) as gen:
        limit = gen.con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        tokens = gen.generate_ids(prompt, 8).token_ids
        # Below the weights, every op runs as its own statement (regions hold many ops' data at
        # once); only small constants, VALUES rows, are still written into their readers.
        assert len(gen.program.regions) == sum(1 for s in gen.program.statements if s.reads)
    value, unit = limit.split()
    assert unit == "MiB" and float(value) <= LIMIT_MB  # DuckDB reports 24MB as 22.8 MiB
    assert tokens == ort_greedy(wide_llama, prompt, len(tokens))[0]


def test_a_limit_well_above_a_regions_weights_keeps_the_regions(wide_llama: Path, tmp_path: Path) -> None:
    """The fallback depends on the weights one region scans (a layer's, 25 MB here), not on the
    whole database: 200 MB leaves the regions as compiled, and the tokens are the same."""
    prompt = [315, 40, 41, 42]
    with Generator(wide_llama, db=tmp_path / "wide.duckdb", memory_limit="200MB", progress=False) as gen:
        largest = gen.program.largest_region_weights()
        assert 20e6 < largest < 200e6 / 4
        assert len(gen.program.regions) < len(gen.program.statements) / 5
        tokens = gen.generate_ids(prompt, 4).token_ids
    assert tokens == ort_greedy(wide_llama, prompt, len(tokens))[0]
