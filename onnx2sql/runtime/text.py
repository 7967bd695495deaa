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
        template = template_file.read_text(encoding="utf-8") if template_file.is_file() else tok_config.get("chat_template")
        return ModelFolder(folder, Tokenizer.from_file(str(folder / "tokenizer.json")), _json(folder / "config.json"),
                           _json(folder / "generation_config.json"), tok_config, template)

    @property
    def eos_ids(self) -> set[int]:
        ids: set[int] = set()
        for source in (self.generation, self.config):
            eos = source.get("eos_token_id")
            ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        return ids

    @property
    def context_length(self) -> int:
        return int(self.config.get("max_position_embeddings") or self.tokenizer_config.get("model_max_length") or 2048)

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
        return env.from_string(self.chat_template).render(
            messages=[{"role": "user", "content": prompt}], add_generation_prompt=True,
            bos_token=_token_text(self.tokenizer_config.get("bos_token")),
            eos_token=_token_text(self.tokenizer_config.get("eos_token")),
        )


def _token_text(token: object) -> str:
    if isinstance(token, dict):
        return str(token.get("content", ""))
    return str(token or "")


def _json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{str(path)!r} is not valid JSON: {exc}") from exc
