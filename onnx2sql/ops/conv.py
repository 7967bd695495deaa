"""Conv over any number of spatial axes, and the sliding-window geometry the pools share.

A convolution is a matrix product (im2col): one statement gathers the patch of every output
position, joining the grid of positions and kernel offsets to the input element at
o * stride + k * dilation - pad_begin (a position in the padding finds none and reads 0); the
patches, chunked like any tensor, then multiply the flattened filters with MatMul's chunk dot
products, and a last statement moves the channels in front of the spatial axes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import sympy

from onnx2sql.emit.sql import literal
from onnx2sql.graph.symbolic import Dim, Shape, as_dim, product, static_value, to_sql
from onnx2sql.graph.values import Value, shape_of
from onnx2sql.ops.context import LowerContext, NodeView
from onnx2sql.ops.elementwise import emit_elementwise
from onnx2sql.ops.matmul import Operand
from onnx2sql.ops.matmul import product as matmul_product
from onnx2sql.ops.nn import channel_vector, text_attr
from onnx2sql.ops.reduce import input_value
from onnx2sql.ops.registry import register
from onnx2sql.ops.shape import Remap, emit_remap, linear_index, reshape_value, split_index

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


@dataclass(frozen=True)
class Window:
    """One spatial axis of a sliding window: input length, kernel, stride, dilation, the padding
    before and after, and the output length."""

    size: Dim
    kernel: int
    stride: int
    dilation: int
    begin: Dim
    end: Dim
    out: Dim

    def source(self, out_column: str, kernel_column: str) -> str:
        """SQL of the input position that kernel offset `kernel_column` of output `out_column` reads."""
        return f"{out_column} * {self.stride} + {kernel_column} * {self.dilation} - {to_sql(self.begin)}"

    def in_padded_range(self, position: str) -> str:
        """SQL: the position lies in the input or its explicit padding (not in ceil_mode's overhang)."""
        return f"{position} >= -{to_sql(self.begin)} AND {position} < {to_sql(self.size + self.end)}"


def int_list(node: NodeView, name: str, count: int, default: int) -> list[int]:
    value = node.attr(name)
    result = [int(v) for v in value] if value else [default] * count  # type: ignore[union-attr]
    if len(result) != count:
        raise node.fail(f"{name} has {len(result)} entries for {count} spatial axes")
    return result


def same_window(size: Dim, kernel: int, stride: int, dilation: int, upper: bool) -> Window:
    """auto_pad SAME_*: ceil(size / stride) outputs; the padding they need splits in two halves,
    the odd element after the input (SAME_UPPER) or before it (SAME_LOWER)."""
    out = sympy.ceiling(as_dim(size) / stride)
    total = sympy.Max(0, (out - 1) * stride + dilation * (kernel - 1) + 1 - size)
    half = sympy.floor(total / 2)
    begin = half if upper else total - half
    return Window(size, kernel, stride, dilation, begin, total - begin, out)


def padded_window(size: Dim, kernel: int, stride: int, dilation: int, begin: Dim, end: Dim,
                  ceil_mode: bool) -> Window:
    """Explicit pads; ceil_mode counts a last partial window, unless it would start in the right padding."""
    span = size + begin + end - (dilation * (kernel - 1) + 1)
    out = (sympy.ceiling(span / stride) if ceil_mode else sympy.floor(span / stride)) + 1
    if ceil_mode:
        out = sympy.Piecewise((out - 1, (out - 1) * stride >= size + begin), (out, True))
    return Window(size, kernel, stride, dilation, begin, end, sympy.simplify(out))


def windows(node: NodeView, spatial: Shape, kernel: Sequence[int], ceil_mode: bool = False) -> list[Window]:
    """The geometry of every spatial axis from auto_pad, pads, strides and dilations."""
    k = len(spatial)
    strides, dilations = int_list(node, "strides", k, 1), int_list(node, "dilations", k, 1)
    if min(strides + dilations + list(kernel), default=1) < 1:
        raise node.fail("kernel_shape, strides and dilations must be positive")
    auto_pad = text_attr(node, "auto_pad") if node.has_attr("auto_pad") else "NOTSET"
    if auto_pad not in AUTO_PADS:
        raise node.fail(f"auto_pad={auto_pad!r} is not one of {', '.join(AUTO_PADS)}")
    pads = int_list(node, "pads", 2 * k, 0) if auto_pad == "NOTSET" else [0] * (2 * k)
    result = []
    for axis, (size, kk, s, d) in enumerate(zip(spatial, kernel, strides, dilations)):
        if auto_pad.startswith("SAME"):
            result.append(same_window(size, kk, s, d, upper=auto_pad == "SAME_UPPER"))
        else:
            result.append(padded_window(size, kk, s, d, as_dim(pads[axis]), as_dim(pads[k + axis]), ceil_mode))
    for w in result:
        if static_value(w.out) is not None and static_value(w.out) < 1:
            raise node.fail(f"the window ({w.kernel} x dilation {w.dilation}) is larger than the padded input")
    return result


@register("Conv", since=1)
def lower_conv(node: NodeView, ctx: LowerContext) -> list[Value]:
    x, w, bias = input_value(node, 0), input_value(node, 1), node.input(2)
    if x.rank < 3 or w.rank != x.rank:
        raise node.fail(f"input and weight must both be [N, C, spatial...], got ranks {x.rank} and {w.rank}")
    x_shape, w_shape = shape_of(x), shape_of(w)
    kernel = [static_value(d) for d in w_shape[2:]]
    if None in kernel:
        raise node.fail("the kernel size must be known at compile time")
    if node.attr("kernel_shape") and list(node.attr("kernel_shape")) != kernel:  # type: ignore[arg-type]
        raise node.fail(f"kernel_shape {list(node.attr('kernel_shape'))} differs from the weight's {kernel}")
    group = int(node.attr("group", 1))  # type: ignore[arg-type]
    per_group_out = _per_group_out(node, x_shape[1], w_shape[1], w_shape[0], group)
    geometry = windows(node, x_shape[2:], kernel)  # type: ignore[arg-type]
    spatial_out = [g.out for g in geometry]
    patch = w_shape[1] * product(kernel)
    patches = emit_patches(ctx, x, geometry, group, w_shape[1])
    # Every patch times every filter of its group: [N, G, positions, K] @ [G, M / G, K]^T.
    filters = reshape_value(ctx, w, (as_dim(group), per_group_out, patch))
    y = matmul_product(ctx, Operand(patches, swap=False), Operand(filters, swap=False), patch,
                       (x_shape[0], as_dim(group), product(spatial_out), per_group_out), x.dtype)
    # [N, G, positions, M / G] -> [N, M, out...]
    index = ["i0", f"i1 * {to_sql(per_group_out)} + i3", *split_index("i2", spatial_out)]
    y = emit_remap(ctx, y, (x_shape[0], w_shape[0], *spatial_out), Remap(index, elements=True))
    if bias is not None:
        y = emit_elementwise(ctx, "Conv", [y, ctx.runtime(channel_vector(ctx, bias, x.rank))], x.dtype,
                             expr="{0} + {1}")
    return [y]


def emit_patches(ctx: LowerContext, x: Value, geometry: Sequence[Window], group: int, per_group: Dim) -> Value:
    """The im2col table [N, group, output positions, per_group * kernel size] of x."""
    shape = shape_of(x)
    spatial_out = [g.out for g in geometry]
    kernel = [g.kernel for g in geometry]
    offsets = [f"k{k}.j" for k in range(len(geometry))]
    return ctx.emit(
        "conv/patches.sql.j2", x.dtype, (shape[0], as_dim(group), product(spatial_out), per_group * product(kernel)),
        x=ctx.ref(x), batch=to_sql(shape[0]), groups=group, per_group=to_sql(per_group),
        out_counts=[to_sql(d) for d in spatial_out], kernel=kernel,
        sources=[g.source(f"o{k}.j", offsets[k]) for k, g in enumerate(geometry)],
        position=linear_index([f"o{k}.j" for k in range(len(geometry))], spatial_out),
        offset=linear_index(["ch.j", *offsets], [per_group, *kernel]), zero=literal(0, x.dtype),
    )


def _per_group_out(node: NodeView, in_channels: Dim, weight_channels: Dim, out_channels: Dim, group: int) -> Dim:
    """Output channels per group, after checking the channels split into groups (the weight holds
    one group's input channels)."""
    if group < 1:
        raise node.fail(f"group={group} must be positive")
    c, cg, m = static_value(in_channels), static_value(weight_channels), static_value(out_channels)
    if c is not None and cg is not None and c != cg * group:
        raise node.fail(f"{c} input channels do not split into {group} groups of {cg}")
    if m is not None and m % group:
        raise node.fail(f"{m} output channels do not split into {group} groups")
    return sympy.floor(as_dim(out_channels) / group)
