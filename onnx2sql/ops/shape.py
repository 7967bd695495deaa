"""Shape ops: Shape, Size, Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat, Slice, Split,
Expand, Tile.

Every op folds when its inputs are known at compile time (numpy on object arrays keeps symbolic
dims symbolic), so shape arithmetic never reaches SQL. On run-time tensors each op picks the
cheapest form of the chunked layout: re-indexing leading columns keeps the chunks untouched, whole
chunks move when the last axis is cut at chunk boundaries, and only ops that move single elements
across the last axis work in element form (explode, re-index, rechunk).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
import sympy

from onnx2sql.emit.sql import int_div
from onnx2sql.errors import ShapeError
from onnx2sql.graph.symbolic import Dim, Shape, as_dim, dims_equal, is_one, product, static_value, to_sql
from onnx2sql.graph.values import Known, Runtime, Value, shape_of
from onnx2sql.ops.broadcast import broadcast_shapes
from onnx2sql.ops.context import LowerContext, NodeView
from onnx2sql.ops.elementwise import FOLD_LIMIT
from onnx2sql.ops.registry import Lowering, register

# Slice starts/ends beyond this mean "from/to the end" (exporters write INT64_MAX / INT64_MIN).
UNBOUNDED = 1 << 62


# ---------------------------------------------------------------------------------------------
# Registration, axes, integer inputs, shapes
# ---------------------------------------------------------------------------------------------

def register_versions(op: str, *versions: int) -> Callable[[Lowering], Lowering]:
    """Register one lowering for several schema versions of an op that it handles alike."""
    def decorate(fn: Lowering) -> Lowering:
        for version in versions:
            register(op, since=version)(fn)
        return fn

    return decorate


def normalize_axis(node: NodeView, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise node.fail(f"axis {axis} is out of range for rank {rank}")
    return axis % rank


def normalize_axes(node: NodeView, axes: Sequence[int], rank: int) -> list[int]:
    result = [normalize_axis(node, int(a), rank) for a in axes]
    if len(set(result)) != len(result):
        raise node.fail(f"axes {list(axes)} repeat an axis")
    return result


def int_input(node: NodeView, k: int, what: str) -> list | None:
    """A compile-time integer input as a flat list of ints / sympy expressions, or None if absent."""
    value = node.known_input(k, what)
    return None if value is None else value.ints()


def axes_of(node: NodeView, k: int) -> list | None:
    """The `axes` of Squeeze/Unsqueeze: an input since opset 13, an attribute before."""
    if node.version >= 13:
        return int_input(node, k, "axes")
    axes = node.attr("axes")
    return None if axes is None else list(axes)


def static_ints(node: NodeView, values: Sequence[object], what: str) -> list[int]:
    if not all(isinstance(v, int) for v in values):
        raise node.fail(f"{what} must be numbers known at compile time, got {[str(v) for v in values]}")
    return [int(v) for v in values]  # type: ignore[call-overload]


def storage_shape(shape: Shape) -> Shape:
    """The shape a table stores: a scalar is kept like shape [1]."""
    return shape if shape else (as_dim(1),)


def all_static(shape: Sequence[Dim]) -> bool:
    return all(static_value(d) is not None for d in shape)


def static_shape(shape: Sequence[Dim]) -> tuple[int, ...]:
    return tuple(int(d) for d in shape)


def foldable(shape: Sequence[Dim]) -> bool:
    """A result of this shape may be computed now: its size is a number within the fold limit."""
    return all_static(shape) and int(np.prod(static_shape(shape), dtype=np.int64)) <= FOLD_LIMIT


def same_shape(a: Shape, b: Shape) -> bool:
    return len(a) == len(b) and all(dims_equal(x, y) for x, y in zip(a, b))


def simplified(dim: object) -> Dim:
    dim = as_dim(dim)
    return dim if dim.is_Integer else sympy.simplify(dim)


def chunk_count(length: Dim, chunk: int) -> Dim:
    return sympy.ceiling(as_dim(length) / chunk)


def whole_chunks(dim: Dim, chunk: int) -> int | None:
    """How many chunks a static last axis fills exactly, or None when it ends inside a chunk."""
    n = static_value(dim)
    return n // chunk if n is not None and n > 0 and n % chunk == 0 else None


# ---------------------------------------------------------------------------------------------
# Index arithmetic: SQL over index columns
# ---------------------------------------------------------------------------------------------

def linear_index(columns: Sequence[str], dims: Sequence[Dim]) -> str:
    """SQL of the row-major position of `columns`, indices over `dims` (BIGINT)."""
    expr = ""
    for col, d in zip(columns, dims):
        if is_one(d):
            continue  # the column is always 0
        expr = f"CAST({col} AS BIGINT)" if not expr else f"({expr}) * {to_sql(d)} + {col}"
    return expr or "0"


def split_index(lin: str, dims: Sequence[Dim]) -> list[str]:
    """SQL of the indices over `dims` whose row-major position is `lin`."""
    out: list[str] = []
    outermost = True
    for k, d in enumerate(dims):
        if is_one(d):
            out.append("0")
            continue
        stride = product(dims[k + 1:])
        expr = lin if is_one(stride) else int_div(lin, to_sql(stride))
        out.append(expr if outermost else f"({expr}) % {to_sql(d)}")
        outermost = False
    return out


def renamed_index(columns: Sequence[str], src: Sequence[Dim], dst: Sequence[Dim]) -> list[str] | None:
    """When src and dst differ only by axes of size 1, each output index is an input column (or 0)."""
    kept = [(col, d) for col, d in zip(columns, src) if not is_one(d)]
    wanted = [d for d in dst if not is_one(d)]
    if len(kept) != len(wanted) or not all(dims_equal(a, b) for (_, a), b in zip(kept, wanted)):
        return None
    source = iter(col for col, _ in kept)
    return ["0" if is_one(d) else next(source) for d in dst]


def reindex(columns: Sequence[str], src: Sequence[Dim], dst: Sequence[Dim]) -> tuple[str | None, list[str]]:
    """(position, indices): map indices over src to indices over dst in row-major order."""
    direct = renamed_index(columns, src, dst)
    if direct is not None:
        return None, direct
    return linear_index(columns, src), split_index("lin", dst)


def lead_columns(rank: int) -> list[str]:
    return [f"i{k}" for k in range(max(rank - 1, 0))]


def element_columns(rank: int) -> list[str]:
    return [f"i{k}" for k in range(rank)]


# ---------------------------------------------------------------------------------------------
# One statement that re-indexes a single source table (templates/shape/reindex.sql.j2)
# ---------------------------------------------------------------------------------------------

@dataclass
class Remap:
    """Output rows of a shape op computed from the rows of one source table.

    `index` holds the SQL of every output index column: the leading ones and then `c` on chunks,
    or every axis in element form. Columns may use `lin` (the source position, when set) and the
    range tables r0(j), r1(j), ... counting up to `ranges`."""

    index: list[str]
    elements: bool = False
    lin: str | None = None
    conditions: list[str] = field(default_factory=list)
    ranges: list[str] = field(default_factory=list)
    last: dict = field(default_factory=lambda: {"kind": "keep"})

    def add_range(self, count: Dim) -> str:
        """Cross join range(count); returns the column that counts."""
        self.ranges.append(to_sql(count))
        return f"r{len(self.ranges) - 1}.j"


def emit_remap(ctx: LowerContext, value: Value, shape: Shape, plan: Remap) -> Runtime:
    return ctx.emit("shape/reindex.sql.j2", value.dtype, shape, src=ctx.ref(value), **asdict(plan))


# ---------------------------------------------------------------------------------------------
# Shape, Size
# ---------------------------------------------------------------------------------------------

INT64 = np.dtype(np.int64)


def dims_value(dims: Sequence[Dim]) -> Known:
    """A known int64 vector of dims (symbolic entries stay sympy expressions)."""
    array = np.empty(len(dims), dtype=object)
    array[:] = list(dims)
    return Known.of(array, INT64)


def clamp_axis_bound(k: int, rank: int) -> int:
    """Shape's start/end: negative counts from the end, then clamped to [0, rank]."""
    return min(max(k + rank if k < 0 else k, 0), rank)


@register_versions("Shape", 1, 13, 15, 19, 21)
def lower_shape(node: NodeView, ctx: LowerContext) -> list[Value]:
    shape = shape_of(node.inputs[0])  # type: ignore[arg-type]
    rank = len(shape)
    start = clamp_axis_bound(int(node.attr("start", 0)), rank)  # type: ignore[arg-type]
    end = clamp_axis_bound(int(node.attr("end", rank)), rank)  # type: ignore[arg-type]
    return [dims_value(shape[start:max(start, end)])]


@register_versions("Size", 1, 13, 19, 21)
def lower_size(node: NodeView, ctx: LowerContext) -> list[Value]:
    size = product(shape_of(node.inputs[0]))  # type: ignore[arg-type]
    return [Known.of(np.array(size, dtype=object), INT64)]


# ---------------------------------------------------------------------------------------------
# Reshape, Flatten, Squeeze, Unsqueeze: one planner
# ---------------------------------------------------------------------------------------------

def reshape_plan(src: Shape, dst: Shape, chunk: int) -> Remap:
    """Three ways to re-index: leading indices only when the last axis is unchanged; whole chunks
    when both last axes are made of full chunks; else element by element."""
    s, d = storage_shape(src), storage_shape(dst)
    if dims_equal(s[-1], d[-1]):
        lin, index = reindex(lead_columns(len(s)), s[:-1], d[:-1])
        return Remap(index + ["c"], lin=lin)
    s_chunks, d_chunks = whole_chunks(s[-1], chunk), whole_chunks(d[-1], chunk)
    if s_chunks and d_chunks:
        lin, index = reindex(lead_columns(len(s)) + ["c"], s[:-1] + (as_dim(s_chunks),),
                             d[:-1] + (as_dim(d_chunks),))
        return Remap(index, lin=lin)
    lin, index = reindex(element_columns(len(src)), src, dst)
    return Remap(index, elements=True, lin=lin)


def reshape_value(ctx: LowerContext, value: Value, shape: Shape) -> Value:
    """`value` with a new shape of the same size (row-major order)."""
    old = shape_of(value)
    if all_static(old) and all_static(shape) and np.prod(static_shape(old)) != np.prod(static_shape(shape)):
        raise ShapeError(f"cannot reshape [{', '.join(map(str, old))}] to [{', '.join(map(str, shape))}]")
    if isinstance(value, Known) and all_static(shape):
        return Known.of(value.array.reshape(static_shape(shape)), value.dtype)
    if same_shape(old, shape):
        return value
    return emit_remap(ctx, value, shape, reshape_plan(old, shape, ctx.chunk))


def reshape_target(node: NodeView, old: Shape, spec: Sequence[object], allowzero: bool) -> Shape:
    """The output shape of Reshape: 0 copies the input dim (unless allowzero), -1 is inferred."""
    dims: list[Dim | None] = []
    for k, s in enumerate(spec):
        if not isinstance(s, int):
            dims.append(as_dim(s))  # a symbolic entry is a dim, never 0 or -1
        elif s == -1:
            if None in dims:
                raise node.fail(f"shape {[str(x) for x in spec]} has more than one -1")
            dims.append(None)
        elif s == 0 and not allowzero:
            if k >= len(old):
                raise node.fail(f"shape entry {k} is 0 (copy) but the input has rank {len(old)}")
            dims.append(old[k])
        elif s < 0:
            raise node.fail(f"shape entry {s} is invalid")
        else:
            dims.append(as_dim(s))
    if None in dims:
        others = product([d for d in dims if d is not None])
        if static_value(others) == 0:
            raise node.fail("cannot infer the -1 dim: the other dims multiply to 0")
        inferred = simplified(product(old) / others)
        if inferred.is_number and not inferred.is_Integer:
            raise ShapeError(f"cannot reshape [{', '.join(map(str, old))}] to {[str(x) for x in spec]}")
        dims[dims.index(None)] = inferred
    return tuple(d for d in dims if d is not None)


@register_versions("Reshape", 5, 13, 14, 19, 21)
def lower_reshape(node: NodeView, ctx: LowerContext) -> list[Value]:
    value = node.inputs[0]
    assert value is not None
    spec = int_input(node, 1, "shape") or []
    allowzero = bool(node.attr("allowzero", 0))
    if allowzero and 0 in spec and -1 in spec:
        raise node.fail("allowzero=1 with both 0 and -1 in the shape is invalid")
    return [reshape_value(ctx, value, reshape_target(node, shape_of(value), spec, allowzero))]


@register_versions("Flatten", 1, 9, 11, 13, 21)
def lower_flatten(node: NodeView, ctx: LowerContext) -> list[Value]:
    value = node.inputs[0]
    assert value is not None
    shape = shape_of(value)
    axis = int(node.attr("axis", 1))  # type: ignore[arg-type]
    if not -len(shape) <= axis <= len(shape):
        raise node.fail(f"axis {axis} is out of range for rank {len(shape)}")
    axis = axis + len(shape) if axis < 0 else axis
    return [reshape_value(ctx, value, (product(shape[:axis]), product(shape[axis:])))]


@register_versions("Squeeze", 1, 11, 13, 21)
def lower_squeeze(node: NodeView, ctx: LowerContext) -> list[Value]:
    value = node.inputs[0]
    assert value is not None
    shape = shape_of(value)
    axes = axes_of(node, 1)
    if not axes:
        if not all_static(shape):
            raise node.fail("Squeeze without axes on symbolic dims: which axes are 1 is known only at run time")
        axes = [k for k, d in enumerate(shape) if is_one(d)]
    axes = normalize_axes(node, static_ints(node, axes, "axes"), len(shape))
    for a in axes:
        if static_value(shape[a]) not in (None, 1):
            raise node.fail(f"cannot squeeze axis {a} of size {shape[a]}")
    return [reshape_value(ctx, value, tuple(d for k, d in enumerate(shape) if k not in axes))]


@register_versions("Unsqueeze", 1, 11, 13, 21)
def lower_unsqueeze(node: NodeView, ctx: LowerContext) -> list[Value]:
    value = node.inputs[0]
    assert value is not None
    dims = list(shape_of(value))
    axes = axes_of(node, 1)
    if axes is None:
        raise node.fail("axes are required")
    axes = normalize_axes(node, static_ints(node, axes, "axes"), len(dims) + len(axes))
    for a in sorted(axes):
        dims.insert(a, as_dim(1))
    return [reshape_value(ctx, value, tuple(dims))]


# ---------------------------------------------------------------------------------------------
# Transpose
# ---------------------------------------------------------------------------------------------

@register_versions("Transpose", 1, 13, 21)
def lower_transpose(node: NodeView, ctx: LowerContext) -> list[Value]:
    value = node.inputs[0]
    assert value is not None
    shape = shape_of(value)
    rank = len(shape)
    perm = node.attr("perm")
    perm = list(range(rank))[::-1] if perm is None else [int(p) for p in perm]  # type: ignore[union-attr]
    if sorted(perm) != list(range(rank)):
        raise node.fail(f"perm {perm} is not a permutation of the {rank} axes")
    if isinstance(value, Known):
        return [Known.of(np.transpose(value.array, perm), value.dtype)]
    if perm == list(range(rank)):
        return [value]
    if rank >= 2 and perm == list(range(rank - 2)) + [rank - 1, rank - 2]:
        return [swap_last_two(ctx, value)]
    out_shape = tuple(shape[p] for p in perm)
    if perm[-1] == rank - 1:
        # The last axis stays last: renaming leading columns is enough.
        plan = Remap([f"i{p}" for p in perm[:-1]] + ["c"])
    else:
        plan = Remap([f"i{p}" for p in perm], elements=True)
    return [emit_remap(ctx, value, out_shape, plan)]


def swap_last_two(ctx: LowerContext, value: Value) -> Runtime:
    """The value with its last two axes swapped, remembered as such: a MatMul reading the result as
    B reads `value` instead (and the statement is dropped when nothing else reads it)."""
    rank = value.rank
    perm = list(range(rank - 2)) + [rank - 1, rank - 2]
    shape = shape_of(value)
    out = emit_remap(ctx, value, tuple(shape[p] for p in perm), Remap([f"i{p}" for p in perm], elements=True))
    ctx.swapped[out.table] = ctx.runtime(value)
    return out


# ---------------------------------------------------------------------------------------------
# Concat
# ---------------------------------------------------------------------------------------------

def offsets(dims: Sequence[Dim]) -> list[Dim]:
    """Start of each part along the concatenated axis."""
    starts, total = [], as_dim(0)
    for d in dims:
        starts.append(total)
        total = total + d
    return starts


def concat_plan(shapes: list[Shape], axis: int, chunk: int) -> dict:
    """Template parameters of Concat on run-time tables: which column is offset, by how much."""
    rank = len(shapes[0])
    dims = [s[axis] for s in shapes]
    if axis < rank - 1:
        return {"mode": "rows", "columns": lead_columns(rank) + ["c"], "axis": axis,
                "offsets": [to_sql(o) for o in offsets(dims)]}
    if all(whole_chunks(d, chunk) for d in dims[:-1]):
        return {"mode": "rows", "columns": lead_columns(rank) + ["c"], "axis": rank - 1,
                "offsets": [to_sql(o / chunk) for o in offsets(dims)]}
    lengths = [static_value(d) for d in dims]
    if all(n is not None and n >= 1 for n in lengths) and sum(lengths) <= chunk:  # type: ignore[misc]
        return {"mode": "lists", "columns": [], "axis": 0, "offsets": []}
    return {"mode": "elements", "columns": element_columns(rank), "axis": rank - 1,
            "offsets": [to_sql(o) for o in offsets(dims)]}


def concat_shape(node: NodeView, shapes: list[Shape], axis: int) -> Shape:
    ranks = {len(s) for s in shapes}
    if len(ranks) != 1:
        raise node.fail(f"inputs have different ranks {sorted(ranks)}")
    first = shapes[0]
    for s in shapes[1:]:
        for k, (a, b) in enumerate(zip(first, s)):
            if k != axis and None not in (static_value(a), static_value(b)) and static_value(a) != static_value(b):
                raise ShapeError(f"Concat inputs differ on axis {k}: {a} and {b}")
    return first[:axis] + (simplified(sum((s[axis] for s in shapes), as_dim(0))),) + first[axis + 1:]


@register_versions("Concat", 4, 11, 13)
def lower_concat(node: NodeView, ctx: LowerContext) -> list[Value]:
    inputs = [v for v in node.inputs if v is not None]
    rank = inputs[0].rank
    if rank == 0:
        raise node.fail("cannot concatenate scalars")
    axis = normalize_axis(node, int(node.attr("axis")), rank)  # type: ignore[arg-type]
    shape = concat_shape(node, [shape_of(v) for v in inputs], axis)
    if all(isinstance(v, Known) for v in inputs):
        return [Known.of(np.concatenate([v.array for v in inputs], axis=axis), inputs[0].dtype)]  # type: ignore[union-attr]
    if appends_in_place(node, ctx, inputs, axis):
        return [append_rows(ctx, inputs[0], inputs[1], axis, shape)]  # type: ignore[arg-type]
    parts = [v for v in inputs if static_value(shape_of(v)[axis]) != 0] or inputs[:1]
    if len(parts) == 1:
        return [parts[0]]
    plan = concat_plan([shape_of(v) for v in parts], axis, ctx.chunk)
    refs = [ctx.ref(v) for v in parts]
    return [ctx.emit("shape/concat.sql.j2", inputs[0].dtype, shape, inputs=refs, **plan)]


def appends_in_place(node: NodeView, ctx: LowerContext, inputs: list[Value], axis: int) -> bool:
    """Concat(past, new) along a leading axis, where past is a graph input nothing else reads and
    the result is a graph output: a KV cache. The result is then past's table with new's rows
    appended, so no step copies the past (generation feeds the grown table back as the next past)."""
    first = node.node.input[0] if node.node.input else ""
    return (ctx.append_in_place and len(node.node.input) == 2 and len(inputs) == 2
            and ctx.sole_readers.get(first) == node.index
            and node.node.output[0] in ctx.graph_outputs
            and isinstance(inputs[0], Runtime) and axis < inputs[0].rank - 1)


def append_rows(ctx: LowerContext, past: Runtime, new: Value, axis: int, shape: Shape) -> Runtime:
    """new's rows, their index on `axis` shifted past the rows already there, appended to past's table."""
    rank = past.rank
    return ctx.emit_append(past, shape, "shape/concat.sql.j2", inputs=[ctx.ref(new)], mode="rows",
                           columns=lead_columns(rank) + ["c"], axis=axis, offsets=[to_sql(past.shape[axis])])


# ---------------------------------------------------------------------------------------------
# Slice, Split
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AxisSlice:
    """Elements start, start + step, ... (length of them) of one axis."""

    start: Dim
    step: int
    length: Dim

    def positions(self) -> np.ndarray:
        return int(self.start) + self.step * np.arange(int(self.length), dtype=np.int64)

    @property
    def static(self) -> bool:
        return static_value(self.start) is not None and static_value(self.length) is not None


def from_end(x: object, dim: Dim) -> Dim:
    """An index that counts from the end of the axis when negative. Numbers decide now; a
    symbolic index of unknown sign decides at run time."""
    if isinstance(x, int):
        return as_dim(x + dim if x < 0 else x)
    value = as_dim(x)
    if value.is_negative:
        return value + dim
    if value.is_nonnegative:
        return value
    return sympy.Piecewise((value + dim, value < 0), (value, True))


def resolve_index(x: object, dim: Dim, low: Dim, high: Dim) -> Dim:
    """A Slice start or end per the spec: from the end when negative, then clamped to [low, high]."""
    if isinstance(x, int) and x >= UNBOUNDED:
        return high
    if isinstance(x, int) and x <= -UNBOUNDED:
        return low
    return simplified(sympy.Min(sympy.Max(from_end(x, dim), low), high))


def axis_slice(start: object, end: object, step: int, dim: Dim) -> AxisSlice:
    if step > 0:
        first, stop = resolve_index(start, dim, as_dim(0), dim), resolve_index(end, dim, as_dim(0), dim)
    else:
        first, stop = resolve_index(start, dim, as_dim(0), dim - 1), resolve_index(end, dim, as_dim(-1), dim - 1)
    length = simplified(sympy.Max(0, sympy.ceiling((stop - first) / step)))
    return AxisSlice(first, step, length)


def is_whole(s: AxisSlice, dim: Dim) -> bool:
    return s.step == 1 and static_value(s.start) == 0 and dims_equal(s.length, dim)


def axis_filter(column: str, s: AxisSlice) -> tuple[str, list[str]]:
    """(new index, conditions) selecting the elements of a slice along `column`."""
    gap = s.step if s.step > 0 else -s.step
    distance = f"{column} - {to_sql(s.start)}" if s.step > 0 else f"{to_sql(s.start)} - {column}"
    conditions = [f"{distance} >= 0", f"{distance} < {to_sql(s.length * gap)}"]
    if gap == 1:
        return f"{distance}", conditions
    return int_div(f"({distance})", gap), conditions + [f"({distance}) % {gap} = 0"]


def last_axis_plan(plan: Remap, s: AxisSlice, dim: Dim, chunk: int) -> bool:
    """Slice the last axis without the element form when the chunks allow; False if they do not."""
    size = static_value(dim)
    if size is not None and size <= chunk and s.static and int(s.length) >= 1:
        first, last = int(s.start) + 1, int(s.start) + (int(s.length) - 1) * s.step + 1
        plan.index.append("c")
        plan.last = {"kind": "slice", "begin": first, "end": last, "step": s.step}
        return True
    begin = static_value(s.start)
    if s.step == 1 and begin is not None and begin % chunk == 0:
        reaches_end = dims_equal(s.start + s.length, dim)
        full = whole_chunks(s.length, chunk)
        if reaches_end or full:
            plan.index.append(f"c - {begin // chunk}")
            plan.conditions.append(f"c >= {begin // chunk}")
            if not reaches_end:
                plan.conditions.append(f"c < {begin // chunk + full}")  # type: ignore[operator]
            return True
    return False


def slice_value(ctx: LowerContext, value: Value, slices: dict[int, AxisSlice]) -> Value:
    """`value` sliced along some axes."""
    shape = shape_of(value)
    slices = {a: s for a, s in slices.items() if not is_whole(s, shape[a])}
    if not slices:
        return value
    out_shape = tuple(slices[a].length if a in slices else d for a, d in enumerate(shape))
    if isinstance(value, Known) and all(s.static for s in slices.values()):
        array = value.array
        for a, s in slices.items():
            array = np.take(array, s.positions(), axis=a)
        return Known.of(array, value.dtype)
    rank = len(shape)
    plan = Remap([])
    for a in range(rank - 1):
        column = f"i{a}"
        if a in slices:
            column, conditions = axis_filter(column, slices[a])
            plan.conditions += conditions
        plan.index.append(column)
    if any(static_value(s.length) == 0 for s in slices.values()):
        plan.conditions.append("FALSE")  # an empty output: no rows
    last = slices.get(rank - 1)
    if last is None:
        plan.index.append("c")
    elif not last_axis_plan(plan, last, shape[-1], ctx.chunk):
        column, conditions = axis_filter(f"i{rank - 1}", last)
        plan.index.append(column)
        plan.conditions += conditions
        plan.elements = True
    return emit_remap(ctx, value, out_shape, plan)


@register_versions("Slice", 10, 11, 13)
def lower_slice(node: NodeView, ctx: LowerContext) -> list[Value]:
    value = node.inputs[0]
    assert value is not None
    shape = shape_of(value)
    starts, ends = int_input(node, 1, "starts"), int_input(node, 2, "ends")
    if starts is None or ends is None or len(starts) != len(ends):
        raise node.fail("starts and ends must be given with the same length")
    axes = int_input(node, 3, "axes")
    axes = normalize_axes(node, static_ints(node, axes, "axes") if axes is not None else range(len(starts)),
                          len(shape))
    steps = int_input(node, 4, "steps")
    steps = static_ints(node, steps, "steps") if steps is not None else [1] * len(starts)
    if len(axes) != len(starts) or len(steps) != len(starts):
        raise node.fail("starts, ends, axes and steps must have the same length")
    if 0 in steps:
        raise node.fail("a step of 0 is invalid")
    slices = {a: axis_slice(b, e, s, shape[a]) for a, b, e, s in zip(axes, starts, ends, steps)}
    return [slice_value(ctx, value, slices)]


def split_sizes(node: NodeView, dim: Dim) -> list[Dim]:
    """Sizes of the Split outputs: the `split` input (or attribute), else equal parts (the last
    one smaller when the axis does not divide evenly, as opset 18 specifies)."""
    given = int_input(node, 1, "split") if node.version >= 13 else node.attr("split")
    if given is not None and len(given) > 0:
        if len(given) != node.output_count:
            raise node.fail(f"split has {len(given)} sizes for {node.output_count} outputs")
        return [as_dim(s) for s in given]
    parts = int(node.attr("num_outputs", node.output_count))  # type: ignore[arg-type]
    if parts != node.output_count:
        raise node.fail(f"num_outputs={parts} but the node has {node.output_count} outputs")
    size = simplified(sympy.ceiling(dim / parts))
    return [size] * (parts - 1) + [simplified(dim - size * (parts - 1))]


@register_versions("Split", 2, 11, 13, 18)
def lower_split(node: NodeView, ctx: LowerContext) -> list[Value | None]:
    value = node.inputs[0]
    assert value is not None
    shape = shape_of(value)
    axis = normalize_axis(node, int(node.attr("axis", 0)), len(shape))  # type: ignore[arg-type]
    sizes = split_sizes(node, shape[axis])
    outputs: list[Value | None] = []
    for k, (start, size) in enumerate(zip(offsets(sizes), sizes)):
        wanted = node.wants_output(k)
        outputs.append(slice_value(ctx, value, {axis: AxisSlice(simplified(start), 1, size)}) if wanted else None)
    return outputs


# ---------------------------------------------------------------------------------------------
# Expand, Tile
# ---------------------------------------------------------------------------------------------

def expand_plan(src: Shape, dst: Shape, chunk: int) -> Remap:
    """Axes the input lacks or has as 1 repeat through cross joins with range(dim)."""
    plan = Remap([])
    missing = len(dst) - len(src)
    for k, d in enumerate(dst):
        a = k - missing
        if a >= 0 and not is_one(src[a]):
            plan.index.append("c" if k == len(dst) - 1 else f"i{a}")
        elif k == len(dst) - 1 and not is_one(d):
            chunk_column = plan.add_range(chunk_count(d, chunk))
            plan.index.append(chunk_column)
            plan.last = {"kind": "fill", "length": to_sql(d), "chunk": chunk_column}
        elif k == len(dst) - 1:
            plan.index.append("c")
        else:
            plan.index.append("0" if is_one(d) else plan.add_range(d))
    return plan


@register_versions("Expand", 8, 13)
def lower_expand(node: NodeView, ctx: LowerContext) -> list[Value]:
    value = node.inputs[0]
    assert value is not None
    target = tuple(as_dim(d) for d in int_input(node, 1, "shape") or [])
    shape = broadcast_shapes([shape_of(value), target])
    if isinstance(value, Known) and foldable(shape):
        return [Known.of(np.broadcast_to(value.array, static_shape(shape)).copy(), value.dtype)]
    if same_shape(shape_of(value), shape):
        return [value]
    return [emit_remap(ctx, value, shape, expand_plan(shape_of(value), shape, ctx.chunk))]


def tile_plan(src: Shape, repeats: Sequence[Dim], chunk: int) -> Remap:
    """Copy r of axis k holds index r * dim + i: a cross join with range(repeat) per tiled axis."""
    plan = Remap([])
    rank = len(src)
    for k, (d, r) in enumerate(zip(src, repeats)):
        last = k == rank - 1
        column = "c" if last else f"i{k}"
        if is_one(r):
            plan.index.append(column)
            continue
        if last and not whole_chunks(d, chunk):
            plan.elements = True
            column = f"i{k}"
        step = to_sql(d / chunk) if last and not plan.elements else to_sql(d)
        plan.index.append(f"{plan.add_range(r)} * {step} + {column}")
    return plan


@register_versions("Tile", 6, 13)
def lower_tile(node: NodeView, ctx: LowerContext) -> list[Value]:
    value = node.inputs[0]
    assert value is not None
    shape = shape_of(value)
    repeats = [as_dim(r) for r in int_input(node, 1, "repeats") or []]
    if len(repeats) != len(shape):
        raise node.fail(f"repeats has {len(repeats)} entries for rank {len(shape)}")
    out_shape = tuple(simplified(d * r) for d, r in zip(shape, repeats))
    if isinstance(value, Known) and foldable(out_shape):
        return [Known.of(np.tile(value.array, static_shape(repeats)), value.dtype)]
    if all(is_one(r) for r in repeats):
        return [value]
    return [emit_remap(ctx, value, out_shape, tile_plan(shape, repeats, ctx.chunk))]
