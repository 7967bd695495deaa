"""What a lowering function sees: the node (attributes with schema defaults, input values) and
the context it emits statements and weight tables into."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import onnx
import onnx.defs
import onnx.helper

from onnx2sql.emit.regions import Statement
from onnx2sql.emit.sql import comment_text, literal, quote_ident, render, sql_type
from onnx2sql.errors import NodeProblem
from onnx2sql.graph.symbolic import Shape, as_shape, sql_expr, to_sql
from onnx2sql.graph.values import Known, Runtime, Value
from onnx2sql.storage.quantize import row_bytes


class LoweringProblem(Exception):
    """Raised by a lowering for an attribute value or input it cannot handle; becomes a NodeProblem."""


class DataDependentInput(LoweringProblem):
    """A shape, axes or count input that is computed from data rather than known at compile time."""


@dataclass(frozen=True)
class TableRef:
    """A tensor table as templates use it."""

    name: str  # quoted identifier
    lead: int  # number of leading index columns (i0 ..)
    type: str  # SQL element type
    rank: int  # logical rank (0 for scalars)
    shape: Shape


def lead_count(rank: int) -> int:
    return max(rank - 1, 0)


@dataclass
class WeightTable:
    table: str
    array: np.ndarray
    comment: str
    chunk: int  # elements per chunk of the last axis
    # A matrix stored as tiles: rows (c, m) with m the list of `tile_rows` whole rows of tile c,
    # tiles numbered from `first_tile` (0: the ordinary chunked layout).
    tile_rows: int = 0
    first_tile: int = 0
    # Tiles stored as BLOBs, the form the native kernels multiply: "f32" (little-endian float32
    # rows) or "q8" (int8 rows with group scales, storage/quantize.py); "": lists of lists.
    # "vector": not tiles but whole rows (chunk = the row's length) as the vectors of the backend's
    # vector kernel (pgvector on PostgreSQL, float32 BLOBs on SQLite).
    blob: str = ""

    def stored_bytes(self) -> int:
        """Bytes of values the table holds (int8 tiles: their scales and int8 values)."""
        if self.tile_rows:
            return tile_bytes(self.blob, *self.array.shape, self.array.dtype)
        return int(self.array.nbytes)


def tile_bytes(blob: str, rows: int, width: int, dtype: np.dtype) -> int:
    """Bytes of the values of a rows x width matrix's tiles in the form `blob` (WeightTable.blob)."""
    return rows * row_bytes(width) if blob == "q8" else rows * width * np.dtype(dtype).itemsize


# A known tensor of at most this many elements that an op reads as a table is written into the
# SQL as VALUES rows rather than stored.
INLINE_CONSTANT_ELEMENTS = 256

# The native kernel that multiplies a row of A with a tile of each BLOB form.
TILE_KERNELS = {"f32": "onnx2sql_tile_matvec", "q8": "onnx2sql_tile_matvec_q8"}


class NodeView:
    """A node with attribute defaults from its ONNX schema and its input values resolved."""

    def __init__(self, node: onnx.NodeProto, index: int, opset: int, version: int, inputs: list[Value | None]):
        self.node = node
        self.index = index
        self.opset = opset
        self.version = version
        self.inputs = inputs
        self._schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
        self._attrs = {a.name: a for a in node.attribute}

    @property
    def op_type(self) -> str:
        return self.node.op_type

    @property
    def name(self) -> str:
        return self.node.name or f"#{self.index}"

    def attr(self, name: str, default: object = None) -> object:
        if name in self._attrs:
            return onnx.helper.get_attribute_value(self._attrs[name])
        spec = self._schema.attributes.get(name)
        if spec is not None and spec.default_value.type != onnx.AttributeProto.UNDEFINED:
            return onnx.helper.get_attribute_value(spec.default_value)
        if spec is not None and spec.required:
            raise LoweringProblem(f"required attribute {name!r} is missing")
        return default

    def has_attr(self, name: str) -> bool:
        return name in self._attrs

    def input(self, k: int) -> Value | None:
        return self.inputs[k] if k < len(self.inputs) else None

    def known_input(self, k: int, what: str) -> Known | None:
        """An input that must be known at compile time (a shape, axes, a count), or None if absent."""
        value = self.input(k)
        if value is None:
            return None
        if not isinstance(value, Known):
            raise DataDependentInput(
                f"input {k} ({what}, {self.node.input[k]!r}) is computed from data at run time; "
                "it must be a constant or shape arithmetic"
            )
        return value

    @property
    def output_count(self) -> int:
        return len(self.node.output)

    def wants_output(self, k: int) -> bool:
        return k < len(self.node.output) and self.node.output[k] != ""

    def fail(self, reason: str) -> LoweringProblem:
        return LoweringProblem(reason)

    def problem(self, reason: str, data_dependent: bool = False) -> NodeProblem:
        return NodeProblem(self.op_type, self.name, self.opset, reason, self.node.domain, data_dependent)


@dataclass
class LowerContext:
    """Collects the statements and weight tables a graph lowers to."""

    chunk: int
    graph_outputs: frozenset[str] = frozenset()  # ONNX names of the graph's outputs
    # Graph inputs that one node alone reads (ONNX name -> that node's index), and whether such
    # an input may grow in place: a Concat of it with new rows that is a graph output (a KV
    # cache's past and present) then appends the new rows to the input's table.
    sole_readers: dict[str, int] = field(default_factory=dict)
    append_in_place: bool = True
    # Products of float32 tensors call the native kernels (onnx2sql_tile_matvec, onnx2sql_dot).
    native: bool = False
    # Known float matrices of products are stored as pgvector rows, multiplied by pgvector.
    vector_rows: bool = False
    # "fp32", or "int8": known matrices whose products the native kernels run are stored as int8
    # tiles (a float32 scale per 32 values).
    weight_format: str = "fp32"
    statements: list[Statement] = field(default_factory=list)
    weights: list[WeightTable] = field(default_factory=list)
    node_label: str = ""
    _counter: int = 0
    # Tables that are another table with its last two axes swapped (attention's K transposed): a
    # matrix product, which reads B with those axes swapped back, reads the original instead.
    swapped: dict[str, Runtime] = field(default_factory=dict)
    # Recipes of elementwise statements by table, for fusion (onnx2sql/ops/fusion.py).
    elementwise: dict[str, object] = field(default_factory=dict)
    _weight_cache: dict[tuple[int, str], Runtime] = field(default_factory=dict)
    _weight_parts: dict[tuple[int, str], list[Runtime]] = field(default_factory=dict)
    # The cache is keyed by id(): its values stay referenced so that no id is reused by another value.
    _cached_values: list[Known] = field(default_factory=list)

    def _new_name(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter}"

    def ref(self, value: Value) -> TableRef:
        """The table of a value; a known value becomes a weight table (numeric) or a statement (symbolic)."""
        return self.table_ref(self.runtime(value))

    @staticmethod
    def table_ref(value: Runtime) -> TableRef:
        return TableRef(quote_ident(value.table), lead_count(value.rank), sql_type(value.dtype), value.rank, value.shape)

    def runtime(self, value: Value) -> Runtime:
        if isinstance(value, Runtime):
            return value
        key = (id(value), "plain")
        if key not in self._weight_cache:
            self._cached_values.append(value)
            if value.symbolic:
                self._weight_cache[key] = self.emit(
                    "shape/materialize.sql.j2", value.dtype, value.shape,
                    rows=_value_rows(value, self.chunk, sql_expr),
                )
            elif value.array.size <= INLINE_CONSTANT_ELEMENTS:
                self._weight_cache[key] = self._inline_constant(value)
            else:
                self._weight_cache[key] = self.add_weight(value.array.astype(value.dtype), "constant")
        return self._weight_cache[key]

    def _inline_constant(self, value: Known) -> Runtime:
        """A small known tensor written into the SQL of its readers as VALUES rows: a stored table
        would take a whole storage block (256 KB on disk and in the buffer pool) for a few bytes."""
        label, self.node_label = self.node_label, f"constant for {self.node_label}"
        try:
            return self.emit("shape/materialize.sql.j2", value.dtype, value.shape, recomputable=True,
                             rows=_value_rows(value, self.chunk, lambda x: literal(x, value.dtype)))
        finally:
            self.node_label = label

    def transposed_weight(self, value: Known) -> Runtime:
        """A weight stored with its last two axes swapped: the layout MatMul wants for B."""
        key = (id(value), "T")
        if key not in self._weight_cache:
            self._cached_values.append(value)
            arr = np.swapaxes(value.array.astype(value.dtype), -1, -2)
            self._weight_cache[key] = self.add_weight(np.ascontiguousarray(arr), "transposed (last two axes swapped)")
        return self._weight_cache[key]

    def weight_tiles(self, value: Known, transpose: bool, tile_bounds: Sequence[int]) -> list[Runtime]:
        """A matrix (transposed first when asked) stored as tiles of `chunk` whole rows, one table per
        range of tiles tile_bounds[p]:tile_bounds[p+1]: the layout in which a matrix product reads a
        known B, each tile giving one chunk of the output."""
        key = (id(value), f"tiles{'T' if transpose else ''}{list(tile_bounds)}")
        if key not in self._weight_parts:
            self._cached_values.append(value)
            arr = value.array.astype(value.dtype)
            arr = arr.T if transpose else arr
            note = "tiles of whole rows" + (" of the transpose" if transpose else "")
            blob = self.tile_blob(value.dtype)
            note += {"f32": " (float32 BLOBs)", "q8": " (int8 BLOBs, a float32 scale per 32 values)"}.get(blob, "")
            parts = []
            for first, end in zip(tile_bounds[:-1], tile_bounds[1:]):
                rows = np.ascontiguousarray(arr[first * self.chunk:end * self.chunk])
                parts.append(self.add_weight(rows, f"{note}, tiles {first}..{end - 1}", tile_rows=self.chunk,
                                             first_tile=first, blob=blob))
            self._weight_parts[key] = parts
        return self._weight_parts[key]

    def vector_rows_of(self, value: Known, transpose: bool) -> Runtime:
        """A matrix (transposed first when asked) stored a whole row per table row, as the vectors
        of the backend's vector kernel (pgvector's type, SQLite's float32 BLOBs): the layout in
        which a row of A meets every row at once."""
        key = (id(value), f"vector{'T' if transpose else ''}")
        if key not in self._weight_cache:
            self._cached_values.append(value)
            arr = value.array.astype(value.dtype)
            rows = np.ascontiguousarray(arr.T if transpose else arr)
            table = self._new_name("w")
            out = Runtime(table, rows.dtype, as_shape(rows.shape))
            note = "whole rows as vectors" + (" of the transpose" if transpose else "")
            self.weights.append(WeightTable(table, rows, f"{note}; used by {self.node_label}",
                                            max(rows.shape[1], 1), blob="vector"))
            self._weight_cache[key] = out
        return self._weight_cache[key]

    def native_for(self, dtype: np.dtype) -> bool:
        """Whether products of this element type call the native kernels (float32 only)."""
        return self.native and np.dtype(dtype) == np.float32

    def tile_blob(self, dtype: np.dtype) -> str:
        """The BLOB form of a known matrix's tiles (see WeightTable.blob): int8 when asked for and
        the kernels run its products, float32 when only the kernels do, "" in pure SQL."""
        if not self.native_for(dtype):
            return ""
        return "q8" if self.weight_format == "int8" else "f32"

    def add_weight(self, array: np.ndarray, note: str, tile_rows: int = 0, first_tile: int = 0,
                   blob: str = "") -> Runtime:
        table = self._new_name("w")
        out = Runtime(table, array.dtype, as_shape(array.shape))
        self.weights.append(WeightTable(table, array, f"{note}; used by {self.node_label}", self.chunk,
                                        tile_rows, first_tile, blob))
        return out

    def emit(self, template: str, dtype: np.dtype, shape: Shape, recomputable: bool = False,
             **params: object) -> Runtime:
        """Render one statement that creates a new tensor table; returns the tensor."""
        reads = tuple(sorted({r.name for r in _table_refs(params.values())}))
        return self.emit_rendered(
            dtype, shape, lambda ref: (render(template, N=self.chunk, out=ref, sql_dim=to_sql, **params), reads),
            recomputable)

    def emit_append(self, target: Runtime, shape: Shape, template: str, **params: object) -> Runtime:
        """One statement that appends rows to the existing table of `target`; returns the grown
        tensor, which lives in the same table."""
        reads = tuple(sorted({r.name for r in _table_refs(params.values())}))
        out = Runtime(target.table, target.dtype, tuple(shape))
        sql = render(template, N=self.chunk, out=self.table_ref(out), sql_dim=to_sql, **params)
        comment = f"{out.table} += {self.node_label}: {describe_layout(out, self.chunk)} (rows appended in place)"
        self.statements.append(Statement(out.table, sql, comment, reads, appends=True))
        return out

    def emit_rendered(self, dtype: np.dtype, shape: Shape,
                      build: Callable[[TableRef], tuple[str, tuple[str, ...]]], recomputable: bool = False) -> Runtime:
        """One statement from `build`, which gives the SQL and the tables read for the output's ref."""
        out = Runtime(self._new_name("t"), np.dtype(dtype), tuple(shape))
        ref = self.table_ref(out)
        sql, reads = build(ref)
        comment = f"{out.table} <- {self.node_label}: {describe_layout(out, self.chunk)}"
        self.statements.append(Statement(out.table, sql, comment, reads, recomputable=recomputable))
        return out


def describe_layout(value: Runtime, chunk: int) -> str:
    lead = ", ".join(f"i{k}" for k in range(lead_count(value.rank)))
    dims = ", ".join(str(d) for d in value.shape)
    cols = f"({lead + ', ' if lead else ''}c) -> {sql_type(value.dtype)}[<={chunk}]"
    return comment_text(f"{cols}; shape [{dims}]")


def _table_refs(values: Sequence[object]) -> list[TableRef]:
    found: list[TableRef] = []
    for v in values:
        if isinstance(v, TableRef):
            found.append(v)
        elif isinstance(v, (list, tuple)):
            found.extend(_table_refs(v))
        elif isinstance(v, dict):
            found.extend(_table_refs(list(v.values())))
    return found


def _value_rows(value: Known, chunk: int, render_element: Callable[[object], str]) -> list[dict]:
    """Rows (lead indices, c, rendered elements) of a small known tensor."""
    arr = value.array.reshape(1) if value.rank == 0 else value.array
    lead_shape = arr.shape[:-1]
    rows = []
    for lead in np.ndindex(*lead_shape):
        line = arr[lead]
        for c in range(0, max(len(line), 0), chunk):
            rows.append({"lead": list(lead), "c": c // chunk, "v": [render_element(x) for x in line[c:c + chunk]]})
    return rows
