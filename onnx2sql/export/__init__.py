"""Export decoder LLMs to ONNX with Optimum, offline: recipes, Hugging Face folders, GGUF files.

`export_model` writes a folder with model.onnx (+ model.onnx_data above 2 GB), config.json,
generation_config.json and the tokenizer files. Nothing here imports torch until an export runs,
so the runtime path (compile, run, generate) works without the `export` extra.
"""
from __future__ import annotations

from onnx2sql.export.pipeline import export_model, is_complete_export
from onnx2sql.export.recipes import RECIPE_NAMES

__all__ = ["RECIPE_NAMES", "export_model", "is_complete_export"]
