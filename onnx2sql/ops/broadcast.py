"""Multidirectional (numpy-style) broadcasting of tensor tables joined on their index columns."""
from __future__ import annotations

from dataclasses import dataclass

from onnx2sql.errors import ShapeError
from onnx2sql.graph.symbolic import Dim, Shape, as_dim, dims_equal, is_one, static_value
from onnx2sql.ops.context import TableRef


def broadcast_shapes(shapes: list[Shape]) -> Shape:
    """The broadcast shape. A dim broadcasts only if it is literally 1; two different symbolic
    dims are taken to be equal at run time (a valid model guarantees it)."""
    rank = max((len(s) for s in shapes), default=0)
    out: list[Dim] = []
    for k in range(rank):
        dims = [s[len(s) - rank + k] for s in shapes if len(s) - rank + k >= 0]
        non_one = [d for d in dims if not is_one(d)]
        if not non_one:
            out.append(as_dim(1))
            continue
        chosen = next((d for d in non_one if static_value(d) is not None), non_one[0])
        for d in non_one:
            a, b = static_value(d), static_value(chosen)
            if a is not None and b is not None and a != b:
                raise ShapeError(f"shapes {[list(map(str, s)) for s in shapes]} do not broadcast")
        out.append(chosen)
    return tuple(out)


@dataclass(frozen=True)
class BroadcastJoin:
    """How inputs aliased a0, a1, ... join into an output of the broadcast shape."""

    lead: list[str]  # SQL source of each output leading index column
    chunk: str  # SQL source of the output chunk column
    driver: str  # alias whose v drives the list_transform
    elements: list[str]  # SQL of each input's element inside `lambda x, p:`
    conditions: list[str]


def plan_broadcast(inputs: list[TableRef], out_shape: Shape) -> BroadcastJoin:
    """Join plan for elementwise ops in the chunked layout (storage rank = max(rank, 1))."""
    storage = [t.shape if t.rank else (as_dim(1),) for t in inputs]
    out = out_shape if out_shape else (as_dim(1),)
    rank = len(out)
    lead: list[str] = []
    conditions: list[str] = []
    for k in range(rank - 1):
        owners = [(j, len(s) - rank + k) for j, s in enumerate(storage)
                  if len(s) - rank + k >= 0 and not is_one(s[len(s) - rank + k])]
        if not owners:
            lead.append("0")
            continue
        j0, a0 = owners[0]
        lead.append(f"a{j0}.i{a0}")
        conditions += [f"a{j}.i{a} = a{j0}.i{a0}" for j, a in owners[1:]]
    last_owners = [j for j, s in enumerate(storage) if not is_one(s[-1])]
    if last_owners:
        driver = last_owners[0]
        conditions += [f"a{j}.c = a{driver}.c" for j in last_owners[1:]]
        chunk = f"a{driver}.c"
    else:
        driver, chunk = 0, "a0.c"
    elements = []
    for j, s in enumerate(storage):
        if j == driver:
            elements.append("x")
        elif j in last_owners:
            _check_same(s[-1], storage[driver][-1])
            elements.append(f"a{j}.v[p]")
        else:
            elements.append(f"a{j}.v[1]")
    return BroadcastJoin(lead, chunk, f"a{driver}", elements, conditions)


def _check_same(a: Dim, b: Dim) -> None:
    sa, sb = static_value(a), static_value(b)
    if sa is not None and sb is not None and sa != sb:
        raise ShapeError(f"last axes {a} and {b} do not broadcast")
    if sa is None and sb is None and not dims_equal(a, b):
        # Different symbols: the model promises equality; nothing more to check at compile time.
        return
