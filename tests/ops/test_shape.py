"""Shape ops against onnxruntime: every layout path (leading indices, whole chunks, elements) with
chunk size 4, negative axes, float32/int64/bool, empty tensors and symbolic (dynamic) dims."""
from __future__ import annotations

import numpy as np
import onnx.helper as oh
import pytest

import onnx2sql
from harness import OpCase, assert_parity, graph_model, sample, table

BIG = np.iinfo(np.int64).max
SMALL = np.iinfo(np.int64).min


def f32(*shape: int) -> np.ndarray:
    return sample(shape, np.float32)


def i64(*shape: int) -> np.ndarray:
    return sample(shape, np.int64)


def bools(*shape: int) -> np.ndarray:
    return sample(shape, np.bool_)


def ints(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def reshape(label: str, x: np.ndarray, shape: list[int], dynamic: bool = False, **attrs: object) -> OpCase:
    return OpCase(label, "Reshape", {"x": x}, {"shape": np.array(shape, dtype=np.int64)}, attrs,
                  dynamic=("x",) if dynamic else ())


RESHAPE = table(
    reshape("lead-merge", f32(2, 3, 8), [6, 8]),
    reshape("lead-split", f32(6, 5), [2, 3, 5]),
    reshape("lead-unit-axes", f32(2, 3, 5), [2, 1, 3, 1, 5]),
    reshape("chunks-split-last", f32(2, 8), [4, 4]),
    reshape("chunks-merge-last", f32(2, 3, 8), [3, 16]),
    reshape("elements", f32(2, 9), [3, 6]),
    reshape("elements-flat", f32(2, 3, 9), [54]),
    reshape("elements-4d", f32(2, 3, 6), [2, 3, 3, 2]),
    reshape("copy-zero-infer", f32(2, 3, 9), [0, -1]),
    reshape("infer-middle", f32(2, 3, 9), [3, -1, 3]),
    reshape("allowzero-empty", f32(0, 3), [3, 0], allowzero=1),
    reshape("empty-infer", f32(2, 0, 3), [-1, 3]),
    reshape("scalar-to-matrix", f32(), [1, 1]),
    reshape("vector-to-scalar", f32(1), []),
    reshape("int64", i64(4, 6), [3, 8]),
    reshape("bool", bools(4, 6), [2, 12]),
    reshape("dynamic-lead", f32(2, 3, 8), [-1, 8], dynamic=True),
    reshape("dynamic-chunks", f32(2, 3, 8), [0, 0, 2, 4], dynamic=True),
    reshape("dynamic-elements-split", f32(2, 3, 6), [0, 0, 3, 2], dynamic=True),
    reshape("dynamic-elements-merge", f32(2, 3, 2, 3), [0, 0, 6], dynamic=True),
)

FLATTEN = table(*[
    OpCase(f"axis{axis}{'-dynamic' if dyn else ''}", "Flatten", {"x": f32(2, 3, 5)}, attrs={"axis": axis},
           dynamic=("x",) if dyn else ())
    for axis in (0, 1, 2, 3, -1, -3) for dyn in (False, True)
])


def axes_case(label: str, op: str, x: np.ndarray, axes: list[int] | None, opset: int = 18,
              dynamic: bool = False) -> OpCase:
    if axes is None:
        return OpCase(label, op, {"x": x}, opset=opset)
    if opset < 13:
        return OpCase(label, op, {"x": x}, attrs={"axes": axes}, opset=opset)
    return OpCase(label, op, {"x": x}, {"axes": np.array(axes, dtype=np.int64)}, dynamic=("x",) if dynamic else ())


SQUEEZE = table(
    axes_case("axes", "Squeeze", f32(1, 3, 1, 5), [0, 2]),
    axes_case("negative-axis", "Squeeze", f32(1, 3, 1, 5), [-2]),
    axes_case("all-unit-axes", "Squeeze", f32(1, 3, 1, 5), None),
    axes_case("last-axis", "Squeeze", f32(3, 1), [1]),
    axes_case("to-scalar", "Squeeze", f32(1, 1), [0, 1]),
    axes_case("int64", "Squeeze", i64(2, 1, 6), [1]),
    axes_case("bool", "Squeeze", bools(1, 7), [0]),
    axes_case("empty", "Squeeze", f32(0, 1, 3), [1]),
    axes_case("opset11-attribute", "Squeeze", f32(1, 3, 1, 5), [0, -2], opset=11),
    axes_case("dynamic", "Squeeze", f32(2, 1, 9), [1], dynamic=True),
)

UNSQUEEZE = table(
    axes_case("front", "Unsqueeze", f32(3, 5), [0]),
    axes_case("back", "Unsqueeze", f32(3, 5), [-1]),
    axes_case("middle-two", "Unsqueeze", f32(3, 5), [1, 3]),
    axes_case("both-ends", "Unsqueeze", f32(3, 9), [0, -1]),
    axes_case("scalar", "Unsqueeze", f32(), [0]),
    axes_case("scalar-two", "Unsqueeze", i64(), [0, 1]),
    axes_case("bool", "Unsqueeze", bools(4, 6), [1]),
    axes_case("opset11-attribute", "Unsqueeze", f32(3, 5), [0, 2], opset=11),
    axes_case("dynamic", "Unsqueeze", f32(2, 3, 9), [1, -1], dynamic=True),
)


def transpose(label: str, x: np.ndarray, perm: list[int] | None, dynamic: bool = False) -> OpCase:
    return OpCase(label, "Transpose", {"x": x}, attrs={} if perm is None else {"perm": perm},
                  dynamic=("x",) if dynamic else ())


TRANSPOSE = table(
    transpose("lead-swap", f32(2, 3, 5), [1, 0, 2]),
    transpose("last-two", f32(2, 3, 9), [0, 2, 1]),
    transpose("reverse", f32(2, 3, 5), [2, 1, 0]),
    transpose("default-reverse", f32(3, 6), None),
    transpose("heads", f32(2, 3, 4, 5), [0, 2, 1, 3]),
    transpose("heads-last", f32(2, 3, 4, 5), [0, 2, 3, 1]),
    transpose("identity", f32(3, 5), [0, 1]),
    transpose("vector", f32(7), None),
    transpose("int64", i64(3, 6), [1, 0]),
    transpose("bool", bools(2, 3, 5), [1, 0, 2]),
    transpose("empty", f32(2, 0, 3), [2, 1, 0]),
    transpose("dynamic-lead", f32(2, 3, 9), [1, 0, 2], dynamic=True),
    transpose("dynamic-last", f32(2, 3, 9), [0, 2, 1], dynamic=True),
)


def concat(label: str, parts: list[np.ndarray], axis: int, dynamic: tuple[str, ...] = (), known: int = -1) -> OpCase:
    names = [f"x{k}" for k in range(len(parts))]
    inputs = {n: p for k, (n, p) in enumerate(zip(names, parts)) if k != known}
    constants = {n: p for k, (n, p) in enumerate(zip(names, parts)) if k == known}
    return OpCase(label, "Concat", inputs, constants, {"axis": axis}, dynamic=dynamic, order=tuple(names))


CONCAT = table(
    concat("rows-axis0", [f32(2, 3), f32(1, 3), f32(4, 3)], 0),
    concat("rows-middle", [f32(2, 3, 5), f32(2, 1, 5)], 1),
    concat("chunk-offsets", [f32(2, 4), f32(2, 8), f32(2, 3)], 1),
    concat("lists", [f32(2, 1), f32(2, 2)], -1),
    concat("lists-vector", [f32(1), f32(2), f32(1)], 0),
    concat("elements", [f32(2, 3), f32(2, 9)], 1),
    concat("elements-3d", [f32(2, 3, 5), f32(2, 3, 2)], -1),
    concat("empty-part", [f32(2, 0), f32(2, 5)], 1),
    concat("all-empty", [f32(0, 3), f32(0, 3)], 0),
    concat("int64", [i64(2, 3), i64(2, 2)], 1),
    concat("bool", [bools(3, 2), bools(1, 2)], 0),
    concat("known-part", [f32(2, 3), f32(2, 3)], 0, known=1),
    concat("dynamic-past-empty", [f32(1, 2, 0, 4), f32(1, 2, 3, 4)], 2, dynamic=("x0",)),
    concat("dynamic-past", [f32(1, 2, 5, 4), f32(1, 2, 3, 4)], 2, dynamic=("x0", "x1")),
    concat("dynamic-last-axis", [f32(2, 3), f32(2, 5)], 1, dynamic=("x0", "x1")),
)


def slice_case(label: str, x: np.ndarray, starts: list[int], ends: list[int], axes: list[int] | None = None,
               steps: list[int] | None = None, dynamic: bool = False) -> OpCase:
    constants = {"starts": np.array(starts, dtype=np.int64), "ends": np.array(ends, dtype=np.int64)}
    if axes is not None:
        constants["axes"] = np.array(axes, dtype=np.int64)
    if steps is not None:
        constants["steps"] = np.array(steps, dtype=np.int64)
    order = ("x", "starts", "ends", "axes" if axes is not None else "", "steps" if steps is not None else "")
    return OpCase(label, "Slice", {"x": x}, constants, dynamic=("x",) if dynamic else (), order=order)


SLICE = table(
    slice_case("lead", f32(5, 9), [1], [4], [0]),
    slice_case("lead-negative-step", f32(5, 9), [4], [0], [0], [-1]),
    slice_case("lead-reverse-all", f32(5, 3), [-1], [SMALL], [0], [-2]),
    slice_case("lead-from-end", f32(5, 9), [-3], [BIG], [0]),
    slice_case("steps-both-axes", f32(5, 9), [0, 1], [5, 8], [0, 1], [2, 3]),
    slice_case("last-one-chunk", f32(3, 4), [1], [3], [1]),
    slice_case("last-one-chunk-step", f32(3, 3), [0], [3], [1], [2]),
    slice_case("last-one-chunk-reverse", f32(3, 4), [-1], [SMALL], [1], [-1]),
    slice_case("last-one-chunk-reverse-step", f32(3, 4), [3], [0], [1], [-2]),
    slice_case("last-chunks-to-end", f32(3, 11), [4], [BIG], [1]),
    slice_case("last-whole-chunks", f32(3, 12), [0], [8], [1]),
    slice_case("last-inner-chunks", f32(2, 16), [4], [12], [-1]),
    slice_case("last-elements", f32(3, 9), [2], [7], [1]),
    slice_case("last-reverse", f32(3, 9), [-1], [SMALL], [1], [-1]),
    slice_case("last-reverse-step", f32(3, 9), [7], [1], [1], [-3]),
    slice_case("clamped", f32(3, 9), [-100, 2], [100, 100], [0, 1]),
    slice_case("empty-result", f32(3, 9), [5], [2], [1]),
    slice_case("default-axes", f32(2, 3, 9), [0, 1], [2, 3]),
    slice_case("vector", f32(9), [2], [-2]),
    slice_case("int64", i64(4, 6), [1, 1], [3, 5], [0, 1]),
    slice_case("bool", bools(4, 6), [-2], [BIG], [0]),
    slice_case("empty-input", f32(0, 5), [1], [3], [1]),
    slice_case("dynamic-lead", f32(4, 9), [1], [-1], [0], dynamic=True),
    slice_case("dynamic-last", f32(4, 9), [2], [BIG], [1], dynamic=True),
    slice_case("dynamic-reverse", f32(4, 9), [-1], [SMALL], [0], [-1], dynamic=True),
)


def split(label: str, x: np.ndarray, outputs: int, axis: int = 0, sizes: list[int] | None = None,
          opset: int = 18, dynamic: bool = False, **attrs: object) -> OpCase:
    constants = {"split": np.array(sizes, dtype=np.int64)} if sizes is not None else {}
    return OpCase(label, "Split", {"x": x}, constants, {"axis": axis, **attrs}, opset=opset, outputs=outputs,
                  dynamic=("x",) if dynamic else ())


SPLIT = table(
    split("rows", f32(6, 9), 2, 0, [2, 4]),
    split("last-axis", f32(3, 9), 2, 1, [4, 5]),
    split("last-three", f32(3, 9), 3, -1, [3, 3, 3]),
    split("num-outputs-uneven", f32(7), 3, 0, num_outputs=3),
    split("equal-opset13", f32(3, 12), 3, -1, opset=13),
    split("int64", i64(4, 6), 2, 1, [1, 5]),
    split("dynamic", f32(4, 8), 2, 1, [4, 4], dynamic=True),
)


def expand(label: str, x: np.ndarray, shape: list[int], dynamic: bool = False) -> OpCase:
    return OpCase(label, "Expand", {"x": x}, {"shape": np.array(shape, dtype=np.int64)},
                  dynamic=("x",) if dynamic else ())


EXPAND = table(
    expand("new-axes-and-last", f32(3, 1), [2, 3, 9]),
    expand("vector-to-matrix", f32(1), [2, 5]),
    expand("scalar", f32(), [3, 9]),
    expand("lead-only", f32(2, 1, 9), [2, 4, 9]),
    expand("bidirectional", f32(1, 9), [3, 1]),
    expand("unit-target", f32(3, 1, 1), [1, 4, 6]),
    expand("same-shape", f32(2, 3), [2, 3]),
    expand("int64", i64(1, 4), [3, 4]),
    expand("bool", bools(2, 1), [2, 5]),
    expand("to-empty", f32(3, 1), [3, 0]),
    expand("dynamic-new-axis", f32(2, 9), [3, 1, 1], dynamic=True),
)


def tile(label: str, x: np.ndarray, repeats: list[int], dynamic: bool = False) -> OpCase:
    return OpCase(label, "Tile", {"x": x}, {"repeats": np.array(repeats, dtype=np.int64)},
                  dynamic=("x",) if dynamic else ())


TILE = table(
    tile("lead", f32(2, 3), [2, 1]),
    tile("last-elements", f32(2, 3), [1, 3]),
    tile("both", f32(2, 3), [2, 2]),
    tile("last-chunks", f32(2, 4), [1, 3]),
    tile("vector", f32(3), [3]),
    tile("3d", f32(2, 1, 3), [1, 2, 2]),
    tile("int64", i64(2, 2), [2, 3]),
    tile("bool", bools(2, 3), [3, 1]),
    tile("empty", f32(0, 3), [2, 2]),
    tile("dynamic", f32(2, 3), [2, 2], dynamic=True),
)


def shape_case(label: str, x: np.ndarray, dynamic: bool = False, op: str = "Shape", **attrs: object) -> OpCase:
    return OpCase(label, op, {"x": x}, attrs=attrs, dynamic=("x",) if dynamic else ())


SHAPE = table(
    shape_case("whole", f32(2, 3, 9)),
    shape_case("start", f32(2, 3, 9), start=1),
    shape_case("end-negative", f32(2, 3, 9), end=-1),
    shape_case("start-negative", f32(2, 3, 9), start=-2),
    shape_case("clamped-empty", f32(2, 3, 9), start=5),
    shape_case("scalar", f32()),
    shape_case("dynamic", f32(2, 3, 9), dynamic=True),
    shape_case("dynamic-slice", f32(2, 3, 9), dynamic=True, start=1, end=2),
    shape_case("size", f32(2, 3, 9), op="Size"),
    shape_case("size-empty", f32(2, 0), op="Size"),
    shape_case("size-dynamic", f32(2, 3, 9), dynamic=True, op="Size"),
)


@pytest.mark.parametrize("case", RESHAPE)
def test_reshape(case: OpCase) -> None:
    case.check()


@pytest.mark.parametrize("case", FLATTEN)
def test_flatten(case: OpCase) -> None:
    case.check()


@pytest.mark.parametrize("case", SQUEEZE)
def test_squeeze(case: OpCase) -> None:
    case.check()


@pytest.mark.parametrize("case", UNSQUEEZE)
def test_unsqueeze(case: OpCase) -> None:
    case.check()


@pytest.mark.parametrize("case", TRANSPOSE)
def test_transpose(case: OpCase) -> None:
    case.check()


@pytest.mark.parametrize("case", CONCAT)
def test_concat(case: OpCase) -> None:
    case.check()


@pytest.mark.parametrize("case", SLICE)
def test_slice(case: OpCase) -> None:
    case.check()


@pytest.mark.parametrize("case", SPLIT)
def test_split(case: OpCase) -> None:
    case.check()


@pytest.mark.parametrize("case", EXPAND)
def test_expand(case: OpCase) -> None:
    case.check()


@pytest.mark.parametrize("case", TILE)
def test_tile(case: OpCase) -> None:
    case.check()


@pytest.mark.parametrize("case", SHAPE)
def test_shape_and_size(case: OpCase) -> None:
    case.check()


@pytest.mark.parametrize("chunk_size", [4, 64])
def test_known_inputs_run_in_sql_when_folding_is_off(monkeypatch: pytest.MonkeyPatch, chunk_size: int) -> None:
    """Expand/Tile of a known tensor past the fold limit become statements over a weight table."""
    from onnx2sql.ops import shape

    monkeypatch.setattr(shape, "FOLD_LIMIT", 0)
    for op, arg, out_shape in (("Expand", ints(2, 2, 3), (2, 2, 3)), ("Tile", ints(2, 3), (4, 9))):
        node = oh.make_node(op, ["w", "arg"], ["t"])
        add = oh.make_node("Add", ["t", "z"], ["y"])
        z = f32(*out_shape)
        model = graph_model([node, add], {"z": z}, ["y"], constants={"w": f32(2, 3), "arg": arg})
        assert_parity(model, {"z": z}, chunk_size=chunk_size)


# Small graphs whose shape arithmetic depends on symbolic dims: it must fold at compile time.

def _dynamic_model(nodes: list, x: np.ndarray, constants: dict | None = None) -> object:
    return graph_model(nodes, {"x": x}, ["y"], constants=constants or {}, dynamic=["x"])


def test_shape_gather_concat_reshape_chain() -> None:
    nodes = [
        oh.make_node("Shape", ["x"], ["shape"]),
        oh.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        oh.make_node("Gather", ["shape", "one"], ["seq"], axis=0),
        oh.make_node("Unsqueeze", ["batch", "axes0"], ["batch1"]),
        oh.make_node("Unsqueeze", ["seq", "axes0"], ["seq1"]),
        oh.make_node("Concat", ["batch1", "seq1", "heads"], ["target"], axis=0),
        oh.make_node("Reshape", ["x", "target"], ["y"], name="split_heads"),
    ]
    constants = {"zero": ints(0).reshape(()), "one": ints(1).reshape(()), "axes0": ints(0), "heads": ints(2, 4)}
    model = _dynamic_model(nodes, f32(2, 3, 8), constants)
    for shape in [(2, 3, 8), (1, 5, 8), (3, 1, 8), (1, 0, 8)]:
        x = f32(*shape)
        assert_parity(model, {"x": x})


def test_slice_with_ends_from_shape() -> None:
    nodes = [
        oh.make_node("Shape", ["x"], ["shape"], start=1, end=2),
        oh.make_node("Sub", ["shape", "one"], ["end"]),
        oh.make_node("Slice", ["x", "start", "end", "axes"], ["y"]),
    ]
    constants = {"one": ints(1), "start": ints(1), "axes": ints(1)}
    model = _dynamic_model(nodes, f32(2, 6, 5), constants)
    for shape in [(2, 6, 5), (1, 3, 5), (2, 1, 5)]:
        assert_parity(model, {"x": f32(*shape)})


def test_reshape_with_shape_from_data_is_unsupported(tmp_path) -> None:
    """compile() names the node; run(), which has the values, specialises the program to them."""
    node = oh.make_node("Reshape", ["x", "shape"], ["y"], name="data_dependent_reshape")
    model = graph_model([node], {"x": f32(2, 6), "shape": ints(3, 4)}, ["y"])
    with pytest.raises(onnx2sql.UnsupportedOpError) as info:
        onnx2sql.compile(model, tmp_path / "out")
    message = str(info.value)
    assert "Reshape (node 'data_dependent_reshape', opset 18)" in message
    assert "computed from data at run time" in message
    assert not (tmp_path / "out").exists()
    x = f32(2, 6)
    np.testing.assert_array_equal(onnx2sql.run(model, {"x": x, "shape": ints(3, 4)})["y"], x.reshape(3, 4))
