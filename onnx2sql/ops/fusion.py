"""Elementwise fusion: an elementwise statement whose table is read by exactly one other elementwise
statement is folded into that reader, its expression nested in the reader's list_transform. Each
DuckDB statement costs about a millisecond however small its tensors (a decode step is thousands of
them), so chains such as RMSNorm's Add -> Sqrt -> Div -> Mul -> Mul or SwiGLU's Sigmoid -> Mul -> Mul
become one statement each.

Fusing is exact: elementwise ops commute with broadcasting, and a folded expression is cast to the
type its own table had, so every value is rounded as it was before."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from onnx2sql.emit.sql import render, sql_type
from onnx2sql.graph.symbolic import Shape, to_sql
from onnx2sql.graph.values import Runtime
from onnx2sql.ops.broadcast import plan_broadcast
from onnx2sql.ops.context import LowerContext, TableRef

# Limits of one fused statement, beyond which a chain is cut into several: its distinct inputs (each
# a join), and its expression's length (an op that uses its input twice, as Sigmoid does, copies the
# folded expression twice).
MAX_INPUTS = 6
MAX_EXPRESSION = 2000

Template = Callable[[Sequence[str]], str]


@dataclass(frozen=True)
class Recipe:
    """An elementwise statement: its inputs, and the output element's SQL from theirs."""

    inputs: tuple[TableRef, ...]
    template: Template
    dtype: np.dtype
    shape: Shape
    label: str

    def inline(self, table: str, producer: "Recipe") -> "Recipe":
        """This recipe with every input that is `table` replaced by the producer's expression."""
        spans: list[tuple[int, int, bool]] = []
        inputs: list[TableRef] = []
        for ref in self.inputs:
            fused = ref.name == table
            added = producer.inputs if fused else (ref,)
            spans.append((len(inputs), len(inputs) + len(added), fused))
            inputs.extend(added)
        outer, inner, inner_type = self.template, producer.template, sql_type(producer.dtype)

        def template(elements: Sequence[str]) -> str:
            args = [f"CAST(({inner(elements[lo:hi])}) AS {inner_type})" if fused else elements[lo]
                    for lo, hi, fused in spans]
            return outer(args)

        return replace(self, inputs=tuple(inputs), template=template, label=f"{producer.label}; {self.label}")

    def within_limits(self) -> bool:
        return (len({ref.name for ref in self.inputs}) <= MAX_INPUTS
                and len(self.template(["a0.v[p]"] * len(self.inputs))) <= MAX_EXPRESSION)


def render_recipe(recipe: Recipe, out: TableRef, chunk: int) -> tuple[str, tuple[str, ...]]:
    """The statement of a recipe and the tables it reads. An input that appears more than once
    (x * x, or x in RMSNorm's x * rsqrt(mean(x^2))) is joined once."""
    distinct = list(dict.fromkeys(recipe.inputs))
    plan = plan_broadcast(distinct, recipe.shape)
    element = {ref.name: sql for ref, sql in zip(distinct, plan.elements)}
    sql = render(
        "elementwise/map.sql.j2", N=chunk, out=out, sql_dim=to_sql,
        inputs=distinct, lead=plan.lead, chunk=plan.chunk, driver=plan.driver,
        expr=recipe.template([element[ref.name] for ref in recipe.inputs]), conditions=plan.conditions,
    )
    return sql, tuple(sorted(ref.name for ref in distinct))


def emit_recipe(ctx: LowerContext, recipe: Recipe) -> Runtime:
    """One statement for a recipe, remembered so that fuse_elementwise can fold it later."""
    out = ctx.emit_rendered(recipe.dtype, recipe.shape, lambda ref: render_recipe(recipe, ref, ctx.chunk),
                            recomputable=True)
    ctx.elementwise[out.table] = recipe
    return out


def fuse_elementwise(ctx: LowerContext, keep: set[str]) -> None:
    """Fold single-reader elementwise statements into their elementwise readers, in place.
    `keep` names tables that must stay (graph inputs and outputs)."""
    readers = Counter(name for stmt in ctx.statements for name in set(stmt.reads))
    removed: set[str] = set()
    for stmt in ctx.statements:
        recipe = ctx.elementwise.get(stmt.table)
        if recipe is None:
            continue
        fused = recipe
        for ref in dict.fromkeys(recipe.inputs):
            table = ref.name.strip('"')
            producer = ctx.elementwise.get(table)
            if producer is None or readers[ref.name] != 1 or table in keep:
                continue
            candidate = fused.inline(ref.name, producer)
            if candidate.within_limits():
                fused = candidate
                removed.add(table)
        if fused is not recipe:
            ctx.elementwise[stmt.table] = fused
            out = ctx.table_ref(Runtime(stmt.table, fused.dtype, fused.shape))
            stmt.sql, stmt.reads = render_recipe(fused, out, ctx.chunk)
            stmt.comment = f"{stmt.comment} (fused: {fused.label})"
    ctx.statements[:] = [s for s in ctx.statements if s.table not in removed]


def drop_unread(ctx: LowerContext, keep: set[str]) -> None:
    """Remove statements whose tables nothing reads (a Transpose a MatMul bypassed), repeatedly."""
    while True:
        read = {name.strip('"') for stmt in ctx.statements for name in stmt.reads}
        kept = [s for s in ctx.statements if s.table in read or s.table in keep]
        if len(kept) == len(ctx.statements):
            return
        ctx.statements[:] = kept

