"""Lowering functions keyed by (domain, op type, since_version).

A node is lowered by the function registered for its op with the highest since_version not above
the version the model's opset gives that op. Registering the same key twice is an error.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import onnx.defs

if TYPE_CHECKING:
    from onnx2sql.ops.context import LowerContext, NodeView
    from onnx2sql.graph.values import Value

Lowering = Callable[["NodeView", "LowerContext"], "list[Value]"]


@dataclass(frozen=True)
class OpKey:
    domain: str
    op_type: str
    since_version: int


_REGISTRY: dict[OpKey, Lowering] = {}


def register(op_types: str | list[str], since: int = 1, domain: str = "") -> Callable[[Lowering], Lowering]:
    """Decorator: `@register("Add", since=7)` or `@register(["Add", "Sub"], since=7)`."""
    names = [op_types] if isinstance(op_types, str) else list(op_types)

    def decorate(fn: Lowering) -> Lowering:
        for name in names:
            key = OpKey(domain, name, since)
            if key in _REGISTRY:
                raise ValueError(f"duplicate lowering for {key}: {_REGISTRY[key].__qualname__} and {fn.__qualname__}")
            _REGISTRY[key] = fn
        return fn

    return decorate


def op_version(op_type: str, opset: int, domain: str = "") -> int | None:
    """The since_version of the schema an opset gives an op, or None if ONNX knows no such op."""
    try:
        return onnx.defs.get_schema(op_type, opset, domain).since_version
    except onnx.defs.SchemaError:
        return None


def find_lowering(op_type: str, opset: int, domain: str = "") -> Lowering | None:
    """The lowering for an op at a model opset, or None when the op (or that version) is not supported."""
    _load_families()
    version = op_version(op_type, opset, domain)
    if version is None:
        return None
    candidates = [k for k in _REGISTRY if k.domain == domain and k.op_type == op_type and k.since_version <= version]
    if not candidates:
        return None
    return _REGISTRY[max(candidates, key=lambda k: k.since_version)]


def supported_ops() -> list[OpKey]:
    _load_families()
    return sorted(_REGISTRY, key=lambda k: (k.domain, k.op_type, k.since_version))


def _load_families() -> None:
    # Importing the family modules runs their @register decorators.
    from onnx2sql.ops import families  # noqa: F401
