"""onnx2sql as an ONNX backend (onnx.backend.base), so that the onnx package's backend test suite
and any other backend-style harness can run models in DuckDB.

    rep = onnx2sql.backend.prepare(model)      # compiles into an in-memory DuckDB database
    outputs = rep.run([x])                     # graph outputs in graph order

A model whose shapes, axes or counts are computed from its inputs cannot be compiled before the
inputs are known; its representation compiles on every run, specialised to the run's values
(as onnx2sql.run does).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import onnx
import onnx.helper
from onnx.backend.base import Backend, BackendRep, Device, DeviceType, namedtupledict

from onnx2sql.api import run as run_model_on_feeds
from onnx2sql.emit.program import Program
from onnx2sql.emit.sql import is_supported_dtype
from onnx2sql.errors import InputError, UnsupportedOpError
from onnx2sql.graph.load import load_model
from onnx2sql.graph.visitor import DEFAULT_CHUNK, find_unsupported, lower_model
from onnx2sql.runtime.session import Session, connect
from onnx2sql.storage.tables import write_weight


class Onnx2SqlRep(BackendRep):
    """A prepared model: its program and weights in an in-memory DuckDB database."""

    def __init__(self, model: onnx.ModelProto, chunk_size: int):
        self.model = model
        self.chunk_size = chunk_size
        initializers = {init.name for init in model.graph.initializer}
        self.input_names = [i.name for i in model.graph.input if i.name not in initializers]
        self.output_names = [o.name for o in model.graph.output]
        self._program = _lower_unless_data_dependent(model, chunk_size)
        self._con = connect() if self._program is not None else None
        if self._program is not None:
            for weight in self._program.weights:
                write_weight(self._con, weight)

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Outputs in graph order for inputs given as a list (graph order, initializers left out),
        a single array, or a mapping by name."""
        feeds = self._feeds(inputs)
        if self._program is not None:
            outputs = Session(self._con, self._program).run(feeds)
        else:
            outputs = run_model_on_feeds(self.model, feeds, chunk_size=self.chunk_size)
        return namedtupledict("Outputs", self.output_names)(*[outputs[name] for name in self.output_names])

    def _feeds(self, inputs: Any) -> dict[str, np.ndarray]:
        if isinstance(inputs, Mapping):
            return {name: np.asarray(value) for name, value in inputs.items()}
        values = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
        if len(values) != len(self.input_names):
            raise InputError(f"{len(values)} input(s) given; the model expects {len(self.input_names)}: "
                             f"{self.input_names}")
        return {name: np.asarray(value) for name, value in zip(self.input_names, values)}


def _lower_unless_data_dependent(model: onnx.ModelProto, chunk_size: int) -> Program | None:
    """The program of the model, or None when it can only be compiled for given input values."""
    try:
        return lower_model(model, chunk_size)
    except UnsupportedOpError as exc:
        if all(problem.data_dependent for problem in exc.problems):
            return None
        raise


class Onnx2SqlBackend(Backend):
    """The backend: CPU only (DuckDB); every op of onnx2sql's registry."""

    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> bool:
        return cls.supports_device(device) and not find_unsupported(model) and _input_types_supported(model)

    @classmethod
    def prepare(cls, model: onnx.ModelProto | str, device: str = "CPU", chunk_size: int | None = None,
                **kwargs: Any) -> Onnx2SqlRep:
        proto = load_model(model)
        super().prepare(proto, device, **kwargs)  # the onnx checker
        if not cls.supports_device(device):
            raise InputError(f"device {device!r} is not supported: onnx2sql runs on the CPU")
        return Onnx2SqlRep(proto, chunk_size or DEFAULT_CHUNK)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Any, device: str = "CPU",
                 outputs_info: Sequence[tuple[np.dtype, tuple[int, ...]]] | None = None,
                 **kwargs: Any) -> tuple[Any, ...]:
        """One node on its inputs: wrapped in a model of the default opset (or `opset_version`)."""
        super().run_node(node, inputs, device=device, outputs_info=outputs_info, **kwargs)
        arrays = [np.asarray(x) for x in (inputs.values() if isinstance(inputs, Mapping) else inputs)]
        names = [name for name in node.input if name]
        graph = onnx.helper.make_graph(
            [node], f"{node.op_type}_node",
            [onnx.helper.make_tensor_value_info(name, onnx.helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
             for name, a in zip(names, arrays)],
            [onnx.helper.make_empty_tensor_value_info(name) for name in node.output if name],
        )
        opset = kwargs.get("opset_version", onnx.defs.onnx_opset_version())
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid(node.domain, opset)])
        return Onnx2SqlRep(model, DEFAULT_CHUNK).run(arrays)  # no model check: the outputs have no types

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return Device(device).type == DeviceType.CPU


def _input_types_supported(model: onnx.ModelProto) -> bool:
    for value in model.graph.input:
        if not value.type.HasField("tensor_type"):
            return False
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        if not is_supported_dtype(dtype):
            return False
    return True


prepare = Onnx2SqlBackend.prepare
run_model = Onnx2SqlBackend.run_model
run_node = Onnx2SqlBackend.run_node
supports_device = Onnx2SqlBackend.supports_device
is_compatible = Onnx2SqlBackend.is_compatible
