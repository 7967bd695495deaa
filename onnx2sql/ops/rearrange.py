"""DepthToSpace and SpaceToDepth: blocks of b x b pixels moved between the channel axis and the
two spatial axes of [N, C, H, W]. Each is one element-form re-index: the output indices are
arithmetic on the input's, with the block offsets (b1, b2) inside the channel index either
outermost (DCR: depth, column, row) or innermost (CRD).
"""
from __future__ import annotations

from onnx2sql.emit.sql import int_div
from onnx2sql.graph.symbolic import Dim, as_dim, to_sql
from onnx2sql.graph.values import Value, shape_of
from onnx2sql.ops.context import LowerContext, NodeView
from onnx2sql.ops.nn import text_attr
from onnx2sql.ops.reduce import input_value
from onnx2sql.ops.registry import register
from onnx2sql.ops.shape import Remap, emit_remap


def _block_input(node: NodeView) -> tuple[Value, int, str]:
    x = input_value(node)
    if x.rank != 4:
        raise node.fail(f"the input must be [N, C, H, W], got rank {x.rank}")
    block = int(node.attr("blocksize"))  # type: ignore[arg-type]
    mode = text_attr(node, "mode") if node.has_attr("mode") else "DCR"
    if block < 1 or mode not in ("DCR", "CRD"):
        raise node.fail(f"blocksize={block} and mode={mode!r} must be positive and DCR or CRD")
    return x, block, mode


def _split_channel(channel: str, depth: Dim, block: int, mode: str) -> tuple[str, str, str]:
    """SQL of (depth index, row offset b1, column offset b2) packed in a channel index."""
    d = to_sql(depth)
    if mode == "DCR":  # channel = (b1 * block + b2) * depth + d
        return f"{channel} % {d}", int_div(int_div(channel, d), block), f"({int_div(channel, d)}) % {block}"
    square = block * block  # CRD: channel = d * block^2 + b1 * block + b2
    return int_div(channel, square), int_div(f"({channel} % {square})", block), f"{channel} % {block}"


def _pack_channel(depth_index: str, b1: str, b2: str, depth: Dim, block: int, mode: str) -> str:
    if mode == "DCR":
        return f"(({b1}) * {block} + {b2}) * {to_sql(depth)} + {depth_index}"
    return f"({depth_index}) * {block * block} + ({b1}) * {block} + {b2}"


@register("DepthToSpace", since=1)
def lower_depth_to_space(node: NodeView, ctx: LowerContext) -> list[Value]:
    x, block, mode = _block_input(node)
    n, c, h, w = shape_of(x)
    depth = as_dim(c) / (block * block)
    d, b1, b2 = _split_channel("i1", depth, block, mode)
    plan = Remap(["i0", d, f"i2 * {block} + {b1}", f"i3 * {block} + {b2}"], elements=True)
    return [emit_remap(ctx, x, (n, depth, h * block, w * block), plan)]


@register("SpaceToDepth", since=1)
def lower_space_to_depth(node: NodeView, ctx: LowerContext) -> list[Value]:
    x, block, mode = _block_input(node)
    n, c, h, w = shape_of(x)
    channel = _pack_channel("i1", f"i2 % {block}", f"i3 % {block}", c, block, mode)
    plan = Remap(["i0", channel, int_div("i2", block), int_div("i3", block)], elements=True)
    return [emit_remap(ctx, x, (n, c * block * block, as_dim(h) / block, as_dim(w) / block), plan)]
