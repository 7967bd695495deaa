"""The onnx package's backend test suite (onnx.backend.test.BackendTest) against onnx2sql.backend:
the model tests whose files the onnx wheel ships (data/simple, data/pytorch-converted,
data/pytorch-operator: model.onnx plus input and output data sets).

Left out: the node tests (generated in memory, they run in test_all_node_cases.py and
test_transpiler_node_cases.py at a smaller chunk size) and data/real and data/light, ImageNet
models (AlexNet, ResNet-50, ...) on 224x224 inputs whose weights are downloads (real) or are
filled with ConstantOfShape (light); a reference output that the runner computes with onnx's
Python reference evaluator, and the LRN, Dropout and 11x11 convolutions they hold make them far
too slow for this suite.
"""
from __future__ import annotations

import re

import onnx
import onnx.backend.test
from onnx.backend.test.loader import load_model_tests

from onnx2sql import backend

KINDS = ("simple", "pytorch-converted", "pytorch-operator")
CLASSES = ("OnnxBackendSimpleModelTest", "OnnxBackendPyTorchConvertedModelTest",
           "OnnxBackendPyTorchOperatorModelTest")

_SEQUENCES = "sequence values (SequenceConstruct, SequenceInsert, SplitToSequence, ...)"
_STRINGS = "string tensors (StringNormalizer)"
_OPSET_6 = ("an opset 6 export: legacy versions of Add/Sub/Mul/Gemm (broadcast and axis attributes), "
            "Softmax/LogSoftmax-1 (2-D coercion), ReduceSum/ReduceMean-1, Slice-1, Pow-1, Max/Min/Sum-6, "
            "PRelu-6, InstanceNormalization-6 and MatMul-1 are not lowered")
_CONV_TRANSPOSE = "ConvTranspose is not lowered"

EXCLUDED: dict[str, str] = {
    **{f"test_sequence_model{k}": _SEQUENCES for k in range(1, 9)},
    **{f"test_strnorm_model_{suffix}": _STRINGS for suffix in (
        "monday_casesensintive_lower", "monday_casesensintive_nochangecase", "monday_casesensintive_upper",
        "monday_empty_output", "monday_insensintive_upper_twodim", "nostopwords_nochangecase")},
    "test_gradient_of_add": "ai.onnx.preview.training::Gradient (training) is not lowered",
    "test_gradient_of_add_and_mul": "ai.onnx.preview.training::Gradient (training) is not lowered",
    "test_ConvTranspose2d": _CONV_TRANSPOSE,
    "test_ConvTranspose2d_no_bias": _CONV_TRANSPOSE,
    "test_operator_convtranspose": _CONV_TRANSPOSE,
    **{name: _OPSET_6 for name in (
        "test_GLU", "test_GLU_dim", "test_Linear", "test_Linear_no_bias", "test_LogSoftmax", "test_PReLU_1d",
        "test_PReLU_1d_multiparam", "test_PReLU_2d", "test_PReLU_2d_multiparam", "test_PReLU_3d",
        "test_PReLU_3d_multiparam", "test_PoissonNLLLLoss_no_reduce", "test_Softmax", "test_Softmin",
        "test_Softsign", "test_log_softmax_dim3", "test_log_softmax_lastdim", "test_softmax_functional_dim3",
        "test_softmax_lastdim", "test_operator_add_broadcast", "test_operator_add_size1_broadcast",
        "test_operator_add_size1_right_broadcast", "test_operator_add_size1_singleton_broadcast",
        "test_operator_addconstant", "test_operator_addmm", "test_operator_basic", "test_operator_index",
        "test_operator_max", "test_operator_min", "test_operator_mm", "test_operator_non_float_params",
        "test_operator_params", "test_operator_pow", "test_operator_reduced_mean",
        "test_operator_reduced_mean_keepdim", "test_operator_reduced_sum", "test_operator_reduced_sum_keepdim",
        "test_operator_symbolic_override", "test_operator_symbolic_override_nested")},
}

SHIPPED = sorted(t.name for kind in KINDS for t in load_model_tests(kind=kind))
ALLOWED = [name for name in SHIPPED if name not in EXCLUDED]

_runner = onnx.backend.test.BackendTest(backend.Onnx2SqlBackend, __name__)
for _name in ALLOWED:
    _runner.include(rf"^{re.escape(_name)}_cpu$")


def _allowed_only(cls: type) -> type:
    """The runner turns every case outside the allowlist into a skipped test; drop those instead,
    so the suite reports the excluded cases by the list above, not as skips."""
    allowed = {f"{name}_cpu" for name in ALLOWED}
    for attr in [a for a in vars(cls) if a.startswith("test_") and a not in allowed]:
        delattr(cls, attr)
    return cls


globals().update({name: _allowed_only(cls) for name, cls in _runner.test_cases.items() if name in CLASSES})


def test_allowlist_is_current() -> None:
    """Every exclusion names a shipped test, and every allowed model is one the backend accepts
    (the runner would skip an incompatible one silently)."""
    assert set(EXCLUDED) <= set(SHIPPED), sorted(set(EXCLUDED) - set(SHIPPED))
    assert len(ALLOWED) >= 80
    for kind in KINDS:
        for test in load_model_tests(kind=kind):
            if test.name in ALLOWED:
                model = onnx.load(f"{test.model_dir}/model.onnx")
                assert backend.is_compatible(model), test.name
