"""Gather: take entries of one axis by index (the embedding lookup is Gather on a weight table).

On a leading axis the rows of the data join the indices in element form, chunks untouched; on
the last axis the data works in element form. A single index known at compile time is a filter.
"""
from __future__ import annotations

import numpy as np

from onnx2sql.graph.symbolic import Dim, to_sql
from onnx2sql.graph.values import Known, Value, shape_of
from onnx2sql.ops.context import LowerContext, NodeView
from onnx2sql.ops.shape import Remap, emit_remap, foldable, from_end, normalize_axis, register_versions


def pick_plan(rank: int, axis: int, index: Dim) -> Remap:
    """A scalar index known at compile time: keep the rows (or elements) at that index."""
    if axis < rank - 1:
        kept = [f"i{k}" for k in range(rank - 1) if k != axis]
        return Remap(kept + ["c"], conditions=[f"i{axis} = {to_sql(index)}"])
    return Remap([f"i{k}" for k in range(rank - 1)], elements=True, conditions=[f"i{axis} = {to_sql(index)}"])


def join_index(rank: int, index_rank: int, axis: int) -> list[str]:
    """Output index columns: data axes before `axis`, the index axes, data axes after it."""
    data = [f"d.i{k}" for k in range(rank)]
    taken = [f"g.i{k}" for k in range(index_rank)]
    if axis < rank - 1:
        return data[:axis] + taken + data[axis + 1:rank - 1] + ["d.c"]
    return data[:axis] + taken


@register_versions("Gather", 1, 11, 13)
def lower_gather(node: NodeView, ctx: LowerContext) -> list[Value]:
    data, indices = node.inputs[0], node.inputs[1]
    assert data is not None and indices is not None
    shape = shape_of(data)
    rank = len(shape)
    if rank == 0:
        raise node.fail("cannot gather from a scalar")
    axis = normalize_axis(node, int(node.attr("axis", 0)), rank)  # type: ignore[arg-type]
    out_shape = shape[:axis] + shape_of(indices) + shape[axis + 1:]
    numeric_indices = isinstance(indices, Known) and not indices.symbolic
    if numeric_indices and isinstance(data, Known) and foldable(out_shape):
        taken = np.take(data.array, indices.array.astype(np.int64), axis=axis)  # type: ignore[union-attr]
        return [Known.of(taken, data.dtype)]
    if isinstance(indices, Known) and indices.rank == 0:
        index = from_end(indices.ints()[0], shape[axis])
        return [emit_remap(ctx, data, out_shape, pick_plan(rank, axis, index))]
    return [ctx.emit(
        "gather/gather.sql.j2", data.dtype, out_shape,
        data=ctx.ref(data), indices=ctx.ref(indices), axis=axis, dim=to_sql(shape[axis]),
        index=join_index(rank, indices.rank, axis), elements=axis == rank - 1,
    )]
