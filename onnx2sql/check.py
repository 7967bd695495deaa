"""`onnx2sql check`: which ops and input element types of a model onnx2sql supports, without compiling.

Ops are looked up in the registry at the model's opsets (graph.visitor.find_unsupported), so an
op reported supported may still refuse an attribute value when compiled; compile names those.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx.helper

from onnx2sql.emit.sql import is_supported_dtype
from onnx2sql.graph.load import load_model, model_opsets
from onnx2sql.graph.visitor import find_unsupported

SHOWN_NODES = 3  # node names listed per unsupported op


@dataclass
class UnsupportedOp:
    op: str
    count: int
    reason: str
    nodes: list[str]


@dataclass
class CheckReport:
    opsets: dict[str, int]
    node_count: int
    supported: dict[str, int]  # op -> node count
    unsupported: list[UnsupportedOp]
    bad_inputs: dict[str, str] = field(default_factory=dict)  # graph input -> element type

    @property
    def ok(self) -> bool:
        return not self.unsupported and not self.bad_inputs


def check_model(model: str | Path | onnx.ModelProto) -> CheckReport:
    proto = load_model(model)
    problems = find_unsupported(proto)
    grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
    for p in problems:
        grouped[(op_label(p.domain, p.op_type), p.reason)].append(p.node_name)
    supported = Counter(op_label(n.domain, n.op_type) for n in proto.graph.node)
    supported.subtract(Counter(op_label(p.domain, p.op_type) for p in problems))
    return CheckReport(
        opsets=model_opsets(proto),
        node_count=len(proto.graph.node),
        supported={op: n for op, n in sorted(supported.items()) if n > 0},
        unsupported=[UnsupportedOp(op, len(nodes), reason, nodes[:SHOWN_NODES])
                     for (op, reason), nodes in sorted(grouped.items(), key=lambda item: (-len(item[1]), item[0]))],
        bad_inputs=unsupported_inputs(proto),
    )


def op_label(domain: str, op_type: str) -> str:
    return f"{domain}::{op_type}" if domain and domain != "ai.onnx" else op_type


def unsupported_inputs(model: onnx.ModelProto) -> dict[str, str]:
    """Graph inputs (initializers included) whose element type has no DuckDB column type."""
    found = {}
    for value in model.graph.input:
        if not value.type.HasField("tensor_type"):
            found[value.name] = f"{value.type.WhichOneof('value') or 'unknown'} (not a tensor)"
        else:
            found.update(_unsupported_type(value.name, value.type.tensor_type.elem_type))
    for init in model.graph.initializer:
        found.update(_unsupported_type(init.name, init.data_type))
    return found


def _unsupported_type(name: str, elem_type: int) -> dict[str, str]:
    label = onnx.TensorProto.DataType.Name(elem_type).lower()
    try:
        supported = is_supported_dtype(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)))
    except (KeyError, TypeError, ValueError):
        supported = False
    return {} if supported else {name: label}


def format_report(name: str, report: CheckReport) -> str:
    opsets = ", ".join(f"{d or 'ai.onnx'} {v}" for d, v in sorted(report.opsets.items()))
    lines = [f"{name}: {report.node_count} nodes, opsets {opsets}"]
    width = max([len(op) for op in report.supported] + [len(u.op) for u in report.unsupported] + [8])
    lines.append(f"supported: {len(report.supported)} op types")
    lines += [f"  {op:<{width}}  {count:>6}" for op, count in report.supported.items()]
    if report.unsupported:
        total = sum(u.count for u in report.unsupported)
        lines.append(f"unsupported: {len({u.op for u in report.unsupported})} op types, {total} nodes")
        for u in report.unsupported:
            more = f" (+{u.count - len(u.nodes)} more)" if u.count > len(u.nodes) else ""
            names = ", ".join(repr(n) for n in u.nodes)
            lines.append(f"  {u.op:<{width}}  {u.count:>6}  {u.reason}; nodes {names}{more}")
    if report.bad_inputs:
        lines.append(f"unsupported element types: {len(report.bad_inputs)} inputs")
        lines += [f"  {name!r}: {kind}" for name, kind in report.bad_inputs.items()]
    lines.append("result: every op and input type is supported" if report.ok else "result: not supported")
    return "\n".join(lines)
