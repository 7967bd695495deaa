"""SmolLM2-135M generates in DuckDB the same greedy tokens as onnxruntime, with logits within 1e-3
at every step; "The capital of France is" names Paris."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onnx2sql.runtime.generate import Generator
from ort_loop import ort_greedy

NEW_TOKENS = 16


@pytest.fixture(scope="module")
def generator(smollm2_compiled: Path, smollm2_dir: Path):
    with Generator(smollm2_dir, progress=False) as gen:
        yield gen


@pytest.mark.parametrize("prompt", ["The capital of France is", "def fibonacci(n):"])
def test_greedy_equals_onnxruntime(generator, smollm2_dir: Path, prompt: str) -> None:
    rows: list[np.ndarray] = []
    ids = generator.folder.encode(prompt)
    result = generator.generate_ids(ids, NEW_TOKENS, on_logits=rows.append)
    want_tokens, want_rows = ort_greedy(smollm2_dir, ids, len(result.token_ids))
    assert result.token_ids == want_tokens
    assert len(result.token_ids) == NEW_TOKENS or result.finish_reason == "eos"
    for got, want in zip(rows, want_rows):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
    if prompt.startswith("The capital"):
        assert "Paris" in result.text


def test_a_batch_of_prompts_of_different_lengths_equals_onnxruntime_alone(generator, smollm2_dir: Path) -> None:
    prompts = [generator.folder.encode(p) for p in ("The capital of France is", "Hello",
                                                    "The three primary colors are red,")]
    batch = generator.generate_batch_ids(prompts, 6)
    for ids, result in zip(prompts, batch.generations):
        want = ort_greedy(smollm2_dir, ids, len(result.token_ids))[0]
        assert result.token_ids == want
        assert len(result.token_ids) == 6 or result.finish_reason == "eos"
