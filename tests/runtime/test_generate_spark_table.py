"""Generation over a Spark table of prompts (a local Spark the tests start): a DataFrame in, a
DataFrame of results out, each prompt's tokens onnxruntime's; and the errors of a table that is not
a table of prompts."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from onnx2sql.errors import InputError
from onnx2sql.runtime.spark_models import compiled_folder, generate_table
from onnx2sql.runtime.text import ModelFolder
from ort_loop import ort_greedy

pytestmark = pytest.mark.spark

TEXTS = ["The capital of France is", "Hello", "Once upon a time there was"]


@pytest.fixture(scope="module")
def spark_folder(tiny_llama3_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("spark-table") / "tiny"
    compiled_folder(tiny_llama3_dir / "model.onnx", folder)
    return folder


def test_a_dataframe_of_prompts_gets_onnxruntimes_tokens(spark_session, tiny_llama3_dir: Path,
                                                        spark_folder: Path) -> None:
    prompts = spark_session.createDataFrame([(f"q{k}", text, 1 + k % 2) for k, text in enumerate(TEXTS)],
                                            "id string, prompt string, max_new_tokens int")
    results = generate_table(tiny_llama3_dir, prompts, db=spark_folder)
    assert results.columns == ["id", "text", "finish_reason", "prompt_tokens", "token_ids"]
    rows = {row["id"]: row for row in results.collect()}
    folder = ModelFolder.open(tiny_llama3_dir)
    for k, text in enumerate(TEXTS):
        ids = folder.encode(text)
        row = rows[f"q{k}"]
        assert list(row["token_ids"]) == ort_greedy(tiny_llama3_dir, ids, 1 + k % 2)[0]
        assert row["prompt_tokens"] == len(ids) and row["text"] == folder.decode(list(row["token_ids"]))


def test_a_table_of_the_catalog_is_read_by_name(spark_session, tiny_llama3_dir: Path, spark_folder: Path) -> None:
    spark_session.createDataFrame([(TEXTS[1],)], "prompt string").createOrReplaceTempView("my_prompts")
    rows = generate_table(tiny_llama3_dir, "my_prompts", db=spark_folder, max_new_tokens=1).collect()
    ids = ModelFolder.open(tiny_llama3_dir).encode(TEXTS[1])
    assert [(row["id"], list(row["token_ids"])) for row in rows] == [(1, ort_greedy(tiny_llama3_dir, ids, 1)[0])]


@pytest.mark.parametrize(("rows", "schema", "message"), [
    ([("hi",)], "question string", "needs prompt, and may have id, max_new_tokens, seed"),
    ([("a", "hi"), ("a", "ho")], "id string, prompt string", "row 2: id \"a\" is also the id of row 1"),
    ([("",)], "prompt string", "row 1: \"prompt\" must be a non-empty string"),
])
def test_a_table_that_is_not_prompts_is_refused(spark_session, tiny_llama3_dir: Path, spark_folder: Path,
                                                rows: list, schema: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        generate_table(tiny_llama3_dir, spark_session.createDataFrame(rows, schema), db=spark_folder)


def test_a_missing_table_is_named(spark_session, tiny_llama3_dir: Path, spark_folder: Path) -> None:
    with pytest.raises(InputError, match="--prompts-table 'no_such_prompts': .*TABLE_OR_VIEW_NOT_FOUND"):
        generate_table(tiny_llama3_dir, "no_such_prompts", db=spark_folder)


def test_prompts_table_goes_with_spark(tiny_llama3_dir: Path, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "onnx2sql", "generate", str(tiny_llama3_dir), "--prompts-table", "t",
                           "-o", str(tmp_path / "o.jsonl")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "--prompts-table reads a table of Spark's catalog: it goes with --backend spark" in done.stderr
