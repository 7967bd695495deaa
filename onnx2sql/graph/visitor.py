"""The node-by-node visitor: ONNX graph -> Program (statements + weight tables)."""
from __future__ import annotations

import re
from typing import Mapping

import numpy as np
import onnx
import onnx.helper

from onnx2sql.dialects import current, dialect_for, using
from onnx2sql.emit.program import Program, SymbolSource, TensorSpec
from onnx2sql.emit.regions import DEFAULT_REGION_SIZE
from onnx2sql.emit.sql import DEFAULT_CHUNK, comment_text, is_supported_dtype
from onnx2sql.errors import ModelError, NodeProblem, Onnx2SqlError, UnsupportedOpError
from onnx2sql.graph.load import initializer_array, model_opsets
from onnx2sql.graph.symbolic import Dim, as_dim, dim_to_text, make_symbol
from onnx2sql.graph.values import Known, Runtime, Value
from onnx2sql.ops.fusion import drop_unread, fuse_elementwise
from onnx2sql.ops.context import DataDependentInput, LowerContext, LoweringProblem, NodeView
from onnx2sql.ops.registry import find_lowering, op_version
from onnx2sql.runtime.kernel_mode import WEIGHT_FORMATS


def lower_model(model: onnx.ModelProto, chunk: int = DEFAULT_CHUNK,
                constants: Mapping[str, np.ndarray] | None = None,
                region_size: int = DEFAULT_REGION_SIZE, append_in_place: bool = True,
                kernels: str = "sql", weights: str = "fp32", backend: str = "duckdb") -> Program:
    """Lower a whole model, or raise UnsupportedOpError naming every node that cannot be lowered.

    `constants` fixes the values of some graph inputs: the program is specialised to them.
    `region_size` bounds the statements run as one database statement (onnx2sql/emit/regions.py).
    `append_in_place` lets a Concat of a graph input with new rows, itself a graph output (a KV
    cache), append to the input's table instead of copying it (onnx2sql/ops/shape.py).
    `kernels` is "native" (float32 products call the native kernels) or "sql". `weights` "int8"
    stores the known matrices of those products as int8 tiles (native kernels only). `backend` is
    the database the program's SQL is written for (onnx2sql/dialects)."""
    dialect = dialect_for(backend)
    if kernels not in dialect.kernel_modes:
        raise ModelError(f"kernels must be one of {', '.join(map(repr, dialect.kernel_modes))} on {backend}, "
                         f"got {kernels!r}")
    if weights not in WEIGHT_FORMATS or (weights == "int8" and kernels != "native"):
        raise ModelError(f"weights must be 'fp32', or 'int8' with native kernels; got {weights!r} with {kernels!r}")
    if chunk < 1:
        raise ModelError(f"chunk size must be at least 1, got {chunk}")
    if region_size < 1:
        raise ModelError(f"region size must be at least 1, got {region_size}")
    with using(dialect):
        program = _lower(model, chunk, constants, append_in_place, kernels, weights)
        program.backend = backend
        return program.finish(min(region_size, dialect.max_region_size or region_size))


def _lower(model: onnx.ModelProto, chunk: int, constants: Mapping[str, np.ndarray] | None,
           append_in_place: bool, kernels: str, weights: str) -> Program:
    graph = model.graph
    opsets = model_opsets(model)
    problems = find_unsupported(model)
    if problems:
        raise UnsupportedOpError(problems)
    # A backend's vector kernel (pgvector, SQLite's extension) multiplies known matrices stored a
    # whole row per table row; DuckDB's native kernels multiply tiles. Native kernels (DuckDB's,
    # SQLite's) also take the dot products of computed tensors (attention).
    vector_rows = kernels == current().vector_kernel
    ctx = LowerContext(chunk=chunk, graph_outputs=frozenset(out.name for out in graph.output),
                       sole_readers=_sole_readers(graph), append_in_place=append_in_place,
                       native=kernels == "native", vector_rows=vector_rows,
                       weight_format=weights)
    values: dict[str, Value] = {}
    for init in graph.initializer:
        arr = initializer_array(init)
        values[init.name] = Known.of(arr, arr.dtype)
    for name, array in (constants or {}).items():
        values[name] = Known.of(np.asarray(array), np.asarray(array).dtype)
    inputs, symbols = _graph_inputs(graph, values)
    failed: set[str] = set()
    for index, node in enumerate(graph.node):
        if any(name in failed for name in node.input if name):
            failed.update(node.output)
            continue
        opset = opsets.get(node.domain or "", 0)
        view = NodeView(node, index, opset, op_version(node.op_type, opset, node.domain) or 0,
                        [values[n] if n else None for n in _checked_inputs(node, values)])
        ctx.node_label = f"{node.op_type} {comment_text(view.name)}"
        try:
            outputs = find_lowering(node.op_type, opset, node.domain)(view, ctx)  # type: ignore[misc]
        except (LoweringProblem, NotImplementedError, Onnx2SqlError) as exc:
            problems.append(view.problem(str(exc), isinstance(exc, DataDependentInput)))
            failed.update(node.output)
            continue
        for name, value in zip(node.output, outputs):
            if name:
                values[name] = value
    if problems:
        raise UnsupportedOpError(problems)
    outputs_spec = []
    for out in graph.output:
        if out.name not in values:
            raise ModelError(f"graph output {out.name!r} is produced by no node")
        ctx.node_label = f"graph output {comment_text(out.name)}"
        outputs_spec.append(_spec(out.name, ctx.runtime(values[out.name])))
    keep = {spec.table for spec in inputs + outputs_spec}
    fuse_elementwise(ctx, keep)
    drop_unread(ctx, keep)
    return Program(chunk, inputs, outputs_spec, symbols, ctx.statements, weights=ctx.weights, kernels=kernels,
                   weight_format=weights, weight_bytes={w.table: w.stored_bytes() for w in ctx.weights if w.tile_rows})


# Ops that read only their input's shape, which folds at compile time: they never read its table.
SHAPE_READERS = frozenset({"Shape", "Size"})


def _sole_readers(graph: onnx.GraphProto) -> dict[str, int]:
    """Graph inputs (not also graph outputs) whose values exactly one node reads, once: ONNX name
    -> node index."""
    readers: dict[str, list[int]] = {inp.name: [] for inp in graph.input}
    for index, node in enumerate(graph.node):
        if node.op_type in SHAPE_READERS and not node.domain:
            continue
        for name in node.input:
            if name in readers:
                readers[name].append(index)
    outputs = {out.name for out in graph.output}
    return {name: found[0] for name, found in readers.items() if len(found) == 1 and name not in outputs}


def find_unsupported(model: onnx.ModelProto) -> list[NodeProblem]:
    """Every node whose op (at the model's opset) has no lowering, or that holds a subgraph."""
    opsets = model_opsets(model)
    problems = []
    for index, node in enumerate(model.graph.node):
        opset = opsets.get(node.domain or "", 0)
        name = node.name or f"#{index}"
        if node.domain and node.domain not in opsets:
            problems.append(NodeProblem(node.op_type, name, 0, "its domain is not imported", node.domain))
        elif any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            problems.append(NodeProblem(node.op_type, name, opset, "subgraphs are not supported", node.domain))
        elif find_lowering(node.op_type, opset, node.domain) is None:
            version = op_version(node.op_type, opset, node.domain)
            reason = "unknown op" if version is None else f"op version {version} is not supported"
            problems.append(NodeProblem(node.op_type, name, opset, reason, node.domain))
    return problems


def _checked_inputs(node: onnx.NodeProto, values: dict[str, Value]) -> list[str]:
    for name in node.input:
        if name and name not in values:
            raise ModelError(f"{node.op_type} node {node.name!r} reads {name!r}, which no node or input produces "
                             "(is the graph topologically sorted?)")
    return list(node.input)


def _graph_inputs(graph: onnx.GraphProto, values: dict[str, Value]) -> tuple[list[TensorSpec], list[SymbolSource]]:
    feeds = [inp for inp in graph.input if inp.name not in values]  # IR < 4 lists initializers as inputs
    sources: list[SymbolSource] = []
    by_param = _plain_dim_params(feeds, sources)
    specs: list[TensorSpec] = []
    for k, inp in enumerate(graph.input):
        if inp.name in values:
            continue
        ttype = inp.type.tensor_type
        if not inp.type.HasField("tensor_type") or not ttype.HasField("shape"):
            raise ModelError(f"graph input {inp.name!r} has no tensor type with a shape")
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(ttype.elem_type))
        if not is_supported_dtype(dtype):
            where = "" if current().name == "duckdb" else f" on {current().name}"
            raise ModelError(f"graph input {inp.name!r} has unsupported element type {dtype.name}{where}")
        dims: list[Dim] = []
        for axis, d in enumerate(ttype.shape.dim):
            if d.HasField("dim_value") and d.dim_value >= 0:
                dims.append(as_dim(d.dim_value))
            elif d.dim_param in by_param:
                dims.append(by_param[d.dim_param])
            else:
                expr = parse_dim_sum(d.dim_param, by_param)
                if expr is None:  # unnamed, or a formula we do not read: a symbol of its own
                    expr = make_symbol(len(sources))
                    sources.append(SymbolSource(expr.name, inp.name, axis, d.dim_param or f"{inp.name}[{axis}]"))
                dims.append(expr)
        value = Runtime(f"in{k}", dtype, tuple(dims))
        values[inp.name] = value
        specs.append(_spec(inp.name, value))
    return specs, sources


def _plain_dim_params(feeds: list[onnx.ValueInfoProto], sources: list[SymbolSource]) -> dict[str, Dim]:
    """One symbol per dim_param that is a plain name, bound from its first occurrence."""
    by_param: dict[str, Dim] = {}
    for inp in feeds:
        for axis, d in enumerate(inp.type.tensor_type.shape.dim):
            name = d.dim_param
            if not d.HasField("dim_value") and _IDENT.fullmatch(name or "") and name not in by_param:
                sym = make_symbol(len(sources))
                sources.append(SymbolSource(sym.name, inp.name, axis, name))
                by_param[name] = sym
    return by_param


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_dim_sum(text: str, by_param: dict[str, Dim]) -> Dim | None:
    """A dim_param such as 'past_sequence_length + sequence_length' (Optimum writes these) as a sum of
    known symbols and integers; None for anything else. A small parser: the text is never evaluated."""
    terms = [t.strip() for t in text.split("+")] if text else []
    if not terms or not all(t.isdigit() or t in by_param for t in terms):
        return None
    total: Dim = as_dim(0)
    for t in terms:
        total = total + (as_dim(int(t)) if t.isdigit() else by_param[t])
    return total


def _spec(name: str, value: Runtime) -> TensorSpec:
    return TensorSpec(name, value.table, value.dtype.name, [dim_to_text(d) for d in value.shape])
