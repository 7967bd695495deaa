"""The runtime's tokenizer and chat template (tokenizers + jinja2, no torch) agree with transformers."""
from __future__ import annotations

from pathlib import Path

import pytest

from onnx2sql.runtime.text import ModelFolder

PROMPTS = ["The capital of France is", "Write 3 words about \"quotes\" & {braces}.", "Ünïcødé ✓"]


@pytest.fixture(scope="module", params=["tiny_llama3_dir", "smollm2_dir"])
def pair(request):
    transformers = pytest.importorskip("transformers")
    folder = request.getfixturevalue(request.param)
    return ModelFolder.open(folder), transformers.AutoTokenizer.from_pretrained(str(folder))


@pytest.mark.parametrize("prompt", PROMPTS)
def test_plain_prompt_ids(pair, prompt: str) -> None:
    ours, reference = pair
    assert ours.encode(prompt) == reference(prompt)["input_ids"]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_chat_prompt_ids(pair, prompt: str) -> None:
    ours, reference = pair
    want = reference.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                         tokenize=True)
    want = want["input_ids"] if isinstance(want, dict) or hasattr(want, "keys") else want
    assert ours.encode(prompt, chat=True) == list(want)


def test_eos_and_context(smollm2_dir: Path) -> None:
    folder = ModelFolder.open(smollm2_dir)
    assert folder.eos_ids == {2}
    assert folder.context_length == 8192
