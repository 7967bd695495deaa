"""Turn what the user typed (`--model ...`) into something that can be loaded, or a clear error.

Only file-system checks happen here, so a wrong source fails at once, before torch is imported.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

from onnx2sql.errors import InputError
from onnx2sql.export.loaders import LoadedModel, check_causal_lm, load_gguf, load_hf_folder, read_config_json
from onnx2sql.export.recipes import RECIPE_NAMES, RECIPES

_GGUF_MAGIC = b"GGUF"
_GGUF_VERSIONS = (1, 2, 3)
# The smallest a GGUF tensor description (name length, rank, type, offset) or key/value entry
# (key length, value type) can be: a header counting more of them than the file holds is corrupt.
_GGUF_MIN_TENSOR_BYTES, _GGUF_MIN_KV_BYTES = 8 + 4 + 4 + 8, 8 + 4
_WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin", "*.pt", "*.pth", "model.safetensors.index.json",
                 "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class Source:
    """A model to export: its default folder name under models/, and how to load it."""

    name: str  # default output folder: models/<name>
    label: str  # how messages and the export manifest name it
    load: Callable[[], LoadedModel]
    check: Callable[[], None] = lambda: None  # checks needing the export extra, run before any work


def resolve_source(source: str) -> Source:
    """A recipe name, a Hugging Face checkpoint folder, or a .gguf file; InputError otherwise."""
    if source in RECIPES:
        return Source(source, source, RECIPES[source])
    path = Path(source).expanduser()
    if path.is_dir():
        return _hf_folder_source(path.resolve(), source)
    if path.is_file():
        return _gguf_source(path.resolve(), source)
    raise InputError(_missing_source_message(source, path))


def _hf_folder_source(folder: Path, source: str) -> Source:
    config = read_config_json(folder, source)  # fail now if it is not a checkpoint folder at all
    label = str(folder)
    return Source(folder.name, label, load=partial(load_hf_folder, folder, label),
                  check=partial(_check_hf_folder, folder, config, label))


def _check_hf_folder(folder: Path, config: dict, label: str) -> None:
    """A decoder LLM's checkpoint, with weights to load (transformers fails obscurely without)."""
    check_causal_lm(config, label)
    if not any(next(folder.glob(pattern), None) for pattern in _WEIGHT_FILES):
        raise InputError(f"{label}: the folder holds no model weights (model.safetensors or "
                         "pytorch_model.bin), so it is not a complete Hugging Face checkpoint")


def _gguf_source(path: Path, source: str) -> Source:
    if path.suffix.lower() != ".gguf":
        raise InputError(f"{source}: a file source must be a .gguf file (or pass a checkpoint folder)")
    with path.open("rb") as handle:
        header = handle.read(len(_GGUF_MAGIC) + 4 + 8 + 8)
    if header[:len(_GGUF_MAGIC)] != _GGUF_MAGIC:
        raise InputError(f"{source}: not a GGUF file (its first bytes are not 'GGUF')")
    _check_gguf_header(header, path.stat().st_size, source)
    label = str(path)
    return Source(path.stem, label, partial(load_gguf, path, label))


def _check_gguf_header(header: bytes, file_size: int, source: str) -> None:
    """Refuse a GGUF header that cannot describe this file (truncated, or counts no file could hold)."""
    if len(header) < 24:
        raise InputError(f"{source}: the GGUF header is truncated ({file_size} bytes)")
    version, tensors, entries = struct.unpack("<IQQ", header[4:24])
    if version not in _GGUF_VERSIONS:
        raise InputError(f"{source}: GGUF version {version} is not one of {', '.join(map(str, _GGUF_VERSIONS))}")
    needed = 24 + tensors * _GGUF_MIN_TENSOR_BYTES + entries * _GGUF_MIN_KV_BYTES
    if needed > file_size:
        raise InputError(f"{source}: the GGUF header lists {tensors} tensors and {entries} metadata entries, "
                         f"more than a {file_size}-byte file can hold: the file is truncated or corrupt")


def _missing_source_message(source: str, path: Path) -> str:
    recipes = ", ".join(RECIPE_NAMES)
    if _looks_like_hub_id(source):
        return (
            f"{source!r} is not a recipe and not a folder or .gguf file on this disk; onnx2sql never "
            f"downloads models from the Hugging Face Hub. Download the checkpoint yourself and pass "
            f"its folder, or use a recipe: {recipes}"
        )
    return f"{source!r}: no such folder or file ({path.absolute()}); recipes are: {recipes}"


def _looks_like_hub_id(source: str) -> bool:
    """'org/name' with no path markers, like 'meta-llama/Llama-3.2-1B'."""
    parts = source.split("/")
    return (
        len(parts) == 2 and all(parts)
        and not source.startswith((".", "~"))
        and not source.lower().endswith(".gguf")
    )
