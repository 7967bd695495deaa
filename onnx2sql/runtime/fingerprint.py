"""What identifies the model a database was compiled from: the SHA-256 of model.onnx and of each
external data file it names.

Hashing a 540 MB model takes about a second, so digests are cached in a small JSON file beside the
database. A cached digest is reused only while the file keeps its size, inode, mtime and ctime:
ctime moves to "now" on every write and every utime() call and no user can set it back, so a file
replaced by another of the same size with its mtime restored is hashed again."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

CACHE_SUFFIX = ".sha256.json"


def cache_file(db: Path) -> Path:
    return db.with_name(db.name + CACHE_SUFFIX)


def model_digests(model: Path, data_files: list[str], cache: Path | None) -> dict[str, str]:
    """{name: sha256} of model.onnx (under its own name) and each external data file."""
    names = [model.name] + [name for name in data_files if name != model.name]
    known = _read_cache(cache)
    digests = {name: file_sha256(model.parent / name, known) for name in names}
    if cache is not None:
        _write_cache(cache, known)
    return digests


def file_sha256(path: Path, known: dict[str, dict]) -> str:
    """The file's digest, from `known` when its identity is unchanged; `known` is updated."""
    key = str(path.resolve())
    before = _identity(path)
    entry = known.get(key)
    if entry and entry.get("identity") == before and isinstance(entry.get("sha256"), str):
        return entry["sha256"]
    digest = _hash(path)
    if _identity(path) == before:  # not written to while it was read
        known[key] = {"identity": before, "sha256": digest}
    return digest


def _identity(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_ino, stat.st_dev, stat.st_mtime_ns, stat.st_ctime_ns]


def _hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_cache(cache: Path | None) -> dict[str, dict]:
    if cache is None:
        return {}
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # missing or damaged: everything is hashed again
    return data if isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()) else {}


def _write_cache(cache: Path, known: dict[str, dict]) -> None:
    temporary = cache.with_name(f".{cache.name}.{os.getpid()}")
    try:
        temporary.write_text(json.dumps(known), encoding="utf-8")
        os.replace(temporary, cache)
    except OSError:
        temporary.unlink(missing_ok=True)  # a read-only folder: the digest is computed next time too


def digests_match(model: Path, stored: dict[str, str]) -> bool:
    """Whether the digests stored beside a compiled model (model_sha256, external_data_sha256)
    are those of its file and external data files now (each file read once)."""
    data = json.loads(stored.get("external_data_sha256", "{}"))
    try:
        current = model_digests(model, sorted(data), None)
    except FileNotFoundError:
        return False  # an external data file it was compiled with is gone
    return current.pop(model.name) == stored.get("model_sha256") and current == data
