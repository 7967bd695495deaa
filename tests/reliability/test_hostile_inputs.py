"""Hostile input, table-driven: every bad model, file, flag or database below ends in a one-line
error naming the problem (exit 2 for a usage error, 1 for any other) or in a correct result; the
user's files survive and nothing is left behind in the temp folder or beside the output.

Each case builds its own bad input in a fresh folder; the tiny-llama3 export is compiled once."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import duckdb
import numpy as np
import onnx
import onnx.helper as oh
import onnxruntime as ort
import pytest

import onnx2sql
from onnx2sql.api import compiled_from, open_compiled_db
from onnx2sql.cli import main
from onnx2sql.runtime.generate import Generator
from onnx2sql.runtime.session import connect
from onnx2sql.storage.folders import staging_dir

VOCAB = 320  # tiny-llama3's vocabulary (and embedding rows)
DUCKDB_BLOCK, DUCKDB_HEADER = 262144, 12288  # DuckDB's block size and its three header blocks


@dataclass
class Workspace:
    """One case's own folder (the working folder while it runs) and the files it must not lose."""

    root: Path
    tiny: Path
    kept: dict[Path, bytes] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        return self.root / name

    def keep(self, path: Path, content: bytes) -> Path:
        """A user's file that must still hold `content` after the case."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        self.kept[path] = content
        return path

    def model_folder(self) -> Path:
        """A private copy of the compiled tiny-llama3 folder, to damage."""
        return Path(shutil.copytree(self.tiny, self.root / "tiny"))

    def save(self, model: onnx.ModelProto, name: str = "m.onnx") -> Path:
        path = self.path(name)
        onnx.save(model, path)
        return path


# --- bad inputs, built with onnx.helper --------------------------------------------------------------------------

def _model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
           opset: int = 18) -> onnx.ModelProto:
    graph = oh.make_graph(nodes, "g", inputs, outputs)
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)])


def _float(name: str, shape: list | None) -> onnx.ValueInfoProto:
    return oh.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape)


def _relu(inp: str = "x", out: str = "y") -> onnx.NodeProto:
    return oh.make_node("Relu", [inp], [out], name="relu")


def _string_typed_axis() -> onnx.ModelProto:
    node = oh.make_node("Softmax", ["x"], ["y"], name="soft")
    node.attribute.append(oh.make_attribute("axis", "1"))  # a STRING where Softmax takes an INT
    return _model([node], [_float("x", [2, 3])], [_float("y", None)])


def _decoder_feeds(model: Path, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Feeds for a first step (no past) of an Optimum decoder export."""
    proto = onnx.load(str(model), load_external_data=False)
    batch, seq = ids.shape
    feeds = {"input_ids": ids.astype(np.int64), "attention_mask": np.ones((batch, seq), np.int64),
             "position_ids": np.arange(seq, dtype=np.int64)[None, :].repeat(batch, 0)}
    for value in proto.graph.input:
        if value.name.startswith("past_key_values."):
            dims = value.type.tensor_type.shape.dim
            feeds[value.name] = np.zeros((batch, dims[1].dim_value, 0, dims[3].dim_value), np.float32)
    return feeds


def _flip_every_block(db: Path) -> None:
    """Damage one byte range in every data block, as a failing disk would."""
    with db.open("r+b") as handle:
        for offset in range(DUCKDB_HEADER + 100, db.stat().st_size, DUCKDB_BLOCK):
            handle.seek(offset)
            handle.write(b"\xff" * 8)


def _dead_process_id() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# --- the cases: (id, what builds the input and returns the command line, exit code, fragments of stderr) ----------

@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Workspace], list[str]]
    code: int
    fragments: tuple[str, ...]


def _compile_into_user_folder(ws: Workspace) -> list[str]:
    ws.keep(ws.path("mine/notes.txt"), b"a user's notes")
    return ["compile", str(ws.tiny / "model.onnx"), "-o", "mine", "-q"]


def _compile_into_working_folder(ws: Workspace) -> list[str]:
    ws.keep(ws.path("notes.txt"), b"a user's notes")
    return ["compile", str(ws.tiny / "model.onnx"), "-o", ".", "-q"]


def _compile_model(model: Callable[[], onnx.ModelProto]) -> Callable[[Workspace], list[str]]:
    return lambda ws: ["compile", str(ws.save(model())), "-o", "out", "-q"]


def _compile_file(content: bytes | None, name: str) -> Callable[[Workspace], list[str]]:
    """A model path holding `content`, or a folder when content is None."""
    def build(ws: Workspace) -> list[str]:
        if content is None:
            ws.path(name).mkdir()
        else:
            ws.path(name).write_bytes(content)
        return ["compile", name, "-o", "out", "-q"]
    return build


def _run_tiny(ids: np.ndarray, output: str = "o.npz") -> Callable[[Workspace], list[str]]:
    def build(ws: Workspace) -> list[str]:
        np.savez(ws.path("in.npz"), **_decoder_feeds(ws.tiny / "model.onnx", ids))
        return ["run", str(ws.tiny / "sql"), "--inputs", "in.npz", "-o", output]
    return build


def _run_unchecked_index(ws: Workspace) -> list[str]:
    """run on a database that does not record which inputs are indices (as earlier versions wrote)."""
    folder = ws.model_folder()
    con = duckdb.connect(str(folder / "sql" / "model.duckdb"))
    con.execute("DELETE FROM onnx2sql_meta WHERE key = 'index_bounds'")
    con.close()
    np.savez(ws.path("in.npz"), **_decoder_feeds(ws.tiny / "model.onnx", np.array([[5, 100000]])))
    return ["run", str(folder / "sql"), "--inputs", "in.npz", "-o", "o.npz"]


def _run_with_random_npz(ws: Workspace) -> list[str]:
    ws.keep(ws.path("in.npz"), np.random.default_rng(0).bytes(300))
    return ["run", str(ws.tiny / "sql"), "--inputs", "in.npz", "-o", "o.npz"]


def _generate(*flags: str) -> Callable[[Workspace], list[str]]:
    return lambda ws: ["generate", str(ws.tiny), "--prompt", "hello", "--max-new-tokens", "2", *flags]


def _generate_damaged(damage: Callable[[Path], object], *flags: str) -> Callable[[Workspace], list[str]]:
    """generate on a private copy of the model folder after `damage(folder)`."""
    def build(ws: Workspace) -> list[str]:
        folder = ws.model_folder()
        damage(folder)
        return ["generate", str(folder), "--prompt", "hello", "--max-new-tokens", "2", *flags]
    return build


def _truncate(db: Path) -> None:
    with db.open("r+b") as handle:
        handle.truncate(db.stat().st_size // 2)


def _generate_with_sqlite_db(ws: Workspace) -> list[str]:
    db = ws.path("data.sqlite")
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (a INTEGER)")
    ws.keep(db, db.read_bytes())
    return ["generate", str(ws.tiny), "--prompt", "hello", "--db", str(db)]


def _generate_with_db_under_a_file(ws: Workspace) -> list[str]:
    ws.keep(ws.path("afile"), b"not a folder")
    return ["generate", str(ws.tiny), "--prompt", "hello", "--db", "afile/x.duckdb"]


def _export_gguf_with_crafted_header(ws: Workspace) -> list[str]:
    header = b"GGUF" + struct.pack("<IQQ", 3, 2**40, 2**40)  # version 3, counts no file can hold
    ws.keep(ws.path("crafted.gguf"), header + bytes(64))
    return ["export", "--model", "crafted.gguf", "-o", "exported"]


def _export_gguf_with_corrupt_body(ws: Workspace) -> list[str]:
    """A plausible header (one tensor, one entry) followed by bytes that describe nothing."""
    body = struct.pack("<Q", 2**40) + b"k" * 40  # a key length far beyond the file
    ws.keep(ws.path("corrupt.gguf"), b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + body)
    return ["export", "--model", "corrupt.gguf", "-o", "exported"]


def _export_folder_with_only_config(ws: Workspace) -> list[str]:
    ws.keep(ws.path("checkpoint/config.json"), (ws.tiny / "config.json").read_bytes())
    return ["export", "--model", "checkpoint", "-o", "exported"]


CASES = [
    # Data loss and refused output paths.
    Case("compile-into-folder-with-user-files", _compile_into_user_folder, 1,
         ("output folder 'mine' holds files onnx2sql did not write ('notes.txt')", "would be lost")),
    Case("compile-into-working-folder", _compile_into_working_folder, 2,
         ("-o '.' is the current folder",)),
    Case("run-output-without-npz-suffix", _run_tiny(np.array([[5, 6]]), "x.bin"), 2,
         ("-o 'x.bin' must name an .npz file",)),
    # Malformed models: onnx's checker (or what onnxruntime refuses) names the problem.
    Case("input-named-empty", _compile_model(lambda: _model([_relu("")], [_float("", [2])], [_float("y", None)])),
         1, ("onnx's checker found: Field 'name' of 'value_info' is required to be non-empty",)),
    Case("string-typed-numeric-attribute", _compile_model(_string_typed_axis), 1,
         ("Mismatched attribute type", "axis", "Expected: 'INT', actual: 'STRING'", "Name: soft OpType: Softmax")),
    Case("graph-without-outputs", _compile_model(lambda: _model([_relu()], [_float("x", [2])], [])), 1,
         ("m.onnx' is not a valid ONNX model: its graph has no outputs",)),
    Case("duplicate-node-outputs", _compile_model(lambda: _model(
        [_relu(), oh.make_node("Neg", ["x"], ["y"], name="neg")], [_float("x", [2])], [_float("y", None)])), 1,
        ("'y' has been used as output names multiple times",)),
    Case("duplicate-graph-inputs", _compile_model(lambda: _model(
        [oh.make_node("Add", ["x", "x"], ["y"])], [_float("x", [2]), _float("x", [2])], [_float("y", None)])), 1,
        ("'x' has been used as graph input names multiple times",)),
    Case("opset-99", _compile_model(lambda: _model([_relu()], [_float("x", [2])], [_float("y", None)], opset=99)),
         1, ("imports ONNX opset 99, which does not exist",)),
    Case("folder-named-onnx", _compile_file(None, "x.onnx"), 1, ("model 'x.onnx' is a folder, not an .onnx file",)),
    Case("empty-onnx-file", _compile_file(b"", "empty.onnx"), 1, ("'empty.onnx' is empty (0 bytes)",)),
    Case("chunk-size-0", lambda ws: ["compile", str(ws.tiny / "model.onnx"), "-o", "out", "--chunk-size", "0"], 2,
         ("--chunk-size must be at least 1, got 0",)),
    # Feeds given to run.
    Case("random-bytes-as-npz", _run_with_random_npz, 1,
         ("inputs file 'in.npz' is not an .npz file (not a zip archive)",)),
    Case("token-id-outside-vocabulary", _run_tiny(np.array([[5, 100000]])), 1,
         ("input 'input_ids' holds 100000 at index [0, 1], outside [-320, 319]", "embed_tokens")),
    Case("token-id-outside-vocabulary-unrecorded", _run_unchecked_index, 1,
         ("output 'logits' came out incomplete", "a token id beyond the vocabulary")),
    Case("20000-token-input", _run_tiny(np.ones((1, 20000), np.int64)), 1,
         ("input 'input_ids' axis 1 has 20000 elements; run accepts at most 8192",)),
    # generate's flags and model folder.
    Case("seed-negative", _generate("--seed", "-1"), 2, ("--seed must be >= 0, got -1",)),
    Case("temperature-nan", _generate("--temperature", "nan"), 2, ("--temperature must be a number >= 0, got nan",)),
    Case("malformed-tokenizer", _generate_damaged(lambda f: (f / "tokenizer.json").write_text('{"model": 5}')), 1,
         ("tokenizer.json' is not a tokenizer file the tokenizers library can read",)),
    Case("config-is-a-list", _generate_damaged(lambda f: (f / "config.json").write_text("[1, 2]")), 1,
         ("config.json' must hold a JSON object, not a list",)),
    Case("broken-chat-template", _generate_damaged(
        lambda f: (f / "chat_template.jinja").write_text("{% for m in %}"), "--chat"), 1,
        ("chat template in", "chat_template.jinja' cannot be rendered (TemplateSyntaxError", "drop --chat")),
    # Databases.
    Case("db-folder-not-writable", _generate_with_db_under_a_file, 1,
         ("cannot write the database --db 'afile/x.duckdb': 'afile' is a file, not a folder",)),
    Case("sqlite-file-as-db", _generate_with_sqlite_db, 1,
         ("data.sqlite' is not a database written by onnx2sql compile (not a DuckDB file)",)),
    Case("truncated-database", _generate_damaged(lambda f: _truncate(f / "sql" / "model.duckdb")), 1,
         ("sql/model.duckdb' is damaged", "Could not read enough bytes", "delete it and compile again")),
    Case("bit-flipped-database", _generate_damaged(lambda f: _flip_every_block(f / "sql" / "model.duckdb")), 1,
         ("sql/model.duckdb' is damaged (Corrupt database file: computed checksum", "delete it and compile again")),
    # Export sources.
    Case("crafted-gguf-header", _export_gguf_with_crafted_header, 1,
         ("GGUF header lists 1099511627776 tensors and 1099511627776 metadata entries, more than a 88-byte file",)),
    Case("gguf-with-corrupt-body", _export_gguf_with_corrupt_body, 1,
         ("corrupt.gguf: the tokenizer in this GGUF file cannot be read by transformers",)),
    Case("checkpoint-with-only-config", _export_folder_with_only_config, 1,
         ("checkpoint: the folder holds no model weights",)),
]


@pytest.fixture
def workspace(tiny_compiled_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A fresh working folder; temporary files go to tmp_path/temp so leftovers can be seen."""
    root, temp = tmp_path / "case", tmp_path / "temp"
    root.mkdir()
    temp.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return Workspace(root, tiny_compiled_dir)


def _temp_leftovers() -> list[Path]:
    # Importing torch (export) creates its compile cache folder in the temp folder: not a leftover.
    return [p for p in Path(tempfile.gettempdir()).iterdir() if not p.name.startswith("torchinductor_")]


def _assert_nothing_lost_or_left(ws: Workspace) -> None:
    for path, content in ws.kept.items():
        assert path.read_bytes() == content, f"{path} was changed or lost"
    assert _temp_leftovers() == [], "temporary files were left behind"
    hidden = [p.relative_to(ws.root) for p in ws.root.rglob(".*")]
    assert hidden == [], f"staging or old folders were left behind: {hidden}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_gets_a_clear_error(case: Case, workspace: Workspace, capsys: pytest.CaptureFixture) -> None:
    argv = case.build(workspace)
    code = main(argv)  # an uncaught exception here is the traceback a user would see
    err = capsys.readouterr().err
    assert code == case.code, err
    assert f"onnx2sql {argv[0]}: error: " in err and "Traceback" not in err, err
    for fragment in case.fragments:
        assert fragment in err
    _assert_nothing_lost_or_left(workspace)


def test_long_input_is_refused_quickly(workspace: Workspace, capsys: pytest.CaptureFixture) -> None:
    argv = _run_tiny(np.ones((1, 20000), np.int64))(workspace)
    started = time.monotonic()
    assert main(argv) == 1
    assert time.monotonic() - started < 10
    assert "at most 8192" in capsys.readouterr().err


def test_run_output_is_not_renamed(workspace: Workspace) -> None:
    main(_run_tiny(np.array([[5, 6]]), "x.bin")(workspace))
    assert not workspace.path("x.bin").exists() and not workspace.path("x.bin.npz").exists()


# --- correct results where there used to be a crash or a silently wrong answer ------------------------------------

def test_static_input_shapes_run_from_a_compiled_folder(workspace: Workspace) -> None:
    model = workspace.save(_model([_relu()], [_float("x", [2, 3])], [_float("y", [2, 3])]))
    x = np.array([[-1, 2, -3], [4, -5, 6]], np.float32)
    np.savez(workspace.path("in.npz"), x=x)
    assert main(["compile", str(model), "-o", "out", "-q"]) == 0
    assert main(["run", "out", "--inputs", "in.npz", "-o", "o.npz"]) == 0
    np.testing.assert_array_equal(np.load(workspace.path("o.npz"))["y"], np.maximum(x, 0))


def _negate_head(model: Path) -> None:
    """Another model of exactly the same size: the LM head's weights (the last MatMul's) negated."""
    proto = onnx.load(str(model))
    head_name = [n for n in proto.graph.node if n.op_type == "MatMul"][-1].input[1]
    head = next(t for t in proto.graph.initializer if t.name == head_name)
    weights = onnx.numpy_helper.to_array(head)
    head.raw_data = (-weights).astype(weights.dtype).tobytes()
    onnx.save(proto, model)


def _first_greedy_token(model: Path, prompt: list[int]) -> int:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], _decoder_feeds(model, np.array([prompt])))[0]
    return int(np.argmax(logits[0, -1]))


def test_replaced_model_with_kept_size_and_mtime_is_compiled_again(workspace: Workspace) -> None:
    folder, prompt = workspace.model_folder(), [315, 40, 41, 42]
    model = folder / "model.onnx"
    with Generator(folder, progress=False) as gen:
        before = gen.generate_ids(prompt, 1).token_ids
    stat = model.stat()
    _negate_head(model)
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (model.stat().st_size, model.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    with Generator(folder, progress=False) as gen:
        after = gen.generate_ids(prompt, 1).token_ids
    assert after == [_first_greedy_token(model, prompt)] and after != before
    cache = json.loads((folder / "sql" / "model.duckdb.sha256.json").read_text())
    assert cache[str(model.resolve())]["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()


def test_external_data_is_part_of_the_fingerprint(workspace: Workspace) -> None:
    model = _model([oh.make_node("Add", ["x", "w"], ["y"])], [_float("x", [6])], [_float("y", None)])
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.arange(6, dtype=np.float32), "w"))
    path = workspace.path("ext.onnx")
    onnx.save(model, path, save_as_external_data=True, location="ext.data", size_threshold=0)
    db = onnx2sql.compile(path, "out") / "model.duckdb"
    con, _ = open_compiled_db(db)
    try:
        assert compiled_from(con, path, db)
        data = workspace.path("ext.data")
        stat = data.stat()
        data.write_bytes(np.arange(6, 12, dtype=np.float32).tobytes())  # same size, other weights
        os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert not compiled_from(con, path, db)
    finally:
        con.close()


def test_another_models_database_given_as_db_is_refused(workspace: Workspace) -> None:
    folder = workspace.model_folder()
    db = workspace.path("mine.duckdb")
    shutil.copy(folder / "sql" / "model.duckdb", db)
    _negate_head(folder / "model.onnx")
    with pytest.raises(onnx2sql.InputError, match="mine.duckdb' was compiled from another model"):
        Generator(folder, db=db, progress=False)
    assert _temp_leftovers() == []


def test_generate_refuses_a_token_id_outside_the_vocabulary(workspace: Workspace) -> None:
    with Generator(workspace.tiny, progress=False) as gen:
        with pytest.raises(onnx2sql.InputError, match=r"token id 320 is outside the model's vocabulary of 320 "
                                                      r"\(ids 0 to 319\)"):
            gen.generate_ids([5, VOCAB], 1)
        assert gen.generate_ids([5, VOCAB - 1], 1).token_ids  # the last id is fine
    assert _temp_leftovers() == []


def test_connections_never_load_extensions() -> None:
    con = connect()
    settings = dict(con.execute("SELECT name, value FROM duckdb_settings() WHERE name IN "
                                "('autoload_known_extensions', 'autoinstall_known_extensions')").fetchall())
    con.close()
    assert settings == {"autoload_known_extensions": "false", "autoinstall_known_extensions": "false"}


# --- interrupted runs recover on the next one ---------------------------------------------------------------------

def test_staging_left_by_a_killed_compile_is_removed(workspace: Workspace) -> None:
    out = workspace.path("out")
    script = ("import os, signal, sys; from pathlib import Path; from onnx2sql.storage.folders import staging_dir; "
              "s = staging_dir(Path(sys.argv[1])); (s / 'model.duckdb').write_bytes(b'half'); "
              "os.kill(os.getpid(), signal.SIGKILL)")
    killed = subprocess.run([sys.executable, "-c", script, str(out)], env=_child_env(workspace.root.parent))
    assert killed.returncode == -signal.SIGKILL
    assert [p.name.endswith(".partial") for p in workspace.root.iterdir()] == [True]
    live = staging_dir(out)  # this process's own staging is still being written: it stays
    assert main(["compile", str(workspace.tiny / "model.onnx"), "-o", "out", "-q"]) == 0
    assert sorted(p.name for p in workspace.root.iterdir()) == sorted([live.name, "out"])
    live.rmdir()
    _assert_nothing_lost_or_left(workspace)


def test_a_kill_at_the_final_rename_is_recovered_by_generate(workspace: Workspace,
                                                           capsys: pytest.CaptureFixture) -> None:
    folder = workspace.model_folder()
    compiled = (folder / "sql" / "model.duckdb").stat().st_ino
    (folder / "sql").rename(folder / ".sql.old")  # compile killed between its two renames
    (folder / f".sql.{_dead_process_id()}.abcd.partial").mkdir()  # and its staging, never renamed
    assert main(["generate", str(folder), "--prompt", "hello", "--max-new-tokens", "2"]) == 0, \
        capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith((".", "sql"))) == ["sql"]
    assert (folder / "sql" / "model.duckdb").stat().st_ino == compiled  # put back, not compiled again
    _assert_nothing_lost_or_left(workspace)


def test_spill_folders_of_killed_generates_are_removed(workspace: Workspace) -> None:
    temp = Path(tempfile.gettempdir())
    dead = temp / f"onnx2sql-spill-{_dead_process_id()}.abc"
    live = temp / f"onnx2sql-spill-{os.getpid()}.def"  # a generate still running in this process
    dead.mkdir()
    live.mkdir()
    Generator(workspace.tiny, progress=False).close()
    assert sorted(temp.iterdir()) == [live]
    live.rmdir()


def _child_env(parent: Path) -> dict[str, str]:
    """The environment of a child onnx2sql, its temporary files in a folder of their own."""
    temp = parent / "child-temp"
    temp.mkdir(exist_ok=True)
    return dict(os.environ, TMPDIR=str(temp))


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "exit codes: 0 success, 1 an error" in capsys.readouterr().out


def test_an_sqlite_db_is_refused_without_duckdb_touching_it(workspace: Workspace) -> None:
    """Through the installed command: one line, exit 1, and DuckDB never looks for an extension."""
    argv = _generate_with_sqlite_db(workspace)
    home = workspace.root.parent / "home"
    home.mkdir()
    env = dict(_child_env(workspace.root.parent), HOME=str(home))
    result = subprocess.run([sys.executable, "-m", "onnx2sql", *argv], capture_output=True, text=True,
                            cwd=workspace.root, env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("onnx2sql generate: error: ") and "Traceback" not in result.stderr
    assert "data.sqlite' is not a database written by onnx2sql compile" in result.stderr
    assert not (home / ".duckdb").exists()  # where DuckDB would have put a downloaded extension
    _assert_nothing_lost_or_left(workspace)


def test_ctrl_c_during_generate_exits_130_cleanly(workspace: Workspace) -> None:
    env = _child_env(workspace.root.parent)
    argv = [sys.executable, "-m", "onnx2sql", "generate", str(workspace.tiny), "--prompt", "hello",
            "--max-new-tokens", "200", "--temperature", "1", "--seed", "3"]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert child.stdout.read(1)  # generation is under way: its first text has streamed
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    text = err.decode()
    assert child.returncode == 130, text
    assert text.strip().endswith("onnx2sql generate: error: interrupted") and "Traceback" not in text
    assert list(Path(env["TMPDIR"]).iterdir()) == []
