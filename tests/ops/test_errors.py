"""Bad input: unsupported ops listed all at once, hostile names, wrong feeds, nothing half-written."""
from __future__ import annotations

import numpy as np
import onnx
import onnx.helper as oh
import pytest

import onnx2sql
from harness import assert_parity, node_model

HOSTILE = ["x\"; DROP TABLE w1; --", "it's", "spaces and\ttabs", "Ünïcødé→名前", "new\nline", "*/ --"]


def _chain_model(names: list[str]) -> onnx.ModelProto:
    """input -> Add(initializer) -> Mul(initializer) -> output, every name hostile."""
    inp, w1, mid, w2, out = names[0], names[1], names[2], names[3], names[4]
    nodes = [oh.make_node("Add", [inp, w1], [mid], name=names[5]),
             oh.make_node("Mul", [mid, w2], [out], name=names[2])]
    graph = oh.make_graph(
        nodes, "g",
        [oh.make_tensor_value_info(inp, onnx.TensorProto.FLOAT, [names[1], 6])],
        [oh.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None)],
        initializer=[onnx.numpy_helper.from_array(np.arange(6, dtype=np.float32), w1),
                     onnx.numpy_helper.from_array(np.full(6, 0.5, dtype=np.float32), w2)],
    )
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18)])


def test_hostile_names_are_data_not_sql(tmp_path) -> None:
    model = _chain_model(HOSTILE)
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    got = assert_parity(model, {HOSTILE[0]: x})
    assert list(got) == [HOSTILE[4]]
    out = onnx2sql.compile(model, tmp_path / "compiled")
    statements = [line for line in (out / "program.sql").read_text().splitlines() if not line.startswith("--")]
    for name in HOSTILE:
        assert all(name not in line for line in statements), name
    np.testing.assert_allclose(onnx2sql.run(out, {HOSTILE[0]: x})[HOSTILE[4]], (x + np.arange(6)) * 0.5, rtol=1e-6)


def _model_with_unsupported() -> onnx.ModelProto:
    nodes = [
        oh.make_node("Relu", ["x"], ["a"], name="fine"),
        oh.make_node("NonMaxSuppression", ["a", "a"], ["b"], name="nms one"),
        oh.make_node("Frobnicate", ["a"], ["c"], name="custom", domain="com.example"),
        oh.make_node("Add", ["b", "c"], ["y"], name="after"),
    ]
    graph = oh.make_graph(nodes, "g", [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
                          [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18), oh.make_opsetid("com.example", 1)])


def test_every_unsupported_node_is_named_and_nothing_is_written(tmp_path) -> None:
    with pytest.raises(onnx2sql.UnsupportedOpError) as info:
        onnx2sql.compile(_model_with_unsupported(), tmp_path / "out")
    message = str(info.value)
    assert "2 node(s) cannot be compiled" in message
    assert "NonMaxSuppression (node 'nms one', opset 18): op version 11 is not supported" in message
    assert "com.example::Frobnicate (node 'custom', opset 1): unknown op" in message
    assert [p.node_name for p in info.value.problems] == ["nms one", "custom"]
    assert list(tmp_path.iterdir()) == []


def test_unsupported_attribute_value_names_the_node(tmp_path) -> None:
    a = np.ones((2, 3), dtype=np.float32)
    model = node_model("Gelu", {"a": a}, opset=20, approximate="cubic")
    with pytest.raises(onnx2sql.UnsupportedOpError, match=r"Gelu \(node 'Gelu_node', opset 20\): approximate='cubic'"):
        onnx2sql.compile(model, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_failed_compile_keeps_the_previous_output(tmp_path) -> None:
    a = np.ones((2, 3), dtype=np.float32)
    out = onnx2sql.compile(node_model("Relu", {"a": a}), tmp_path / "out")
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(onnx2sql.UnsupportedOpError):
        onnx2sql.compile(_model_with_unsupported(), out)
    assert sorted(p.name for p in out.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.fixture(scope="module")
def add_model() -> onnx.ModelProto:
    a, b = np.ones((2, 3), dtype=np.float32), np.ones(3, dtype=np.float32)
    return node_model("Add", {"a": a, "b": b}, dynamic=["a"])


def test_missing_feed_is_named(add_model) -> None:
    with pytest.raises(onnx2sql.InputError, match=r"missing feed\(s\) for graph input\(s\) \['b'\]"):
        onnx2sql.run(add_model, {"a": np.ones((2, 3), np.float32)})


def test_unknown_feed_is_named(add_model) -> None:
    feeds = {"a": np.ones((2, 3), np.float32), "b": np.ones(3, np.float32), "z": np.ones(1)}
    with pytest.raises(onnx2sql.InputError, match=r"feed\(s\) \['z'\] name no graph input"):
        onnx2sql.run(add_model, feeds)


def test_wrong_dtype_is_named(add_model) -> None:
    with pytest.raises(onnx2sql.InputError, match="input 'b' must be float32, got float64"):
        onnx2sql.run(add_model, {"a": np.ones((2, 3), np.float32), "b": np.ones(3)})


def test_wrong_rank_is_named(add_model) -> None:
    with pytest.raises(onnx2sql.InputError, match=r"input 'a' must have rank 2 \(shape \[s0, s1\]\), got shape \[6\]"):
        onnx2sql.run(add_model, {"a": np.ones(6, np.float32), "b": np.ones(3, np.float32)})


def test_wrong_static_dim_is_named(add_model) -> None:
    with pytest.raises(onnx2sql.InputError, match="input 'b' axis 0 must be 3, got 4"):
        onnx2sql.run(add_model, {"a": np.ones((2, 3), np.float32), "b": np.ones(4, np.float32)})


def test_inconsistent_symbolic_dims_are_named() -> None:
    graph = oh.make_graph(
        [oh.make_node("Add", ["a", "b"], ["y"])], "g",
        [oh.make_tensor_value_info("a", onnx.TensorProto.FLOAT, ["batch", 3]),
         oh.make_tensor_value_info("b", onnx.TensorProto.FLOAT, ["batch", 3])],
        [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18)])
    with pytest.raises(onnx2sql.InputError, match=r"input 'b' axis 0 must be batch = 2, got 4"):
        onnx2sql.run(model, {"a": np.ones((2, 3), np.float32), "b": np.ones((4, 3), np.float32)})


def test_missing_model_file(tmp_path) -> None:
    with pytest.raises(onnx2sql.ModelError, match="does not exist"):
        onnx2sql.run(tmp_path / "nope.onnx", {})


def test_corrupt_model_file(tmp_path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not protobuf")
    with pytest.raises(onnx2sql.ModelError, match="cannot read ONNX model"):
        onnx2sql.run(bad, {})


def test_dim_formula_of_optimum_inputs_is_checked() -> None:
    """Optimum names the mask's axis 'past_sequence_length + sequence_length': it is checked as a sum."""
    graph = oh.make_graph(
        [oh.make_node("Neg", ["past"], ["y"])], "g",
        [oh.make_tensor_value_info("past", onnx.TensorProto.FLOAT, ["past_len"]),
         oh.make_tensor_value_info("cur", onnx.TensorProto.FLOAT, ["seq"]),
         oh.make_tensor_value_info("mask", onnx.TensorProto.FLOAT, ["past_len + seq"])],
        [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18)])
    feeds = {"past": np.ones(2, np.float32), "cur": np.ones(3, np.float32), "mask": np.ones(4, np.float32)}
    with pytest.raises(onnx2sql.InputError, match=r"input 'mask' axis 0 must be past_len \+ seq = 5, got 4"):
        onnx2sql.run(model, feeds)
