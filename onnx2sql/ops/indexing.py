"""GatherElements and OneHot: tensors indexed element by element by another tensor.

Both work in element form: GatherElements joins each index to the data element it names,
OneHot crosses each index with the range of the new axis.
"""
from __future__ import annotations

import numpy as np

from onnx2sql.graph.symbolic import as_dim, to_sql
from onnx2sql.graph.values import Known, Value, shape_of
from onnx2sql.ops.context import LowerContext, NodeView
from onnx2sql.ops.reduce import foldable, input_value
from onnx2sql.ops.registry import register
from onnx2sql.ops.shape import normalize_axis, static_ints


@register("GatherElements", since=11)
def lower_gather_elements(node: NodeView, ctx: LowerContext) -> list[Value]:
    data, indices = input_value(node, 0), input_value(node, 1)
    if data.rank == 0 or indices.rank != data.rank:
        raise node.fail(f"data and indices must have the same rank >= 1, got {data.rank} and {indices.rank}")
    axis = normalize_axis(node, int(node.attr("axis", 0)), data.rank)  # type: ignore[arg-type]
    dim = shape_of(data)[axis]
    arrays = foldable([data, indices], shape_of(indices))
    if arrays is not None:
        wrapped = np.where(arrays[1] < 0, arrays[1] + int(dim), arrays[1])
        return [Known.of(np.take_along_axis(arrays[0], wrapped.astype(np.int64), axis=axis), data.dtype)]
    return [ctx.emit("indexing/gather_elements.sql.j2", data.dtype, shape_of(indices), data=ctx.ref(data),
                     indices=ctx.ref(indices), axis=axis, dim=to_sql(dim))]


@register("OneHot", since=9)
def lower_one_hot(node: NodeView, ctx: LowerContext) -> list[Value]:
    indices, values = input_value(node, 0), input_value(node, 2)
    depth_value = node.known_input(1, "depth")
    if depth_value is None or depth_value.array.size != 1:
        raise node.fail("depth must be a known tensor of one element")
    if values.rank != 1 or shape_of(values)[0] != 2:
        raise node.fail("values must hold two elements: [off_value, on_value]")
    depth = as_dim(depth_value.ints()[0] if depth_value.symbolic else int(depth_value.array.reshape(-1)[0]))
    rank = indices.rank + 1
    axis = normalize_axis(node, int(node.attr("axis", -1)), rank)  # type: ignore[arg-type]
    index_columns = [f"g.i{k}" for k in range(indices.rank)]
    columns = index_columns[:axis] + ["r.j"] + index_columns[axis:]
    shape = shape_of(indices)
    out_shape = shape[:axis] + (depth,) + shape[axis:]
    if isinstance(values, Known) and not values.symbolic and isinstance(indices, Known) and not indices.symbolic:
        size = static_ints(node, [depth_value.ints()[0]], "depth")[0]
        hot = np.expand_dims(np.where(indices.array < 0, indices.array + size, indices.array), axis)
        positions = np.arange(size).reshape([-1 if k == axis else 1 for k in range(rank)])
        return [Known.of(np.where(positions == hot, values.array[1], values.array[0]), values.dtype)]
    return [ctx.emit("indexing/one_hot.sql.j2", values.dtype, out_shape, indices=ctx.ref(indices),
                     values=ctx.ref(values), depth=to_sql(depth), columns=columns)]
