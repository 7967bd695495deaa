"""Model folder reading for generation: tokenizer (the `tokenizers` library, no torch), chat
template (rendered with jinja2), EOS ids and context length."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import jinja2.sandbox
from tokenizers import Tokenizer

from onnx2sql.errors import InputError

REQUIRED_FILES = ("model.onnx", "config.json", "tokenizer.json")


@dataclass
class ModelFolder:
    path: Path
    tokenizer: Tokenizer
    config: dict
    generation: dict
    tokenizer_config: dict
    chat_template: str | None
    template_source: str = ""  # the file the chat template comes from, for messages

    @staticmethod
    def open(path: str | Path) -> "ModelFolder":
        folder = Path(path)
        if not folder.is_dir():
            raise InputError(f"model folder {str(folder)!r} does not exist")
        missing = [f for f in REQUIRED_FILES if not (folder / f).is_file()]
        if missing:
            raise InputError(f"{str(folder)!r} is not an exported model folder: missing {', '.join(missing)} "
                             "(create one with `onnx2sql export`)")
        tok_config = _json(folder / "tokenizer_config.json")
        template_file = folder / "chat_template.jinja"
        if template_file.is_file():
            template, source = _text(template_file), template_file
        else:
            template, source = tok_config.get("chat_template"), folder / "tokenizer_config.json"
        return ModelFolder(folder, _tokenizer(folder / "tokenizer.json"), _json(folder / "config.json"),
                           _json(folder / "generation_config.json"), tok_config, template, str(source))

    @property
    def eos_ids(self) -> set[int]:
        ids: set[int] = set()
        for source in (self.generation, self.config):
            eos = source.get("eos_token_id")
            ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        return ids

    @property
    def context_length(self) -> int:
        value = self.config.get("max_position_embeddings") or self.tokenizer_config.get("model_max_length") or 2048
        if not isinstance(value, int) or value < 1:
            raise InputError(f"{str(self.path / 'config.json')!r}: max_position_embeddings must be a positive "
                             f"integer, got {value!r}")
        return value

    def encode(self, prompt: str, chat: bool = False) -> list[int]:
        if chat:
            text = self.render_chat(prompt)
            return self.tokenizer.encode(text, add_special_tokens=False).ids
        return self.tokenizer.encode(prompt).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def render_chat(self, prompt: str) -> str:
        if not self.chat_template:
            raise InputError(f"{str(self.path)!r} has no chat template; drop --chat")
        env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        try:
            return env.from_string(self.chat_template).render(
                messages=[{"role": "user", "content": prompt}], add_generation_prompt=True,
                bos_token=_token_text(self.tokenizer_config.get("bos_token")),
                eos_token=_token_text(self.tokenizer_config.get("eos_token")),
            )
        except Exception as exc:  # the template is the model folder's code: any failure is its fault
            raise InputError(f"the chat template in {self.template_source!r} cannot be rendered "
                             f"({type(exc).__name__}: {exc}); fix it or drop --chat") from exc


def _token_text(token: object) -> str:
    if isinstance(token, dict):
        return str(token.get("content", ""))
    return str(token or "")


def _json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(_text(path))
    except json.JSONDecodeError as exc:
        raise InputError(f"{str(path)!r} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{str(path)!r} must hold a JSON object, not a {type(data).__name__}")
    return data


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {str(path)!r}: {exc}") from exc


def _tokenizer(path: Path) -> Tokenizer:
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # the tokenizers library raises plain Exceptions for a malformed file
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{str(path)!r} is not a tokenizer file the tokenizers library can read: "
                         f"{first_line}") from exc
