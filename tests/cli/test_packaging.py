"""The wheel carries the SQL templates, and the runtime path never imports torch."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_ships_every_template(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("onnx2sql-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = [p.relative_to(REPO / "templates").as_posix() for p in (REPO / "templates").rglob("*.j2")]
    assert templates
    missing = [t for t in templates if f"onnx2sql/templates/{t}" not in names]
    assert missing == []


def test_run_and_generate_do_not_import_torch(tiny_llama3_dir: Path, tmp_path: Path) -> None:
    code = (
        "import sys, onnx2sql\n"
        "from onnx2sql.runtime.generate import Generator\n"
        f"with Generator({str(tiny_llama3_dir)!r}, db={str(tmp_path / 'x.duckdb')!r}, progress=False) as g:\n"
        "    g.generate('hello', 2)\n"
        "heavy = [m for m in ('torch', 'transformers', 'optimum') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
