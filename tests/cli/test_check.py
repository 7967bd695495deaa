"""`onnx2sql check MODEL.onnx`: supported and unsupported ops (type, count, first node names) and
unsupported input element types, without compiling; exit 0 only when everything is supported."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh

from onnx2sql.check import check_model


def check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onnx2sql", "check", str(path)], capture_output=True, text=True)


def _save(nodes: list, inputs: list, path: Path, opsets: tuple = (("", 18),)) -> Path:
    graph = oh.make_graph(nodes, "g", inputs, [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
                          initializer=[onnx.numpy_helper.from_array(np.ones(3, np.float32), "w")])
    onnx.save(oh.make_model(graph, opset_imports=[oh.make_opsetid(d, v) for d, v in opsets]), path)
    return path


def test_a_supported_model_exits_0(tmp_path: Path) -> None:
    model = _save([oh.make_node("Conv", ["x", "w4"], ["c"]), oh.make_node("Relu", ["c"], ["r"]),
                   oh.make_node("Add", ["r", "w"], ["y"])],
                  [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 1, 5, 3]),
                   oh.make_tensor_value_info("w4", onnx.TensorProto.FLOAT, [2, 1, 3, 3])], tmp_path / "ok.onnx")
    result = check(model)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "supported: 3 op types" in result.stdout
    assert "every op and input type is supported" in result.stdout


def test_unsupported_ops_and_input_types_are_listed_and_exit_1(tmp_path: Path) -> None:
    nodes = [oh.make_node("NonMaxSuppression", ["x", "x"], [f"s{k}"], name=f"nms {k}") for k in range(5)]
    nodes += [oh.make_node("Frobnicate", ["x"], ["f"], name="custom", domain="com.example"),
              oh.make_node("Relu", ["x"], ["r"], name="fine"), oh.make_node("Relu", ["r"], ["y"]),
              oh.make_node("Cast", ["h"], ["hh"], to=onnx.TensorProto.FLOAT)]
    inputs = [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [3]),
              oh.make_tensor_value_info("h", onnx.TensorProto.FLOAT16, [3])]
    model = _save(nodes, inputs, tmp_path / "bad.onnx", opsets=(("", 18), ("com.example", 1)))
    result = check(model)
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "unsupported: 2 op types, 6 nodes" in out
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert "NonMaxSuppression 5 op version 11 is not supported; nodes 'nms 0', 'nms 1', 'nms 2' (+2 more)" in lines
    assert "com.example::Frobnicate 1 unknown op; nodes 'custom'" in lines
    assert "Relu 2" in lines and "Cast 1" in lines
    assert "'h': float16" in out


def test_the_report_counts_nodes_per_op(tmp_path: Path) -> None:
    model = _save([oh.make_node("Relu", ["x"], ["a"]), oh.make_node("Relu", ["a"], ["b"]),
                   oh.make_node("Mish", ["b"], ["c"]), oh.make_node("Det", ["c"], ["y"], name="det")],
                  [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [3, 3])], tmp_path / "m.onnx")
    report = check_model(model)
    assert report.supported == {"Mish": 1, "Relu": 2}
    assert [(u.op, u.count, u.nodes) for u in report.unsupported] == [("Det", 1, ["det"])]
    assert report.bad_inputs == {} and not report.ok


def test_an_unreadable_model_exits_1_with_a_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not protobuf")
    result = check(bad)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot read ONNX model" in result.stderr
