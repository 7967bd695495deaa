"""Decoders other than Llama, exported by Optimum from tiny random checkpoints: DuckDB equals
onnxruntime for a prompt and a decode step (logits and present.* within 1e-4)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import onnx2sql
from decoder_feeds import feeds, ort_outputs, presents_as_past

TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]

FAMILIES = {
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM",
              dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=128, rope_theta=1e6, tie_word_embeddings=False)),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel",
             dict(n_embd=64, n_layer=2, n_head=4, n_positions=128, activation_function="gelu_new")),
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def exported(request, tiny_llama3_dir: Path, tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch")
    import transformers

    from onnx2sql.export import export_model

    config_name, model_name, dims = FAMILIES[request.param]
    folder = tmp_path_factory.mktemp(request.param) / "hf"
    folder.mkdir()
    for name in TOKENIZER_FILES:
        shutil.copy(tiny_llama3_dir / "hf" / name, folder / name)
    torch.manual_seed(0)
    config = getattr(transformers, config_name)(vocab_size=320, bos_token_id=315, eos_token_id=316, **dims)
    model = getattr(transformers, model_name)(config)
    with torch.no_grad():  # random norms and biases, so that a wrong broadcast shows
        for name, param in model.named_parameters():
            if param.ndim == 1:
                param.copy_(torch.randn_like(param) * 0.1 + (1.0 if "ln" in name or "norm" in name else 0.0))
    model.save_pretrained(folder)
    return export_model(str(folder), folder.parent / "onnx") / "model.onnx"


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert list(got) == list(want)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-4, err_msg=name)


def test_prefill_and_decode(exported: Path) -> None:
    ids = np.random.default_rng(0).integers(3, 300, (1, 7)).astype(np.int64)
    prefill = feeds(exported, ids)
    want = ort_outputs(exported, prefill)
    assert_same(onnx2sql.run(exported, prefill, chunk_size=16), want)
    step = feeds(exported, ids[:, :2], np.ones((1, 9), np.int64), presents_as_past(want))
    assert_same(onnx2sql.run(exported, step, chunk_size=16), ort_outputs(exported, step))
