"""Once a model is compiled, generating text and running the compiled folder import none of the
compiler's heavy modules (a process under a tight memory cap has no room for them), and give the
same answers as onnxruntime."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from decoder_feeds import feeds, ort_outputs
from ort_loop import ort_greedy

HEAVY = ("onnx", "sympy", "pyarrow", "torch", "optimum", "transformers", "onnxruntime")
PROMPT_IDS = [315, 40, 41, 42]
NEW_TOKENS = 3
# Printed last by every child: the heavy modules it imported.
REPORT_HEAVY = f"import json, sys; print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"


def run_child(code: str, cwd: Path) -> tuple[list[str], list[str]]:
    """Run `code` then REPORT_HEAVY in a fresh interpreter: (its output lines before the report, the
    heavy modules it imported)."""
    result = subprocess.run([sys.executable, "-c", f"{code}\n{REPORT_HEAVY}"], capture_output=True, text=True,
                            cwd=cwd)
    assert result.returncode == 0, result.stderr
    *lines, heavy = result.stdout.strip().splitlines()
    return lines, json.loads(heavy)


def test_generator_on_a_tiny_compiled_dir_stays_lean(tiny_compiled_dir: Path, tiny_llama3_dir: Path) -> None:
    code = ("from onnx2sql.runtime.generate import Generator\n"
            f"with Generator({str(tiny_compiled_dir)!r}, progress=False) as gen:\n"
            f"    print(gen.generate_ids({PROMPT_IDS!r}, {NEW_TOKENS}).token_ids)")
    lines, heavy = run_child(code, tiny_compiled_dir)
    assert heavy == []
    want, _ = ort_greedy(tiny_llama3_dir, PROMPT_IDS, NEW_TOKENS)
    assert json.loads(lines[-1]) == want


def test_generate_command_on_a_tiny_compiled_dir_stays_lean(tiny_compiled_dir: Path, tiny_llama3_dir: Path) -> None:
    argv = ["generate", str(tiny_compiled_dir), "--prompt", "hello there", "--max-new-tokens", str(NEW_TOKENS),
            "--json"]
    code = f"from onnx2sql.cli import main\nassert main({argv!r}) == 0"
    lines, heavy = run_child(code, tiny_compiled_dir)
    assert heavy == []
    result = json.loads(lines[-1])
    want, _ = ort_greedy(tiny_llama3_dir, result["prompt_ids"], NEW_TOKENS)
    assert result["token_ids"] == want


def test_run_command_on_a_tiny_compiled_dir_stays_lean(tiny_compiled_dir: Path, tmp_path: Path) -> None:
    model = tiny_compiled_dir / "model.onnx"
    step = feeds(model, np.array([PROMPT_IDS], dtype=np.int64))
    np.savez(tmp_path / "in.npz", **step)
    argv = ["run", str(tiny_compiled_dir / "sql"), "--inputs", str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npz")]
    _, heavy = run_child(f"from onnx2sql.cli import main\nassert main({argv!r}) == 0", tmp_path)
    assert heavy == []
    with np.load(tmp_path / "out.npz") as got:
        for name, value in ort_outputs(model, step).items():
            np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-4, err_msg=name)
