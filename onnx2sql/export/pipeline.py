"""export_model: source -> <out_dir>/ with model.onnx, configs and tokenizer, built atomically.

The export is written into a hidden sibling folder and renamed into place at the end, so out_dir
either holds a complete export (listed, with sizes, in its manifest) or is left as it was.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from onnx2sql.errors import InputError, ModelError
from onnx2sql.export.loaders import EXPORT_TASK, LoadedModel, require_export_extra
from onnx2sql.export.sources import Source, resolve_source

OPSET = 18
MANIFEST = "onnx2sql_export.json"
REQUIRED_FILES = (
    "model.onnx", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
)
CHECKPOINT_SUBDIR = "hf"
# Optimum's post-processing (tied-weight dedup) loads the whole model into one protobuf, which
# cannot exceed 2 GiB; above this size it is skipped and a tied LM head is stored twice.
POST_PROCESS_LIMIT_BYTES = 1_800_000_000


def export_model(source: str, out_dir: Path | None = None, force: bool = False) -> Path:
    """Export `source` (recipe name, HF checkpoint folder or .gguf file) to ONNX; return the folder.

    A folder that already holds a complete export of the same source is reused unless `force`.
    """
    resolved = resolve_source(source)
    out_dir = Path(out_dir) if out_dir is not None else Path("models") / resolved.name
    _check_replaceable(out_dir, resolved, force)
    if not force and is_complete_export(out_dir):
        _say(f"reusing the complete export of {resolved.label} in {out_dir} (force / --force redoes it)")
        return out_dir
    require_export_extra()
    resolved.check()
    started = time.monotonic()
    _say(f"exporting {resolved.label} to {out_dir} ...")
    with _staging_dir(out_dir) as staging:
        manifest = _export_into(resolved, staging)
        manifest["seconds"] = round(time.monotonic() - started, 1)
        _write_manifest(staging, manifest)
        _move_into_place(staging, out_dir)
    _say(f"exported {resolved.label} in {manifest['seconds']} s: {manifest['onnx_nodes']} ONNX nodes, "
         f"{_total_mb(manifest)} MB in {out_dir}")
    return out_dir


def is_complete_export(out_dir: Path) -> bool:
    """True if out_dir's manifest lists every required file and all listed files have their sizes."""
    manifest = _read_manifest(out_dir)
    if manifest is None:
        return False
    files = manifest.get("files")
    if not isinstance(files, dict) or not set(REQUIRED_FILES) <= set(files):
        return False
    return all(_has_size(out_dir / name, size) for name, size in files.items())


def _export_into(source: Source, staging: Path) -> dict[str, Any]:
    """Load the model, export it with Optimum into `staging`, save its companions; return the manifest."""
    loaded = source.load()
    _fill_generation_config(loaded, source.label)
    byte_size = _weights_byte_size(loaded.model)
    _run_optimum(loaded, staging, post_process=byte_size <= POST_PROCESS_LIMIT_BYTES)
    loaded.tokenizer.save_pretrained(staging)
    loaded.model.generation_config.save_pretrained(staging)
    if loaded.keep_checkpoint:
        loaded.model.save_pretrained(staging / CHECKPOINT_SUBDIR)
        loaded.tokenizer.save_pretrained(staging / CHECKPOINT_SUBDIR)
    _make_readable(staging)
    missing = [name for name in REQUIRED_FILES if not (staging / name).is_file()]
    if missing:
        raise ModelError(f"exporting {source.label} did not produce {', '.join(missing)}")
    return {
        "source": source.label,
        "task": EXPORT_TASK,
        "opset": OPSET,
        "parameters": sum(p.numel() for p in loaded.model.parameters()),
        "onnx_nodes": _count_nodes(staging / "model.onnx"),
        "files": _list_files(staging),
    }


def _run_optimum(loaded: LoadedModel, staging: Path, post_process: bool) -> None:
    import torch
    from optimum.exporters.onnx import onnx_export_from_model

    # Tracing Llama raises TracerWarnings about Python-side checks that are expected and harmless.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        onnx_export_from_model(
            loaded.model, staging, task=EXPORT_TASK, opset=OPSET,
            no_post_process=not post_process, do_validation=False,
        )


def _fill_generation_config(loaded: LoadedModel, label: str) -> None:
    """generation_config.json must name the token(s) that end generation."""
    generation, config, tokenizer = loaded.model.generation_config, loaded.model.config, loaded.tokenizer
    for role in ("bos", "eos"):
        attribute = f"{role}_token_id"
        candidates = (getattr(holder, attribute) for holder in (generation, config, tokenizer))
        setattr(generation, attribute, next((c for c in candidates if c is not None), None))
    if generation.eos_token_id is None:
        raise InputError(f"{label}: neither the model nor the tokenizer names an end-of-sequence token")


def _weights_byte_size(model: Any) -> int:
    """Bytes of the exported weights before deduplication (tied tensors counted twice)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def _count_nodes(onnx_path: Path) -> int:
    import onnx

    return len(onnx.load(str(onnx_path), load_external_data=False).graph.node)


def _check_replaceable(out_dir: Path, source: Source, force: bool) -> None:
    """Never overwrite a folder that is not an export, nor (without force) an export of another source."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output {out_dir} exists and is not a folder")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    manifest = _read_manifest(out_dir)
    if manifest is None:
        raise InputError(f"output {out_dir} is not empty and holds no onnx2sql export; choose another folder")
    if manifest.get("source") != source.label and not force:
        raise InputError(
            f"output {out_dir} holds an export of {manifest.get('source')!r}, not of {source.label!r}; "
            f"choose another folder, or force / --force to replace it"
        )


@contextmanager
def _staging_dir(out_dir: Path) -> Iterator[Path]:
    """A hidden sibling of out_dir to build in; removed if anything fails (Ctrl-C included)."""
    parent_existed = out_dir.parent.is_dir()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    path.chmod(0o755)  # mkdtemp makes it private; the export is an ordinary folder
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)  # already renamed away on success
        if not parent_existed and not any(out_dir.parent.iterdir()):
            out_dir.parent.rmdir()  # a failed first export leaves no empty models/ behind


def _move_into_place(staging: Path, out_dir: Path) -> None:
    """Swap the finished export in; an old export is moved aside first and deleted after."""
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
        out_dir.rename(old / out_dir.name)
    staging.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _make_readable(folder: Path) -> None:
    """Some writers (ONNX external data, safetensors) create owner-only files; exports are shared."""
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(path.stat().st_mode | 0o444)


def _list_files(folder: Path) -> dict[str, int]:
    return {
        path.relative_to(folder).as_posix(): path.stat().st_size
        for path in sorted(folder.rglob("*")) if path.is_file() and path.name != MANIFEST
    }


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _has_size(path: Path, size: Any) -> bool:
    return path.is_file() and path.stat().st_size == size


def _total_mb(manifest: dict[str, Any]) -> float:
    return round(sum(manifest["files"].values()) / 1e6, 1)


def _say(message: str) -> None:
    print(f"onnx2sql export: {message}", file=sys.stderr)
