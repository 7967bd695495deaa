"""The exceptions onnx2sql raises. Every message names what is wrong: op, node, input, size."""
from __future__ import annotations

from dataclasses import dataclass


class Onnx2SqlError(Exception):
    """Base class of every error onnx2sql raises on purpose."""


@dataclass(frozen=True)
class NodeProblem:
    """One offending node: what it is and why it cannot be compiled."""

    op_type: str
    node_name: str
    opset: int
    reason: str
    domain: str = ""
    # True when the only trouble is a shape-like input computed from data (see onnx2sql.run).
    data_dependent: bool = False

    def describe(self) -> str:
        op = f"{self.domain}::{self.op_type}" if self.domain else self.op_type
        return f"{op} (node {self.node_name!r}, opset {self.opset}): {self.reason}"


class UnsupportedOpError(Onnx2SqlError):
    """The graph holds ops, or attribute values, that onnx2sql cannot lower. Lists every one."""

    def __init__(self, problems: list[NodeProblem]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p.describe()}" for p in self.problems)
        super().__init__(f"{len(self.problems)} node(s) cannot be compiled:\n{lines}")


class ShapeError(Onnx2SqlError):
    """Shapes that do not fit together, or a shape that cannot be known at compile time."""


class InputError(Onnx2SqlError):
    """Feeds, files or arguments given by the user are missing or wrong."""


class ModelError(Onnx2SqlError):
    """The model file is missing, unreadable or malformed."""


class KernelsUnavailable(Onnx2SqlError):
    """The native kernels extension is not built, or DuckDB refuses to load it."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class UsageError(InputError):
    """A command-line flag or argument with a value that can never work (the CLI exits 2)."""


class DatabaseError(InputError):
    """A compiled database that is not onnx2sql's, or is truncated or corrupted."""
