"""Batched generation: several sequences in the same statements. Each sequence gets exactly the
tokens onnxruntime gives it alone (prompts of different lengths, stops of their own), samples as it
does alone, and the prompts-file command writes one result per prompt in the input's order."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import onnx2sql
from onnx2sql.cli import main
from onnx2sql.runtime.batching import grown, left_padded, positions
from onnx2sql.runtime.generate import Generator, Sampling
from onnx2sql.runtime.prompts import batches_by_length, read_prompts
from ort_loop import ort_greedy

# Different lengths, so that the batch pads all but the longest.
PROMPTS = [[315, 40, 41, 42], [315, 7], list(range(20, 45)), [9, 300, 12, 5, 77, 8]]


@pytest.fixture(scope="module")
def db(tiny_llama3_dir: Path, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("batch") / "tiny.duckdb"
    Generator(tiny_llama3_dir, db=path, progress=False).close()
    return path


def copy_of(db: Path, folder: Path) -> Path:
    """The module's database, copied: the module's generator holds the file open."""
    return Path(shutil.copy(db, folder / "copy.duckdb"))


@pytest.fixture(scope="module")
def generator(tiny_llama3_dir: Path, db: Path):
    with Generator(tiny_llama3_dir, db=db, progress=False) as gen:
        yield gen


def test_each_sequence_gets_the_tokens_and_logits_onnxruntime_gives_it_alone(generator, tiny_llama3_dir: Path) -> None:
    steps: list[list[np.ndarray]] = []
    batch = generator.generate_batch_ids(PROMPTS, 10, on_logits=steps.append)
    for k, (prompt, result) in enumerate(zip(PROMPTS, batch.generations)):
        want_tokens, want_rows = ort_greedy(tiny_llama3_dir, prompt, len(result.token_ids))
        assert result.token_ids == want_tokens, f"sequence {k}"
        assert result.prompt_ids == prompt
        for step, want in zip(steps, want_rows):
            np.testing.assert_allclose(step[k], want, rtol=1e-3, atol=1e-3)
    assert batch.statements_per_step == generator.generate_ids(PROMPTS[0], 2).statements_per_step


def test_a_sequence_alone_and_in_a_batch_are_the_same(generator) -> None:
    alone = generator.generate_ids(PROMPTS[2], 8).token_ids
    assert generator.generate_batch_ids([PROMPTS[1], PROMPTS[2]], 8).generations[1].token_ids == alone


def test_each_sequence_stops_at_its_own_limit_and_finished_ones_leave_the_batch(generator,
                                                                                tiny_llama3_dir: Path) -> None:
    """Limits 2, 2, 3, 9: after step 2 half the rows are done and leave (rows renumbered in the
    cache), after step 3 again; the last sequence still gets onnxruntime's tokens, and the
    logits of the sequences that stay in the batch are still theirs."""
    limits = [2, 2, 3, 9]
    steps: list[list] = []
    batch = generator.generate_batch_ids(PROMPTS, limits, on_logits=steps.append)
    assert [len(g.token_ids) for g in batch.generations] == limits
    assert [g.finish_reason for g in batch.generations] == ["length"] * 4
    for prompt, result in zip(PROMPTS, batch.generations):
        assert result.token_ids == ort_greedy(tiny_llama3_dir, prompt, len(result.token_ids))[0]
    assert [sum(row is not None for row in step) for step in steps] == [4, 4, 2, 1, 1, 1, 1, 1, 1]
    want_rows = ort_greedy(tiny_llama3_dir, PROMPTS[3], 9)[1]
    for step, want in zip(steps, want_rows):
        np.testing.assert_allclose(step[3], want, rtol=1e-3, atol=1e-3)


def test_a_sequence_stops_at_its_end_of_text_while_the_others_go_on(tiny_llama3_dir: Path, db: Path,
                                                                     tmp_path: Path) -> None:
    """The model folder's end-of-text id is set to the third token sequence 0 produces alone."""
    alone = ort_greedy(tiny_llama3_dir, PROMPTS[0], 6)[0]
    eos = alone[2]
    folder = tmp_path / "model"
    shutil.copytree(tiny_llama3_dir, folder, ignore=shutil.ignore_patterns("sql", "bench", "hf"))
    config = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**config, "eos_token_id": eos}))
    (folder / "config.json").write_text(json.dumps({**json.loads((folder / "config.json").read_text()),
                                                    "eos_token_id": eos}))
    with Generator(folder, db=copy_of(db, tmp_path), progress=False) as gen:
        batch = gen.generate_batch_ids([PROMPTS[0], PROMPTS[3]], 6)
    first, other = batch.generations
    assert first.token_ids == alone[:alone.index(eos) + 1] and first.finish_reason == "eos"
    want_other = ort_greedy(tiny_llama3_dir, PROMPTS[3], 6)[0]
    cut = want_other.index(eos) + 1 if eos in want_other else 6
    assert other.token_ids == want_other[:cut]


def test_seeded_sampling_per_sequence_is_the_same_alone_and_in_a_batch(generator) -> None:
    sampling = Sampling(temperature=1.5, top_k=50, top_p=0.95)
    batch = generator.generate_batch_ids(PROMPTS[:3], 10, sampling, seeds=[11, 12, 13])
    for prompt, seed, result in zip(PROMPTS, (11, 12, 13), batch.generations):
        alone = generator.generate_ids(prompt, 10, Sampling(1.5, 50, 0.95, seed)).token_ids
        assert result.token_ids == alone
    greedy = [g.token_ids for g in generator.generate_batch_ids(PROMPTS[:3], 10).generations]
    assert [g.token_ids for g in batch.generations] != greedy


@pytest.mark.parametrize("kwargs, error, message", [
    ({"prompts": []}, onnx2sql.UsageError, "no prompts to generate from"),
    ({"prompts": [[5], []]}, onnx2sql.InputError, "a prompt has no tokens"),
    ({"prompts": [[5], [5, 320]]}, onnx2sql.InputError, "token id 320 is outside the model's vocabulary"),
    ({"prompts": [[5], [6]], "max_new_tokens": [2]}, onnx2sql.UsageError, "2 prompts need as many token limits"),
    ({"prompts": [[5], [6]], "max_new_tokens": [2, 0]}, onnx2sql.UsageError, "--max-new-tokens must be at least 1"),
    ({"prompts": [[5], [6]], "seeds": [1, -2]}, onnx2sql.UsageError, "--seed must be >= 0, got -2"),
    ({"prompts": [[5], list(range(3, 253))]}, onnx2sql.InputError,
     r"the longest prompt \(250 tokens\) plus 10 new tokens exceeds the model's context of 256 tokens"),
])
def test_bad_batches(generator, kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        generator.generate_batch_ids(**{"max_new_tokens": 10, **kwargs})


def test_batches_group_prompts_of_similar_length() -> None:
    assert batches_by_length([5, 1, 9, 1, 4], 2) == [[1, 3], [4, 0], [2]]


def write_lines(path: Path, lines: list) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_prompts_file_writes_each_result_in_the_input_order(tiny_llama3_dir: Path, db: Path, tmp_path: Path,
                                                            capsys) -> None:
    work = tmp_path / "work"
    work.mkdir()
    prompts = write_lines(work / "prompts.jsonl", [
        {"id": "long", "prompt": "the longest prompt of this file, by some way"},
        {"id": 7, "prompt": "hi", "max_new_tokens": 3},
        "",
        {"prompt": "a prompt with no id"},
    ])
    out = work / "out.jsonl"
    db = copy_of(db, tmp_path)
    code = main(["generate", str(tiny_llama3_dir), "--db", str(db), "--prompts-file", str(prompts), "-o", str(out),
                 "--batch", "2", "--max-new-tokens", "5"])
    assert code == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["long", 7, 4]  # no id: the line number
    assert [len(line["token_ids"]) for line in lines] == [5, 3, 5]
    with Generator(tiny_llama3_dir, db=db, progress=False) as gen:
        for line, text in zip(lines, ["the longest prompt of this file, by some way", "hi", "a prompt with no id"]):
            ids = gen.encode(text)
            assert line["prompt_tokens"] == len(ids)
            assert line["token_ids"] == ort_greedy(tiny_llama3_dir, ids, len(line["token_ids"]))[0]
            assert line["text"] == gen.folder.decode(line["token_ids"])
            assert line["finish_reason"] == "length"
    assert "[batch 2/2: 1 prompt," in capsys.readouterr().err
    assert sorted(p.name for p in work.iterdir()) == ["out.jsonl", "prompts.jsonl"]  # no staging file left


@pytest.mark.parametrize("lines, message", [
    (["{\"prompt\": \"ok\"}", "not json"], "prompts.jsonl:2: not valid JSON"),
    (["[1, 2]"], "prompts.jsonl:1: must be a JSON object with a \"prompt\", not a list"),
    (["{\"prompt\": \"\"}"], "prompts.jsonl:1: \"prompt\" must be a non-empty string"),
    (["{\"text\": \"hello\"}"], "prompts.jsonl:1: unknown field(s) ['text']"),
    (["{\"id\": 1, \"prompt\": \"a\"}", "{\"id\": 1, \"prompt\": \"b\"}"],
     "prompts.jsonl:2: id 1 is also the id of line 1"),
    (["{\"prompt\": \"a\", \"max_new_tokens\": 0}"], "prompts.jsonl:1: \"max_new_tokens\" must be an integer >= 1"),
    (["{\"prompt\": \"a\", \"seed\": \"x\"}"], "prompts.jsonl:1: \"seed\" must be an integer >= 0"),
    (["{\"prompt\": \"a\", \"id\": [1]}"], "prompts.jsonl:1: \"id\" must be a string or an integer"),
    (["", "  "], "holds no prompts"),
])
def test_bad_prompts_file_is_named_and_the_earlier_output_kept(tiny_llama3_dir: Path, tmp_path: Path, capsys,
                                                               lines: list[str], message: str) -> None:
    prompts = write_lines(tmp_path / "prompts.jsonl", lines)
    out = tmp_path / "out.jsonl"
    out.write_text("earlier results\n")
    code = main(["generate", str(tiny_llama3_dir), "--db", str(tmp_path / "never.duckdb"),
                 "--prompts-file", str(prompts), "-o", str(out)])
    assert code == 1
    assert message in capsys.readouterr().err
    assert out.read_text() == "earlier results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "prompts.jsonl"]  # nothing compiled


@pytest.mark.parametrize("args, message", [
    (["--prompts-file", "p.jsonl"], "--prompts-file needs -o"),
    (["--prompt", "hi", "-o", "out.jsonl"], "-o goes with --prompts-file"),
    (["--prompt", "hi", "--batch", "4"], "--batch goes with --prompts-file"),
    (["--prompt", "hi", "--prompts-file", "p.jsonl", "-o", "o.jsonl"], "give either --prompt or --prompts-file"),
    ([], "give either --prompt or --prompts-file"),
    (["--prompts-file", "p.jsonl", "-o", "o.jsonl", "--batch", "0"], "--batch must be at least 1, got 0"),
    (["--prompts-file", "p.jsonl", "-o", "o.jsonl", "--json"], "--json goes with --prompt"),
])
def test_prompts_file_usage_errors(tiny_llama3_dir: Path, capsys, args: list[str], message: str) -> None:
    assert main(["generate", str(tiny_llama3_dir), *args]) == 2
    assert message in capsys.readouterr().err


def test_a_prompt_beyond_the_context_stops_the_file_before_any_batch(tiny_llama3_dir: Path, db: Path,
                                                                      tmp_path: Path, capsys) -> None:
    prompts = write_lines(tmp_path / "p.jsonl", [{"id": "ok", "prompt": "hi"},
                                                {"id": "long", "prompt": "hi", "max_new_tokens": 300}])
    out = tmp_path / "out.jsonl"
    assert main(["generate", str(tiny_llama3_dir), "--db", str(copy_of(db, tmp_path)), "--prompts-file",
                 str(prompts), "-o", str(out), "--batch", "1"]) == 1
    err = capsys.readouterr().err
    assert 'p.jsonl: prompt id "long" (' in err and "plus 300 new tokens exceeds the model's context of 256" in err
    assert "[batch" not in err and not out.exists()


def test_python_api_writes_what_the_command_writes(tiny_llama3_dir: Path, db: Path, tmp_path: Path) -> None:
    prompts = write_lines(tmp_path / "p.jsonl", [{"id": "x", "prompt": "hello there"}, {"id": "y", "prompt": "hi"}])
    copy = copy_of(db, tmp_path)
    lines = onnx2sql.generate_file(tiny_llama3_dir, prompts, tmp_path / "api.jsonl", batch=2, max_new_tokens=4,
                                   db=copy)
    assert main(["generate", str(tiny_llama3_dir), "--db", str(copy), "--prompts-file", str(prompts),
                 "-o", str(tmp_path / "cli.jsonl"), "--max-new-tokens", "4"]) == 0
    assert (tmp_path / "api.jsonl").read_text() == (tmp_path / "cli.jsonl").read_text()
    assert [json.loads(line) for line in (tmp_path / "api.jsonl").read_text().splitlines()] == lines
    assert [line["id"] for line in lines] == ["x", "y"]
    never = tmp_path / "never.duckdb"
    with pytest.raises(onnx2sql.InputError, match="bad.jsonl:1: not valid JSON"):
        onnx2sql.generate_file(tiny_llama3_dir, write_lines(tmp_path / "bad.jsonl", ["{"]), tmp_path / "o.jsonl",
                               db=never)
    assert not never.exists()  # the file is checked before the model is opened or compiled


def test_a_duckdb_table_of_prompts_in_and_a_table_of_results_out(tiny_llama3_dir: Path, db: Path,
                                                                  tmp_path: Path) -> None:
    """The README's round trip: COPY a table to JSON lines, generate, read the results back with
    read_json and join them to the table."""
    import duckdb

    con = duckdb.connect()
    con.execute("CREATE TABLE questions AS SELECT * FROM (VALUES (10, 'hello there'), (20, 'the end')) t(id, prompt)")
    prompts, results = tmp_path / "prompts.jsonl", tmp_path / "results.jsonl"
    con.execute(f"COPY (SELECT id, prompt FROM questions) TO '{prompts}' (FORMAT json)")
    assert main(["generate", str(tiny_llama3_dir), "--db", str(copy_of(db, tmp_path)), "--prompts-file", str(prompts),
                 "-o", str(results), "--max-new-tokens", "3"]) == 0
    rows = con.execute(f"SELECT q.id, q.prompt, r.token_ids FROM questions q JOIN read_json('{results}') r "
                       "USING (id) ORDER BY q.id").fetchall()
    with Generator(tiny_llama3_dir, db=copy_of(db, tmp_path), progress=False) as gen:
        assert [(i, list(t)) for i, _, t in rows] == [
            (i, ort_greedy(tiny_llama3_dir, gen.encode(p), 3)[0]) for i, p, _ in rows]


def test_reading_a_prompts_file(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.jsonl", [{"prompt": "x", "seed": 4, "max_new_tokens": 9, "id": "a"}])
    record = read_prompts(path)[0]
    assert (record.id, record.prompt, record.seed, record.max_new_tokens) == ("a", "x", 4, 9)


def test_left_padding_mask_and_positions() -> None:
    ids, mask = left_padded([[7, 8, 9], [5]])
    assert ids.tolist() == [[7, 8, 9], [0, 0, 5]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert positions(mask, 3).tolist() == [[0, 1, 2], [1, 1, 0]]  # padding at 1, as the exporters' code
    assert positions(grown(mask), 1).tolist() == [[3], [1]]
