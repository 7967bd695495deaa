"""Identifiers, literals, element types and the Jinja environment of the templates.

Layout convention (every tensor table): a tensor of rank r >= 1 is a table with one INTEGER
index column per leading axis (i0 .. i{r-2}), a chunk column `c` and `v`, a list of at most
`chunk` elements of the last axis: element j of the last axis sits at v[j % chunk + 1] of the
row with c = j // chunk. A scalar is stored like a tensor of shape [1]. Tables are dense: every
index combination has its row.
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

import jinja2
import numpy as np

from onnx2sql.dialects import current

DEFAULT_CHUNK = 64  # elements per row of a tensor table (the `chunk` above) unless one is asked for

def sql_type(dtype: np.dtype) -> str:
    """The element type's name in the dialect in use."""
    return current().type(dtype)


def is_supported_dtype(dtype: np.dtype) -> bool:
    return current().supports(dtype)


def quote_ident(name: str) -> str:
    """An identifier for any string: doubled quotes inside, quoted outside."""
    return current().quote_ident(name)


def quote_literal(text: str) -> str:
    return current().quote_literal(text)


def comment_text(text: str) -> str:
    """Text safe inside a `--` comment: ONNX names may hold newlines or anything else."""
    return json.dumps(text, ensure_ascii=True)[1:-1]


def float_literal(x: float, dtype: np.dtype) -> str:
    t = sql_type(dtype)
    if np.isnan(x):
        return current().special_float("nan", t)
    if np.isinf(x):
        return current().special_float("-inf" if x < 0 else "inf", t)
    return f"CAST({float(x)!r} AS {t})"


def literal(x: object, dtype: np.dtype) -> str:
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return "TRUE" if bool(x) else "FALSE"
    if dt.kind == "f":
        return float_literal(float(x), dt)
    return f"CAST({int(x)} AS {sql_type(dt)})"


def cols(prefix: str, n: int, alias: str = "", start: int = 0) -> list[str]:
    dot = f"{alias}." if alias else ""
    return [f"{dot}{prefix}{k}" for k in range(start, start + n)]


def _template_root() -> Path:
    try:
        root = Path(str(resources.files("onnx2sql.templates")))
        if (root / "_macros.sql.j2").exists():
            return root
    except ModuleNotFoundError:
        pass
    # Running from a source checkout without installing: templates/ beside the package.
    return Path(__file__).resolve().parents[2] / "templates"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_template_root())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.globals["cols"] = cols
    env.filters["cast_as"] = lambda sql, type_name: f"CAST({sql} AS {type_name})"
    return env


def render(template: str, **params: object) -> str:
    text = environment().get_template(template).render(d=current(), **params)
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    return "\n".join(lines)


def int_div(a: str, b: object) -> str:
    """Integer division truncated toward zero, in the dialect in use."""
    return current().int_div(a, str(b))


def double_type() -> str:
    """The float type float maths is carried out in, in the dialect in use."""
    return current().double


def in_dialect(fragment: str) -> str:
    """A fragment written once with DuckDB's name of the float maths type (DOUBLE), in the
    dialect in use: the element expressions of ops are module constants."""
    dialect = current()
    if dialect.double == "DOUBLE":
        return fragment
    for special in ("-inf", "inf", "nan"):
        fragment = fragment.replace(f"'{special}'::DOUBLE", dialect.special_float(special, dialect.double))
    return fragment.replace("DOUBLE", dialect.double)
