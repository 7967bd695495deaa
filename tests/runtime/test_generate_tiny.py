"""Generation in DuckDB on tiny-llama3: the same greedy tokens as onnxruntime, logits within 1e-3 at
every step, reproducible seeded sampling, and clear errors for bad input."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import onnx2sql
from onnx2sql.runtime.generate import Generator, Sampling
from ort_loop import ort_greedy

PROMPTS = [[315, 40, 41, 42], [315, 7], list(range(20, 45))]


@pytest.fixture(scope="module")
def generator(tiny_llama3_dir: Path, tmp_path_factory):
    db = tmp_path_factory.mktemp("gen") / "tiny.duckdb"
    with Generator(tiny_llama3_dir, db=db, progress=False) as gen:
        yield gen


@pytest.mark.parametrize("prompt", PROMPTS, ids=lambda p: f"{len(p)}tok")
def test_greedy_tokens_and_logits_equal_onnxruntime(generator, tiny_llama3_dir: Path, prompt: list[int]) -> None:
    rows: list[np.ndarray] = []
    result = generator.generate_ids(prompt, 16, on_logits=rows.append)
    want_tokens, want_rows = ort_greedy(tiny_llama3_dir, prompt, len(result.token_ids))
    assert result.token_ids == want_tokens
    assert result.finish_reason == ("eos" if len(result.token_ids) < 16 else "length")
    for got, want in zip(rows, want_rows):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)


def test_seeded_sampling_is_reproducible(generator) -> None:
    sampling = Sampling(temperature=1.5, top_k=50, top_p=0.95, seed=1234)
    first = generator.generate_ids(PROMPTS[0], 12, sampling).token_ids
    again = generator.generate_ids(PROMPTS[0], 12, sampling).token_ids
    assert first == again
    others = [generator.generate_ids(PROMPTS[0], 12, Sampling(1.5, 50, 0.95, seed)).token_ids for seed in (1, 2, 3)]
    assert any(o != first for o in others)


def test_top_k_one_is_greedy(generator) -> None:
    greedy = generator.generate_ids(PROMPTS[1], 10).token_ids
    assert generator.generate_ids(PROMPTS[1], 10, Sampling(temperature=0.7, top_k=1, seed=5)).token_ids == greedy


def test_tiny_top_p_is_greedy(generator) -> None:
    greedy = generator.generate_ids(PROMPTS[1], 10).token_ids
    assert generator.generate_ids(PROMPTS[1], 10, Sampling(temperature=1.0, top_p=1e-6, seed=5)).token_ids == greedy


def test_empty_prompt(generator) -> None:
    with pytest.raises(onnx2sql.InputError, match="the prompt is empty"):
        generator.generate("", 4)


def test_prompt_beyond_context(generator) -> None:
    with pytest.raises(onnx2sql.InputError, match=r"prompt \(250 tokens\) plus 10 new tokens exceeds the model's "
                                                  r"context of 256 tokens"):
        generator.generate_ids(list(range(3, 253)), 10)


@pytest.mark.parametrize("bad", [{"temperature": -1.0}, {"top_p": 0.0}, {"top_k": -2}])
def test_bad_sampling_values(generator, bad: dict) -> None:
    with pytest.raises(onnx2sql.InputError, match="must be"):
        generator.generate_ids(PROMPTS[0], 2, Sampling(**bad))


def test_missing_model_folder(tmp_path: Path) -> None:
    with pytest.raises(onnx2sql.InputError, match="does not exist"):
        Generator(tmp_path / "nowhere")


def test_folder_that_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(onnx2sql.InputError, match="is not an exported model folder: missing model.onnx, tokenizer.json"):
        Generator(tmp_path)


def test_database_of_another_model(tiny_llama3_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(tiny_llama3_dir, other, ignore=shutil.ignore_patterns("sql", "hf"))
    db = tmp_path / "other.duckdb"
    Generator(other, db=db, progress=False).close()
    # a different model under the same folder layout: change one weight
    import onnx
    model = onnx.load(str(other / "model.onnx"))
    model.graph.initializer[0].raw_data = bytes(len(model.graph.initializer[0].raw_data))
    onnx.save(model, str(other / "model.onnx"))
    with pytest.raises(onnx2sql.InputError, match="was compiled from another model"):
        Generator(other, db=db)


def _mark_as_format(db: Path, version: str) -> None:
    import duckdb

    con = duckdb.connect(str(db))
    con.execute("UPDATE onnx2sql_meta SET value = ? WHERE key = 'format'", [version])
    con.close()


def test_database_of_an_older_format(tiny_llama3_dir: Path, tmp_path: Path) -> None:
    """The model folder's own database is compiled again when an older onnx2sql wrote it; a database
    the user named is refused with the reason instead of being overwritten."""
    from onnx2sql.api import FORMAT_VERSION, written_by_older_version

    folder = tmp_path / "tiny"
    shutil.copytree(tiny_llama3_dir, folder, ignore=shutil.ignore_patterns("sql", "hf"))
    own = folder / "sql" / "model.duckdb"
    Generator(folder, progress=False).close()
    _mark_as_format(own, "0")
    assert written_by_older_version(own)
    with Generator(folder, progress=False) as gen:
        assert gen.generate_ids([315, 7], 2).token_ids
    assert not written_by_older_version(own)

    named = tmp_path / "named.duckdb"
    Generator(folder, db=named, progress=False).close()
    _mark_as_format(named, "0")
    with pytest.raises(onnx2sql.InputError, match="was not written by this version of onnx2sql"):
        Generator(folder, db=named)
    assert FORMAT_VERSION != "0"


def test_database_locked_by_another_process(generator, tiny_llama3_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "locked.duckdb"
    Generator(tiny_llama3_dir, db=db, progress=False).close()
    holder = subprocess.Popen([sys.executable, "-c",
                               "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ok', flush=True); "
                               "time.sleep(60)", str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ok"
        with pytest.raises(onnx2sql.InputError, match="is locked by another process"):
            Generator(tiny_llama3_dir, db=db)
    finally:
        holder.kill()
        holder.wait()
    with Generator(tiny_llama3_dir, db=db) as gen:  # intact afterwards
        assert gen.generate_ids(PROMPTS[0], 3).token_ids == ort_greedy(tiny_llama3_dir, PROMPTS[0], 3)[0]


def test_cli_json_and_reuse_of_the_database(tiny_llama3_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    args = [sys.executable, "-m", "onnx2sql", "generate", str(tiny_llama3_dir), "--prompt", "hello world",
            "--max-new-tokens", "5", "--db", str(db), "--json"]
    first = subprocess.run(args, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    mtime = db.stat().st_mtime_ns
    second = subprocess.run(args, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert db.stat().st_mtime_ns == mtime  # not compiled again
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert a["token_ids"] == b["token_ids"] and len(a["token_ids"]) >= 1
    assert set(a) == {"prompt_ids", "token_ids", "text", "ttft_s", "tokens_per_s", "finish_reason",
                      "statements_per_step"}
    assert a["statements_per_step"] == b["statements_per_step"] > 0
    assert a["finish_reason"] in ("eos", "length")
    assert a["token_ids"] == ort_greedy(tiny_llama3_dir, a["prompt_ids"], len(a["token_ids"]))[0]


def test_bad_memory_limit_names_the_flag(tiny_llama3_dir: Path) -> None:
    with pytest.raises(onnx2sql.InputError, match="--memory-limit '300 apples' is not a size such as 400MB"):
        Generator(tiny_llama3_dir, memory_limit="300 apples")


def test_a_decode_step_runs_its_regions_and_nothing_copies_the_cache(tiny_llama3_dir: Path) -> None:
    """A decode step: one statement per input it loads (not the cache, which grows in place) and
    per symbol, the head's row filter, one per region, and the choice of the token: no renames."""
    with Generator(tiny_llama3_dir, progress=False) as gen:
        program = gen.program
        result = gen.generate_ids([5, 9, 2], 3)
    loaded = [s for s in program.inputs if not s.name.startswith("past_key_values.")]
    assert result.statements_per_step == len(loaded) + len(program.symbols) + 1 + len(program.regions) + 1
