"""MatMul and Gemm: dot products of rows of the inner axis K.

Both operands are read as rows of K: A as rows (batch..., m) and B transposed as rows
(batch..., n). A known matrix B (a layer's weights) is stored transposed at compile time as tiles:
a row per chunk of the output, holding that chunk's rows of B's transpose whole. A row of A times
a tile is one list_transform of list_dot_product, which gives the output chunk in order: no
aggregation. The tiles are split into ranges stored as separate tables, one UNION ALL branch each,
which DuckDB runs on separate threads. A computed B is transposed by one statement (unless it is a
Transpose of the last two axes, whose source is read instead); for float types both operands'
chunks are then joined into whole rows of K, and for other types C[..., m, n] = sum over chunks c
of the products of A[..., m, c] and Bt[..., n, c].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onnx2sql.dialects import current
from onnx2sql.emit.program import OUTPUT_ROWS_FROM
from onnx2sql.emit.sql import literal
from onnx2sql.errors import ShapeError
from onnx2sql.graph.symbolic import Dim, Shape, is_one, static_value
from onnx2sql.graph.values import Known, Runtime, Value, shape_of
from onnx2sql.ops.broadcast import broadcast_shapes
from onnx2sql.ops.context import TILE_KERNELS, LowerContext, NodeView, TableRef, tile_bytes
from onnx2sql.ops.elementwise import emit_elementwise
from onnx2sql.ops.reduce import foldable, input_value
from onnx2sql.ops.registry import register
from onnx2sql.ops.shape import swap_last_two


@dataclass(frozen=True)
class Operand:
    """A matrix operand and whether its last two axes must be swapped to make rows of K."""

    value: Value
    swap: bool

    def rows(self, ctx: LowerContext) -> TableRef:
        return ctx.table_ref(swap_last_axes(ctx, self.value) if self.swap else ctx.runtime(self.value))


def swap_last_axes(ctx: LowerContext, value: Value) -> Runtime:
    """The value with its last two axes swapped: a known one at compile time, else one statement."""
    if isinstance(value, Known) and not value.symbolic:
        return ctx.transposed_weight(value)
    if isinstance(value, Runtime) and value.table in ctx.swapped:
        return ctx.swapped[value.table]
    return swap_last_two(ctx, value)


def check_inner(k_a: Dim, k_b: Dim) -> None:
    a, b = static_value(k_a), static_value(k_b)
    if a is not None and b is not None and a != b:
        raise ShapeError(f"inner dimensions {a} and {b} of a matrix product differ")


# Ranges of a known B's rows, each read by its own UNION ALL branch: one per core of the machines
# measured (2). More branches only add their fixed cost (4 matched 2 at 128 rows of A and lost at
# one row), and a small B is not split at all.
ROW_PARTS = 2
MIN_ROWS_PER_PART = 64


# A scan hands on up to 2,048 rows at once, and a row here is a whole tile: a table of fewer rows
# is held in memory whole while it is read. Larger matrices are split into more parts of at most
# this many bytes, so that a product streams its weights under a small memory limit (a 113 MB
# fp32 head in one part needed more than an 82 MiB DuckDB limit).
MAX_PART_BYTES = 16 * 2**20



def product(ctx: LowerContext, a: Operand, bt: Operand, k: Dim, out_shape: Shape, dtype: np.dtype,
            graph_output: bool = False) -> Value:
    """A @ B for A as rows of K (rank >= 1) and B transposed as rows of K (rank >= 1)."""
    if static_value(k) == 0:
        return _zeros(out_shape, dtype)
    if _is_weight_matrix(bt.value) and np.dtype(dtype).kind == "f" and ctx.vector_rows:
        return _product_with_vector_rows(ctx, a.rows(ctx), bt, out_shape, dtype, graph_output)
    if _is_weight_matrix(bt.value) and np.dtype(dtype).kind == "f" and current().nested_lists:
        return _product_with_weight_tiles(ctx, a.rows(ctx), bt, out_shape, dtype, graph_output)
    if _by_columns(ctx, bt, dtype):
        return _product_by_columns(ctx, a.rows(ctx), ctx.table_ref(ctx.runtime(bt.value)), k, out_shape, dtype)
    a_ref, bt_ref = a.rows(ctx), bt.rows(ctx)
    batch = out_shape[:len(out_shape) - (a_ref.rank >= 2) - (bt_ref.rank >= 2)]
    lead, conditions = _batch_join(a_ref, bt_ref, batch)
    lead += [f"{alias}.i{t.rank - 2}" for alias, t in (("a", a_ref), ("b", bt_ref)) if t.rank >= 2]
    k_static = static_value(k)
    return ctx.emit(
        "matmul/product.sql.j2", dtype, out_shape,
        a=a_ref, bt=bt_ref, lead=lead, group=[e for e in lead if e != "0"], conditions=conditions,
        whole=np.dtype(dtype).kind == "f", single=k_static is not None and k_static <= ctx.chunk,
        native=ctx.native_for(dtype),
    )


def _by_columns(ctx: LowerContext, bt: Operand, dtype: np.dtype) -> bool:
    """A float product whose computed B would need a transposing statement (B is not already a
    transpose's output) and has a known number of columns: B is read as it is, by columns."""
    value = bt.value
    return (current().nested_lists and bt.swap and isinstance(value, Runtime) and value.table not in ctx.swapped and value.rank >= 2
            and np.dtype(dtype).kind == "f" and static_value(value.shape[-1]) is not None)


def _product_by_columns(ctx: LowerContext, a_ref: TableRef, b_ref: TableRef, k: Dim, out_shape: Shape,
                        dtype: np.dtype) -> Value:
    """A @ B with B's rows gathered into a matrix per batch and its columns taken by index: the
    attention's probabilities times V, which would otherwise be exploded into values to be
    transposed (three times the time at 32 sequences of SmolLM2)."""
    batch = out_shape[:len(out_shape) - (a_ref.rank >= 2) - 1]
    lead, conditions = _batch_join(a_ref, b_ref, batch)
    lead += [f"a.i{a_ref.rank - 2}"] if a_ref.rank >= 2 else []
    k_static, n = static_value(k), int(static_value(b_ref.shape[-1]))
    single = k_static is not None and k_static <= ctx.chunk
    return ctx.emit("matmul/columns_product.sql.j2", dtype, out_shape, a=a_ref, b=b_ref, lead=lead,
                    conditions=conditions, a_single=single, b_single=n <= ctx.chunk, n=n, native=ctx.native_for(dtype))


def _is_weight_matrix(value: Value) -> bool:
    return isinstance(value, Known) and not value.symbolic and value.rank == 2


def _product_with_weight_tiles(ctx: LowerContext, a_ref: TableRef, bt: Operand, out_shape: Shape,
                               dtype: np.dtype, graph_output: bool) -> Value:
    """A @ B for a known matrix B, stored as tiles of whole rows of K (see the module note)."""
    rows, cols = (int(static_value(d)) for d in bt.value.shape)
    n, k = (cols, rows) if bt.swap else (rows, cols)
    tiles = -(-n // ctx.chunk)
    count = max(1, min(ROW_PARTS, n // MIN_ROWS_PER_PART, tiles))
    by_bytes = -(-tile_bytes(ctx.tile_blob(dtype), n, k, dtype) // MAX_PART_BYTES)
    count = max(1, min(max(count, by_bytes), tiles))
    bounds = [tiles * p // count for p in range(count + 1)]
    parts = [ctx.table_ref(t) for t in ctx.weight_tiles(bt.value, transpose=bt.swap, tile_bounds=bounds)]
    return ctx.emit(
        "matmul/tiles_product.sql.j2", dtype, out_shape,
        a=a_ref, a_whole=k <= ctx.chunk, parts=parts, kernel=TILE_KERNELS.get(ctx.tile_blob(dtype)),
        rows_from=OUTPUT_ROWS_FROM if graph_output and a_ref.lead >= 1 else None,
    )


def _product_with_vector_rows(ctx: LowerContext, a_ref: TableRef, bt: Operand, out_shape: Shape,
                              dtype: np.dtype, graph_output: bool) -> Value:
    """A @ B for a known matrix B whose transpose is stored a row per output column as vectors of
    the backend's vector kernel: each row of A, made a vector once, meets every row in the kernel's
    dot product (pgvector's inner product, SQLite's onnx2sql_dot)."""
    rows = ctx.table_ref(ctx.vector_rows_of(bt.value, transpose=bt.swap))
    k = int(static_value(bt.value.shape[0 if bt.swap else 1]))
    return ctx.emit("matmul/vector_product.sql.j2", dtype, out_shape, a=a_ref, a_whole=k <= ctx.chunk, b=rows,
                    rows_from=OUTPUT_ROWS_FROM if graph_output and a_ref.lead >= 1 else None)


def _batch_join(a: TableRef, bt: TableRef, batch: Shape) -> tuple[list[str], list[str]]:
    """Source column of each output batch axis and the join conditions of broadcast batch axes.
    An axis of size 1 (or absent) in one operand repeats that operand: it joins on nothing."""
    lead: list[str] = []
    conditions: list[str] = []
    for j in range(len(batch)):
        owners = []
        for alias, t in (("a", a), ("b", bt)):
            axis = j - len(batch) + t.rank - 2
            if axis >= 0 and not is_one(t.shape[axis]):
                owners.append(f"{alias}.i{axis}")
        lead.append(owners[0] if owners else "0")
        conditions += [f"{o} = {owners[0]}" for o in owners[1:]]
    return lead, conditions


def _zeros(shape: Shape, dtype: np.dtype) -> Known:
    dims = [static_value(d) for d in shape]
    if any(d is None for d in dims):
        raise ShapeError("a matrix product over an empty inner axis needs a static output shape")
    return Known.of(np.zeros(dims, dtype=dtype), dtype)


# ---------------------------------------------------------------- MatMul

def matmul_shape(a: Shape, b: Shape) -> Shape:
    """numpy.matmul's output shape: 1-D operands lose their m (A) or n (B) axis."""
    if not a or not b:
        raise ShapeError("MatMul operands must have rank >= 1")
    check_inner(a[-1], b[-2] if len(b) >= 2 else b[0])
    batch = broadcast_shapes([a[:-2], b[:-2]])
    return batch + a[-2:-1] + (b[-1:] if len(b) >= 2 else ())


@register("MatMul", since=9)
def lower_matmul(node: NodeView, ctx: LowerContext) -> list[Value]:
    a, b = input_value(node, 0), input_value(node, 1)
    out_shape = matmul_shape(shape_of(a), shape_of(b))
    arrays = foldable([a, b], out_shape)
    if arrays is not None:
        return [Known.of(np.matmul(*arrays), a.dtype)]
    return [product(ctx, Operand(a, swap=False), Operand(b, swap=b.rank >= 2), shape_of(a)[-1], out_shape,
                    a.dtype, graph_output=node.node.output[0] in ctx.graph_outputs)]


# ---------------------------------------------------------------- Gemm

@register("Gemm", since=11)
def lower_gemm(node: NodeView, ctx: LowerContext) -> list[Value]:
    a, b, c = input_value(node, 0), input_value(node, 1), node.input(2)
    if a.rank != 2 or b.rank != 2:
        raise node.fail(f"A and B must be matrices, got ranks {a.rank} and {b.rank}")
    trans_a, trans_b = bool(node.attr("transA", 0)), bool(node.attr("transB", 0))
    alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
    m, k = shape_of(a)[::-1] if trans_a else shape_of(a)
    k_b, n = shape_of(b)[::-1] if trans_b else shape_of(b)
    check_inner(k, k_b)
    if beta == 0:
        c = None  # beta * C vanishes, even where C holds inf or nan (onnxruntime skips it too)
    arrays = foldable([a, b, c], (m, n))
    if arrays is not None:
        return [Known.of(_fold_gemm(*arrays, trans_a, trans_b, alpha, beta), a.dtype)]
    # Rows of K: A as stored unless transposed; B's transpose is B itself when transB is set.
    y = product(ctx, Operand(a, swap=trans_a), Operand(b, swap=not trans_b), k, (m, n), a.dtype)
    return [_scale_and_bias(ctx, y, c, alpha, beta, a.dtype)]


def _scale_and_bias(ctx: LowerContext, y: Value, c: Value | None, alpha: float, beta: float,
                    dtype: np.dtype) -> Value:
    """alpha * y + beta * C, C broadcast to y's shape; y itself when there is nothing to do."""
    if c is None and alpha == 1:
        return y
    expr = "{0}" if alpha == 1 else f"{{0}} * {literal(alpha, dtype)}"
    if c is not None:
        expr += " + {1}" if beta == 1 else f" + {{1}} * {literal(beta, dtype)}"
    return emit_elementwise(ctx, "Gemm", [y] + ([c] if c is not None else []), dtype, expr=expr)


def _fold_gemm(a: np.ndarray, b: np.ndarray, c: np.ndarray | None, trans_a: bool, trans_b: bool,
               alpha: float, beta: float) -> np.ndarray:
    y = alpha * ((a.T if trans_a else a) @ (b.T if trans_b else b))
    return y + beta * c if c is not None else y
