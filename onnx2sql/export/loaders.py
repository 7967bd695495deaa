"""Load a decoder LLM and its tokenizer into memory, from a Hugging Face folder or a GGUF file.

torch, transformers and optimum are imported inside the functions: this module is imported by
`onnx2sql.export`, which runtime users import without the `export` extra.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from onnx2sql.errors import InputError

# Optimum's task for a decoder that takes and returns the KV cache (past_key_values / present).
EXPORT_TASK = "text-generation-with-past"

_EXPORT_EXTRA_MODULES = ("torch", "transformers", "optimum.exporters.onnx", "accelerate", "gguf")


@dataclass
class LoadedModel:
    """A causal LM ready for export, with the tokenizer that belongs to it."""

    model: Any  # transformers.PreTrainedModel
    tokenizer: Any  # transformers.PreTrainedTokenizerFast
    keep_checkpoint: bool = False  # also save the HF checkpoint as <out>/hf (small recipes only)


def force_offline() -> None:
    """Models are never downloaded: make every Hugging Face hub access fail fast.

    Must run before transformers / huggingface_hub are imported, which read these once.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def require_export_extra() -> None:
    """Raise InputError unless the packages of the `export` extra are importable."""
    import importlib

    force_offline()
    for module in _EXPORT_EXTRA_MODULES:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise InputError(
                f"exporting a model needs the `export` extra ({module} cannot be imported: {exc}); "
                'install it with: pip install "onnx2sql[export]"'
            ) from exc


def read_config_json(folder: Path, source: str) -> dict[str, Any]:
    """The folder's config.json as a dict; InputError if it is missing or not JSON."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise InputError(f"{source}: no config.json in this folder, so it is not a Hugging Face checkpoint")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{source}: config.json cannot be read: {exc}") from exc
    if not isinstance(config, dict):
        raise InputError(f"{source}: config.json does not hold a JSON object")
    return config


def check_causal_lm(config: dict[str, Any], source: str) -> None:
    """InputError unless the config is a decoder-only causal LM that Optimum exports with a KV cache."""
    import optimum.exporters.onnx.model_configs  # noqa: F401  (registers the ONNX configs with TasksManager)
    from optimum.exporters.tasks import TasksManager
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_type = config.get("model_type")
    if not model_type:
        raise InputError(f"{source}: config.json has no model_type, so it is not a transformers model")
    architectures = config.get("architectures") or []
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or config.get("is_encoder_decoder"):
        raise InputError(f"{source}: a {model_type!r} model is not a causal (decoder-only) language model")
    try:
        tasks = TasksManager.get_supported_tasks_for_model_type(
            model_type, "onnx", library_name="transformers")
    except KeyError:
        tasks = {}
    if EXPORT_TASK not in tasks:
        # e.g. BERT: transformers has a causal LM head for it, but it is an encoder, not a decoder LLM.
        raise InputError(
            f"{source}: a {model_type!r} model ({', '.join(architectures) or 'no architectures listed'}) "
            f"cannot be exported as a decoder LLM with a KV cache (Optimum task {EXPORT_TASK})"
        )


def load_hf_folder(folder: Path, source: str) -> LoadedModel:
    """A local Hugging Face checkpoint folder, loaded in fp32 without any hub access."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = _load_or_explain(
        lambda: AutoTokenizer.from_pretrained(folder, local_files_only=True),
        f"{source}: the folder has no usable tokenizer (tokenizer.json or tokenizer.model)",
    )
    model = _load_or_explain(
        lambda: AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, local_files_only=True),
        f"{source}: the weights cannot be loaded",
    )
    return LoadedModel(model.eval(), tokenizer)


def load_gguf(path: Path, source: str) -> LoadedModel:
    """A GGUF file, dequantized to fp32 by transformers' GGUF support."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from onnx2sql.export.tokenizer import align_tokenizer_with_gguf

    folder, name = path.parent, path.name
    tokenizer = _load_or_explain(
        lambda: AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True),
        f"{source}: the tokenizer in this GGUF file cannot be read by transformers",
    )
    model = _load_or_explain(
        lambda: AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, dtype=torch.float32, local_files_only=True
        ),
        f"{source}: this GGUF file cannot be loaded by transformers as a causal LM",
    )
    align_tokenizer_with_gguf(tokenizer, path, model.config)
    return LoadedModel(model.eval(), tokenizer)


def _load_or_explain(load: Callable[[], Any], message: str) -> Any:
    """Run a transformers loader; turn its failure into an InputError that names the source."""
    try:
        return load()
    except Exception as exc:  # a damaged file can fail anywhere in a loader: name it, not the loader's code
        raise InputError(f"{message}: {type(exc).__name__}: {exc}") from exc
