"""Generation with the model compiled into, and run in, SQLite and PostgreSQL (a real server the
tests start): each sequence of a batch gets onnxruntime's greedy tokens and logits while finished
sequences leave the batch, and seeded sampling is the same as on DuckDB."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onnx2sql.runtime.backends import open_generator
from onnx2sql.runtime.generate import Generator, Sampling
from ort_loop import ort_greedy

PROMPTS = [[315, 40, 41, 42], [315, 7], list(range(20, 45)), [9, 300, 12, 5, 77, 8]]


@pytest.fixture(scope="module", params=[pytest.param("sqlite", marks=pytest.mark.sqlite),
                                        pytest.param("postgres", marks=pytest.mark.postgres)])
def generator(request: pytest.FixtureRequest, tiny_llama3_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    if request.param == "postgres":
        db = request.getfixturevalue("postgres_url")
    else:
        db = tmp_path_factory.mktemp("sqlite") / "tiny.sqlite"
    with open_generator(tiny_llama3_dir, request.param, db=db, progress=False) as gen:
        yield gen


def test_each_sequence_gets_onnxruntimes_tokens_and_logits(generator, tiny_llama3_dir: Path) -> None:
    steps: list[list[np.ndarray]] = []
    limits = [2, 2, 3, 8]  # half the rows leave after step 2, and again after step 3
    batch = generator.generate_batch_ids(PROMPTS, limits, on_logits=steps.append)
    assert [len(g.token_ids) for g in batch.generations] == limits
    for k, (prompt, result) in enumerate(zip(PROMPTS, batch.generations)):
        want_tokens, want_rows = ort_greedy(tiny_llama3_dir, prompt, len(result.token_ids))
        assert result.token_ids == want_tokens, f"sequence {k}"
        for step, want in zip(steps, want_rows):
            np.testing.assert_allclose(step[k], want, rtol=1e-3, atol=1e-3)


def test_seeded_sampling_is_duckdbs(generator, tiny_llama3_dir: Path) -> None:
    sampling = Sampling(temperature=1.5, top_k=50, top_p=0.95)
    got = generator.generate_batch_ids(PROMPTS[:3], 8, sampling, seeds=[11, 12, 13])
    with Generator(tiny_llama3_dir, progress=False) as duckdb_gen:
        want = duckdb_gen.generate_batch_ids(PROMPTS[:3], 8, sampling, seeds=[11, 12, 13])
    assert [g.token_ids for g in got.generations] == [g.token_ids for g in want.generations]
