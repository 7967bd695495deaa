"""Conv, the pools and the layers around them against onnxruntime: symbolic dims, weights as
initializers or inputs, groups, dilations, padding modes, chunk sizes that cut the last axis."""
from __future__ import annotations

import numpy as np
import pytest

from harness import OpCase, sample, table

F32 = np.float32


def conv(label: str, x: tuple, w: tuple, bias: bool = True, weights_known: bool = True, **attrs: object) -> OpCase:
    arrays = {"w": sample(w)} | ({"b": sample(w[:1])} if bias else {})
    inputs = {"x": sample(x)}
    return OpCase(label, "Conv", inputs if weights_known else inputs | arrays,
                  constants=arrays if weights_known else {}, attrs=attrs, dynamic=("x",), chunk_size=3)


CONV_CASES = table(
    conv("1d-stride-dilation-pads", (2, 3, 11), (4, 3, 3), strides=[2], dilations=[2], pads=[1, 2]),
    conv("1d-groups", (1, 4, 7), (6, 2, 2), group=2),
    conv("2d-same-upper-stride", (2, 2, 7, 6), (3, 2, 3, 3), auto_pad="SAME_UPPER", strides=[2, 2]),
    conv("2d-same-lower", (1, 2, 5, 5), (2, 2, 2, 2), bias=False, auto_pad="SAME_LOWER"),
    conv("2d-valid", (1, 1, 6, 5), (2, 1, 3, 2), auto_pad="VALID"),
    conv("2d-depthwise", (2, 3, 6, 6), (3, 1, 3, 3), group=3, pads=[1, 1, 1, 1]),
    conv("2d-weights-as-inputs", (2, 3, 5, 4), (4, 3, 2, 2), weights_known=False, strides=[1, 2]),
    conv("2d-1x1", (3, 8, 2, 2), (5, 8, 1, 1)),
    conv("3d", (1, 2, 4, 3, 5), (2, 2, 2, 2, 3), pads=[0, 1, 1, 0, 1, 1]),
)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv(case: OpCase) -> None:
    case.check()


def pool(label: str, op: str, x: tuple, outputs: int = 1, dtype: type = F32, **attrs: object) -> OpCase:
    return OpCase(label, op, {"x": sample(x, dtype)}, attrs=attrs, outputs=outputs, dynamic=("x",), chunk_size=3)


POOL_CASES = table(
    pool("max-ceil-dilation", "MaxPool", (2, 2, 7, 8), kernel_shape=[2, 3], strides=[2, 2], dilations=[2, 1],
         ceil_mode=1),
    pool("max-pads-indices", "MaxPool", (2, 3, 5, 6), outputs=2, kernel_shape=[3, 3], pads=[1, 1, 1, 1],
         strides=[2, 2]),
    pool("max-indices-column-major", "MaxPool", (1, 2, 4, 5), outputs=2, kernel_shape=[2, 2], storage_order=1),
    pool("max-int8-1d", "MaxPool", (2, 3, 9), dtype=np.int8, kernel_shape=[3], strides=[2]),
    pool("max-same-upper", "MaxPool", (1, 2, 5, 5), kernel_shape=[2, 2], auto_pad="SAME_UPPER", strides=[2, 2]),
    pool("avg-exclude-pad", "AveragePool", (2, 2, 6, 5), kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    pool("avg-include-pad-ceil", "AveragePool", (1, 2, 6, 7), kernel_shape=[3, 2], pads=[1, 0, 1, 1],
         strides=[2, 2], count_include_pad=1, ceil_mode=1),
    pool("avg-3d", "AveragePool", (1, 1, 4, 4, 4), kernel_shape=[2, 2, 2], strides=[2, 2, 2]),
    pool("lp-p2", "LpPool", (1, 2, 5, 5), kernel_shape=[2, 2], p=2),
    pool("global-average", "GlobalAveragePool", (2, 3, 4, 5)),
    pool("global-max", "GlobalMaxPool", (2, 3, 4, 5)),
    pool("global-average-1d", "GlobalAveragePool", (3, 2, 7)),
    pool("global-lp-p3", "GlobalLpPool", (2, 3, 4, 5), p=3),
)


@pytest.mark.parametrize("case", POOL_CASES)
def test_pool(case: OpCase) -> None:
    case.check()


def _bn_params(channels: int) -> dict[str, np.ndarray]:
    return {"scale": sample((channels,)), "bias": sample((channels,)), "mean": sample((channels,)),
            "var": np.abs(sample((channels,))) + F32(0.1)}


LAYER_CASES = table(
    OpCase("batchnorm-initializers", "BatchNormalization", {"x": sample((2, 3, 5, 6))}, constants=_bn_params(3),
           dynamic=("x",), chunk_size=4),
    OpCase("batchnorm-rank2-inputs", "BatchNormalization", {"x": sample((4, 5))} | _bn_params(5), chunk_size=2,
           attrs={"epsilon": 1e-3}),
    OpCase("clip-both", "Clip", {"x": sample((3, 7))},
           constants={"lo": np.array(-0.5, F32), "hi": np.array(0.5, F32)}, dynamic=("x",)),
    OpCase("clip-max-only-int", "Clip", {"x": sample((2, 9), np.int32)}, constants={"hi": np.array(3, np.int32)},
           order=("x", "", "hi")),
    OpCase("pad-constant", "Pad", {"x": sample((2, 3, 4))},
           constants={"pads": np.array([0, 1, 2, 0, 0, 3], np.int64), "value": np.array(1.5, F32)}, dynamic=("x",)),
    OpCase("pad-reflect-negative", "Pad", {"x": sample((2, 4, 6))},
           constants={"pads": np.array([0, 2, -1, 0, 1, 3], np.int64)}, attrs={"mode": "reflect"}),
    OpCase("pad-edge-axes", "Pad", {"x": sample((2, 3, 5))},
           constants={"pads": np.array([2, 1, 0, 4], np.int64), "axes": np.array([-1, 0], np.int64)},
           order=("x", "pads", "", "axes"), attrs={"mode": "edge"}, opset=19),
    OpCase("pad-wrap", "Pad", {"x": sample((3, 5))}, constants={"pads": np.array([1, 2, 2, 3], np.int64)},
           attrs={"mode": "wrap"}, opset=19),
    OpCase("dropout-inference-mask", "Dropout", {"x": sample((3, 5))}, outputs=2, dynamic=("x",)),
    OpCase("instance-norm", "InstanceNormalization", {"x": sample((2, 3, 4, 5))},
           constants={"scale": sample((3,)), "bias": sample((3,))}, dynamic=("x",)),
    OpCase("group-norm", "GroupNormalization", {"x": sample((2, 6, 3, 2)), "scale": sample((6,)),
           "bias": sample((6,))}, attrs={"num_groups": 3}, opset=21),
    OpCase("lrn", "LRN", {"x": sample((2, 5, 3, 3))}, attrs={"size": 3, "alpha": 0.01, "beta": 0.6, "bias": 1.5},
           dynamic=("x",)),
    OpCase("lp-norm-l1", "LpNormalization", {"x": sample((3, 6))}, attrs={"axis": 0, "p": 1}),
    OpCase("mean-variance-norm", "MeanVarianceNormalization", {"x": sample((2, 3, 4, 5))}, dynamic=("x",)),
)


@pytest.mark.parametrize("case", LAYER_CASES)
def test_layer(case: OpCase) -> None:
    case.check()


UNARY_ATTRIBUTE_OPS = [
    ("LeakyRelu", {"alpha": 0.2}), ("Elu", {"alpha": 0.7}), ("Selu", {}), ("Celu", {"alpha": 1.5}),
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}), ("ThresholdedRelu", {"alpha": 0.5}),
    ("Shrink", {"bias": 0.2, "lambd": 0.6}), ("Softsign", {}), ("HardSwish", {}), ("Mish", {}),
    ("Round", {}), ("Sign", {}), ("Atan", {}), ("Sinh", {}),
]


@pytest.mark.parametrize("op,attrs", UNARY_ATTRIBUTE_OPS, ids=[op for op, _ in UNARY_ATTRIBUTE_OPS])
def test_unary(op: str, attrs: dict) -> None:
    x = sample((3, 7)) * F32(2)
    OpCase(op, op, {"x": x}, attrs=attrs, dynamic=("x",), chunk_size=4).check()


OTHER_CASES = table(
    OpCase("cumsum-reverse-exclusive", "CumSum", {"x": sample((3, 5))}, constants={"axis": np.array(1, np.int64)},
           attrs={"reverse": 1, "exclusive": 1}, dynamic=("x",)),
    OpCase("cumsum-leading-axis-int", "CumSum", {"x": sample((4, 3), np.int64)},
           constants={"axis": np.array(0, np.int32)}),
    OpCase("hardmax", "Hardmax", {"x": sample((3, 6))}, dynamic=("x",)),
    OpCase("reduce-logsumexp", "ReduceLogSumExp", {"x": sample((3, 6))}, constants={"axes": np.array([1])},
           attrs={"keepdims": 0}),
    OpCase("reduce-l2-leading", "ReduceL2", {"x": sample((3, 6))}, constants={"axes": np.array([0])}),
    OpCase("reduce-prod", "ReduceProd", {"x": sample((2, 3, 5))}, constants={"axes": np.array([0, 2])}),
    OpCase("mod-int-floored", "Mod", {"a": sample((2, 5), np.int32), "b": np.array([3, -4, 5, -2, 7], np.int32)}),
    OpCase("mod-float-fmod", "Mod", {"a": sample((2, 5)), "b": np.full(5, 0.7, F32)}, attrs={"fmod": 1}),
    OpCase("prelu-channels", "PRelu", {"x": sample((2, 3, 4))}, constants={"slope": sample((3, 1))}),
    OpCase("depth-to-space-dcr", "DepthToSpace", {"x": sample((2, 8, 3, 2))}, attrs={"blocksize": 2},
           dynamic=("x",)),
    OpCase("depth-to-space-crd", "DepthToSpace", {"x": sample((1, 18, 2, 3))}, attrs={"blocksize": 3, "mode": "CRD"}),
    OpCase("space-to-depth", "SpaceToDepth", {"x": sample((2, 3, 4, 6))}, attrs={"blocksize": 2}, dynamic=("x",)),
    OpCase("gather-elements-last-axis", "GatherElements",
           {"x": sample((3, 6)), "i": np.array([[0, -1], [5, 2], [1, 1]], np.int64)}, attrs={"axis": 1}),
    OpCase("gather-elements-leading-axis", "GatherElements",
           {"x": sample((3, 4)), "i": np.array([[2, 0, 1, 1]], np.int32)}),
    OpCase("one-hot-middle-axis", "OneHot", {"i": np.array([[1, -1, 7], [0, 2, 3]], np.int64)},
           constants={"depth": np.array(4, np.int64), "values": np.array([-1, 5], F32)}, attrs={"axis": 1}),
)


@pytest.mark.parametrize("case", OTHER_CASES)
def test_other_ops(case: OpCase) -> None:
    case.check()
