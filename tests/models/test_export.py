"""Model export: recipes produce ONNX models that match PyTorch, and bad sources fail clearly."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from onnx2sql.errors import InputError
from onnx2sql.export import export_model, is_complete_export

ONNX_SIZE_LIMIT = 1_000_000  # tiny-llama3's model.onnx plus any external data
REPO_ROOT = Path(__file__).resolve().parents[2]


def onnx_files(folder: Path) -> list[Path]:
    return [folder / "model.onnx", *folder.glob("model.onnx_data")]


def empty_past(session: ort.InferenceSession) -> dict[str, np.ndarray]:
    """past_key_values.* of length 0, shaped from the model's own input declarations."""
    return {
        i.name: np.zeros((1, i.shape[1], 0, i.shape[3]), dtype=np.float32)
        for i in session.get_inputs() if i.name.startswith("past_key_values.")
    }


def run_step(
    session: ort.InferenceSession, ids: list[int], past: dict[str, np.ndarray]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One forward pass over `ids` after `past`; returns logits and the next past_key_values."""
    past_len = next(iter(past.values())).shape[2]
    total = past_len + len(ids)
    feeds = {
        "input_ids": np.array([ids], dtype=np.int64),
        "attention_mask": np.ones((1, total), dtype=np.int64),
        "position_ids": np.arange(past_len, total, dtype=np.int64)[None],
        **past,
    }
    names = [o.name for o in session.get_outputs()]
    results = dict(zip(names, session.run(names, feeds)))
    next_past = {
        name.replace("present.", "past_key_values.", 1): value
        for name, value in results.items() if name.startswith("present.")
    }
    return results["logits"], next_past


def greedy_continuation(session: ort.InferenceSession, prompt_ids: list[int], steps: int) -> list[int]:
    logits, past = run_step(session, prompt_ids, empty_past(session))
    generated: list[int] = []
    while True:
        generated.append(int(logits[0, -1].argmax()))
        if len(generated) == steps:
            return generated
        logits, past = run_step(session, generated[-1:], past)


# --- tiny-llama3 ---------------------------------------------------------------------------------

def test_tiny_llama3_is_small_and_complete(tiny_llama3_dir: Path) -> None:
    assert is_complete_export(tiny_llama3_dir)
    assert sum(p.stat().st_size for p in onnx_files(tiny_llama3_dir)) < ONNX_SIZE_LIMIT
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (tiny_llama3_dir / name).is_file(), name
    config = json.loads((tiny_llama3_dir / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
            config["num_key_value_heads"], config["head_dim"]) == (64, 2, 4, 2, 16)
    assert config["rope_theta"] == 500000.0 and config["tie_word_embeddings"] is False
    generation = json.loads((tiny_llama3_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"], "generation_config.json names no eos token"


def test_tiny_llama3_inputs_and_outputs(tiny_llama3_dir: Path) -> None:
    model = onnx.load(str(tiny_llama3_dir / "model.onnx"), load_external_data=False)
    kv = [f"{layer}.{part}" for layer in range(2) for part in ("key", "value")]
    assert [i.name for i in model.graph.input] == (
        ["input_ids", "attention_mask", "position_ids"] + [f"past_key_values.{k}" for k in kv])
    assert [o.name for o in model.graph.output] == ["logits"] + [f"present.{k}" for k in kv]
    assert model.opset_import[0].version == 18
    # Every RMSNorm keeps its own weight: 2 per layer plus the final norm.
    norm_weights = [t for t in model.graph.initializer if t.name.endswith("norm.weight")]
    assert len(norm_weights) == 5


def test_tiny_llama3_matches_pytorch_prefill_and_decode(tiny_llama3_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    reference = AutoModelForCausalLM.from_pretrained(tiny_llama3_dir / "hf", dtype=torch.float32).eval()
    session = ort.InferenceSession(str(tiny_llama3_dir / "model.onnx"))
    prompt, next_token = [315, 40, 83, 200, 7], [123]

    onnx_prefill, past = run_step(session, prompt, empty_past(session))
    onnx_decode, _ = run_step(session, next_token, past)
    assert next(iter(past.values())).shape[2] == len(prompt)
    with torch.no_grad():
        torch_prefill = reference(torch.tensor([prompt]), use_cache=True)
        torch_decode = reference(torch.tensor([next_token]), past_key_values=torch_prefill.past_key_values)

    np.testing.assert_allclose(onnx_prefill, torch_prefill.logits.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(onnx_decode, torch_decode.logits.numpy(), rtol=0, atol=1e-4)
    # Random but not degenerate: the tokens are told apart.
    assert onnx_prefill[0, -1].std() > 0.1


def test_tiny_llama3_tokenizer_adds_bos_and_matches_vocab(tiny_llama3_dir: Path) -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tiny_llama3_dir / "tokenizer.json"))
    config = json.loads((tiny_llama3_dir / "config.json").read_text())
    assert tokenizer.get_vocab_size() == config["vocab_size"] == 320
    encoded = tokenizer.encode("The capital of France is")
    assert encoded.ids[0] == config["bos_token_id"] == tokenizer.token_to_id("<|begin_of_text|>")
    assert tokenizer.decode(encoded.ids) == "The capital of France is"
    assert (tiny_llama3_dir / "chat_template.jinja").is_file()


def test_export_is_idempotent(tiny_llama3_dir: Path) -> None:
    before = (tiny_llama3_dir / "model.onnx").stat().st_mtime_ns
    started = time.monotonic()
    assert export_model("tiny-llama3", tiny_llama3_dir) == tiny_llama3_dir
    assert time.monotonic() - started < 2.0
    assert (tiny_llama3_dir / "model.onnx").stat().st_mtime_ns == before


def test_force_replaces_an_export_without_leftovers(tiny_llama3_dir: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "tiny"
    export_model("tiny-llama3", out_dir)
    first = (out_dir / "model.onnx").stat().st_mtime_ns
    (out_dir / "stale.txt").write_text("from the previous export")
    export_model("tiny-llama3", out_dir, force=True)
    assert (out_dir / "model.onnx").stat().st_mtime_ns != first
    assert not (out_dir / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]
    # The recipe is seeded: every export is byte for byte the same.
    assert (out_dir / "model.onnx").read_bytes() == (tiny_llama3_dir / "model.onnx").read_bytes()


def test_hf_folder_source_exports_the_same_model(tiny_llama3_dir: Path, tmp_path: Path) -> None:
    # A fresh process, through the command line: nothing is pre-imported or pre-registered.
    command = [sys.executable, "-m", "onnx2sql", "export", "--model", str(tiny_llama3_dir / "hf"),
               "-o", str(tmp_path / "from-folder")]
    finished = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
    assert finished.returncode == 0, finished.stderr
    out_dir = Path(finished.stdout.strip())
    prompt = [315, 10, 20, 30]
    sessions = [ort.InferenceSession(str(folder / "model.onnx")) for folder in (tiny_llama3_dir, out_dir)]
    recipe_logits, folder_logits = (run_step(s, prompt, empty_past(s))[0] for s in sessions)
    np.testing.assert_allclose(folder_logits, recipe_logits, rtol=0, atol=1e-5)
    assert (out_dir / "tokenizer.json").read_text() == (tiny_llama3_dir / "tokenizer.json").read_text()


# --- smollm2-135m --------------------------------------------------------------------------------

@pytest.mark.slow
def test_smollm2_greedy_continuation_knows_paris(smollm2_dir: Path) -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(smollm2_dir / "tokenizer.json"))
    prompt = tokenizer.encode("The capital of France is").ids
    assert prompt[0] != 1, "no bos token for a raw prompt, as the real SmolLM2 tokenizer does"
    session = ort.InferenceSession(str(smollm2_dir / "model.onnx"))
    text = tokenizer.decode(greedy_continuation(session, prompt, steps=16))
    assert "Paris" in text, text


@pytest.mark.slow
def test_smollm2_special_tokens_and_chat_template(smollm2_dir: Path) -> None:
    special = json.loads((smollm2_dir / "special_tokens_map.json").read_text())
    assert (special["bos_token"], special["eos_token"]) == ("<|im_start|>", "<|im_end|>")
    generation = json.loads((smollm2_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == 2
    assert "<|im_start|>" in (smollm2_dir / "chat_template.jinja").read_text()


# --- errors --------------------------------------------------------------------------------------

def test_missing_path_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(InputError, match="no-such-model"):
        export_model(str(missing), tmp_path / "out")


def test_hub_id_is_never_downloaded(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="never downloads") as error:
        export_model("meta-llama/Llama-3.2-1B", tmp_path / "out")
    assert "meta-llama/Llama-3.2-1B" in str(error.value) and "tiny-llama3" in str(error.value)


def test_non_causal_config_is_rejected(tmp_path: Path) -> None:
    from transformers import BertConfig

    folder = tmp_path / "bert"
    folder.mkdir()
    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).to_json_file(
        folder / "config.json")
    with pytest.raises(InputError, match="'bert'") as error:
        export_model(str(folder), tmp_path / "out")
    assert str(folder) in str(error.value)
    assert not (tmp_path / "out").exists()


def test_folder_without_config_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no config.json"):
        export_model(str(tmp_path), tmp_path / "out")


def test_file_that_is_not_gguf_is_rejected(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a gguf file")
    with pytest.raises(InputError, match="not a GGUF file"):
        export_model(str(fake), tmp_path / "out")


def test_failed_export_leaves_nothing_behind(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + bytes(60))
    with pytest.raises(InputError, match="broken.gguf"):
        export_model(str(broken), tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.gguf"]


def test_refuses_to_overwrite_a_folder_that_is_not_an_export(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("user data")
    with pytest.raises(InputError, match="holds no onnx2sql export"):
        export_model("tiny-llama3", tmp_path, force=True)
    assert (tmp_path / "keep.txt").read_text() == "user data"


def test_importing_export_does_not_import_torch() -> None:
    code = ("import sys, onnx2sql, onnx2sql.export; "
            "heavy = [m for m in ('torch', 'transformers', 'optimum') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)
