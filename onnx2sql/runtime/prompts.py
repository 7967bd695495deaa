"""Generation over a file of prompts: JSON lines in (one prompt per line), JSON lines out (one
result per prompt, in the input's order). Prompts run in batches of similar length, so that little
of a batch is padding; the output file appears only when every prompt is done."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from onnx2sql.errors import InputError, UsageError

if TYPE_CHECKING:  # the command line reads DEFAULT_BATCH without loading the runtime
    from onnx2sql.runtime.generate import Batch, Generator, Sampling

DEFAULT_BATCH = 16
FIELDS = ("id", "prompt", "max_new_tokens", "seed")


@dataclass(frozen=True)
class PromptRecord:
    id: Any  # the line's "id", or its line number
    prompt: str
    max_new_tokens: int | None = None  # None: the command's --max-new-tokens
    seed: int | None = None  # None: the command's --seed


def read_prompts(path: Path) -> list[PromptRecord]:
    """The prompts of a JSON-lines file; a bad line is named by its number."""
    if not path.is_file():
        raise InputError(f"--prompts-file {str(path)!r} does not exist or is not a file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(f"--prompts-file {str(path)!r} is not UTF-8 text: {exc}") from exc
    records: list[PromptRecord] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        record = _record(line, number, f"{path}:{number}")
        key = json.dumps(record.id)
        if key in seen:
            raise InputError(f"{path}:{number}: id {key} is also the id of line {seen[key]}; ids must be unique")
        seen[key] = number
        records.append(record)
    if not records:
        raise InputError(f"--prompts-file {str(path)!r} holds no prompts (one JSON object per line, "
                         '{"id": ..., "prompt": "..."})')
    return records


def _record(line: str, number: int, where: str) -> PromptRecord:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON ({exc.msg})") from exc
    return record_from(data, number, where)


def record_from(data: object, number: int, where: str) -> PromptRecord:
    """The prompt of one object (a JSON line's, a table row's); `number` is its id when it has none."""
    if not isinstance(data, dict):
        raise InputError(f"{where}: must be a JSON object with a \"prompt\", not a {type(data).__name__}")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise InputError(f"{where}: unknown field(s) {unknown}; a line may have {', '.join(FIELDS)}")
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise InputError(f"{where}: \"prompt\" must be a non-empty string")
    ident = data.get("id", number)
    if isinstance(ident, bool) or not isinstance(ident, (str, int)):
        raise InputError(f"{where}: \"id\" must be a string or an integer, got {json.dumps(ident)}")
    return PromptRecord(ident, prompt, _whole(data, "max_new_tokens", 1, where), _whole(data, "seed", 0, where))


def _whole(data: dict, key: str, least: int, where: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InputError(f"{where}: \"{key}\" must be an integer >= {least}, got {json.dumps(value)}")
    return value


def batches_by_length(lengths: list[int], size: int) -> list[list[int]]:
    """Indices of the prompts, shortest first, cut into batches of at most `size`: a batch is padded
    to its longest prompt, so prompts of similar length go together."""
    order = sorted(range(len(lengths)), key=lambda k: (lengths[k], k))
    return [order[k:k + size] for k in range(0, len(order), size)]


def generate_file(open_generator: Callable[[], Generator], prompts_file: Path, out: Path,
                  batch: int = DEFAULT_BATCH, max_new_tokens: int = 32, sampling: Sampling | None = None,
                  chat: bool = False, on_batch: Callable[[int, int, Batch], None] | None = None) -> list[dict[str, Any]]:
    """Generate for every prompt of `prompts_file` and write one JSON line per prompt to `out`, in
    the input's order; returns the lines written. The flags, `out` and the file are checked before
    `open_generator` opens (or compiles) the model. `on_batch(k, count, batch)` follows progress."""
    sampling = checked_flags(batch, sampling)
    check_output_file(out)
    records = read_prompts(prompts_file)
    lines = generate_records(open_generator, lambda gen: records, str(prompts_file), batch, max_new_tokens,
                             sampling, chat, on_batch)
    write_lines_atomically(out, lines)
    return lines


def generate_records(open_generator: Callable[[], Generator], read: Callable[[Generator], list[PromptRecord]],
                     where: str, batch: int = DEFAULT_BATCH, max_new_tokens: int = 32,
                     sampling: Sampling | None = None, chat: bool = False,
                     on_batch: Callable[[int, int, Batch], None] | None = None) -> list[dict[str, Any]]:
    """One result per prompt that `read(generator)` gives (`where` names their source in errors),
    in their order, generated in batches of prompts of similar length. The flags are checked
    before `open_generator` opens (or compiles) the model."""
    sampling = checked_flags(batch, sampling)
    with open_generator() as gen:
        records = read(gen)
        encoded = [_encode(gen, r, chat, where) for r in records]
        _check_context(gen, records, encoded, max_new_tokens, where)
        results: list[dict[str, Any] | None] = [None] * len(records)
        groups = batches_by_length([len(ids) for ids in encoded], batch)
        for k, group in enumerate(groups, start=1):
            done = gen.generate_batch_ids(
                [encoded[i] for i in group], [records[i].max_new_tokens or max_new_tokens for i in group], sampling,
                seeds=[records[i].seed if records[i].seed is not None else sampling.seed for i in group])
            for i, generation in zip(group, done.generations):
                results[i] = {"id": records[i].id, "text": generation.text, "finish_reason": generation.finish_reason,
                              "prompt_tokens": len(generation.prompt_ids), "token_ids": generation.token_ids}
            if on_batch is not None:
                on_batch(k, len(groups), done)
    return [r for r in results if r is not None]


def checked_flags(batch: int, sampling: Sampling | None) -> Sampling:
    """The sampling (greedy when None), once it and the batch size are known to be usable."""
    from onnx2sql.runtime.generate import Sampling

    sampling = sampling or Sampling()
    sampling.check()
    if batch < 1:
        raise UsageError(f"--batch must be at least 1, got {batch}")
    return sampling


def _encode(gen: Generator, record: PromptRecord, chat: bool, where: str) -> list[int]:
    try:
        return gen.encode(record.prompt, chat)
    except InputError as exc:
        raise InputError(f"{where}: prompt id {json.dumps(record.id)}: {exc}") from exc


def _check_context(gen: Generator, records: list[PromptRecord], encoded: list[list[int]], max_new_tokens: int,
                   where: str) -> None:
    """Every prompt fits the context with its new tokens, checked before the first batch runs."""
    context = gen.folder.context_length
    for record, ids in zip(records, encoded):
        wanted = record.max_new_tokens or max_new_tokens
        if len(ids) + wanted > context:
            raise InputError(f"{where}: prompt id {json.dumps(record.id)} ({len(ids)} tokens) plus {wanted} new "
                             f"tokens exceeds the model's context of {context} tokens")


def check_output_file(out: Path) -> None:
    """Refuse, before any work, an output path that cannot be a file we write."""
    if out.is_dir():
        raise UsageError(f"-o {str(out)!r} is a folder; name a .jsonl file")
    if not out.parent.is_dir():
        raise InputError(f"-o {str(out)!r}: the folder {str(out.parent)!r} does not exist")


def write_lines_atomically(out: Path, lines: list[dict[str, Any]]) -> None:
    """Write beside `out` and rename into place: an interrupted run leaves no half-written file and
    an earlier `out` stays as it was."""
    staging = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        with staging.open("w", encoding="utf-8") as f:
            for line in lines:
                f.write(json.dumps(line, ensure_ascii=False, allow_nan=False) + "\n")
        staging.replace(out)
    finally:
        staging.unlink(missing_ok=True)


def describe_batch(k: int, count: int, batch: Batch) -> str:
    tokens = sum(len(g.token_ids) for g in batch.generations)
    speed = f", decode {batch.decode_tokens_per_s:.2f} tokens/s" if batch.decode_tokens_per_s > 0 else ""
    prompts = f"{len(batch.generations)} prompt{'' if len(batch.generations) == 1 else 's'}"
    return (f"[batch {k}/{count}: {prompts}, {tokens} tokens; first tokens after "
            f"{batch.ttft_s:.2f} s{speed}]")
