"""A compiled program: its statements in order, the tables they read and write, how they group
into regions (one database statement each), and how graph inputs and outputs map to tables.
Serialised as JSON inside the database and as readable SQL."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from onnx2sql.dialects import dialect_for
from onnx2sql.emit.regions import DEFAULT_REGION_SIZE, Region, Statement, build_regions, region_query, \
    region_reads
from onnx2sql.emit.sql import comment_text, quote_ident

# Running a compiled program needs neither sympy nor onnx (see emit/dims.py): the modules that do
# are imported only by what compiles.
if TYPE_CHECKING:
    from onnx2sql.graph.values import Runtime
    from onnx2sql.ops.context import WeightTable

# A graph output computed by a product with a known B (a language model's logits) holds only the
# rows whose second-to-last index is at least this DuckDB variable, when it is set: generation
# reads the last position alone and skips the head's work for the rest of a prompt.
OUTPUT_ROWS_FROM = "onnx2sql_output_rows_from"

# What the products of a program call, by (backend, kernel mode); pure SQL otherwise.
KERNEL_NOTES = {
    ("duckdb", "native"): "float32 products call onnx2sql_tile_matvec and onnx2sql_dot",
    ("sqlite", "native"): "products with known matrices call onnx2sql_dot over float32 BLOB rows, "
                          "from the SQLite extension",
    ("postgres", "pgvector"): "products with known matrices through pgvector's <#>",
}

# What getvariable('s0') reads on each backend.
SYMBOL_KINDS = {"duckdb": "DuckDB variables", "postgres": "settings onnx2sql.s0, .. (read by getvariable)",
                "sqlite": "rows of the temporary table onnx2sql_symbols (name, value)"}


@dataclass
class TensorSpec:
    name: str  # the ONNX name (data, never SQL)
    table: str
    dtype: str
    shape: list[str]  # dims as sympy text over s0, s1, ... (evaluated by emit/dims.py)

    def runtime(self) -> Runtime:
        """The tensor as lowering sees it, with sympy dims."""
        from onnx2sql.graph.symbolic import as_shape, dim_from_text
        from onnx2sql.graph.values import Runtime

        return Runtime(self.table, np.dtype(self.dtype), as_shape(dim_from_text(d) for d in self.shape))


@dataclass
class SymbolSource:
    symbol: str  # s0, s1, ...
    input: str  # graph input name
    axis: int
    label: str  # the ONNX dim_param, or a description when unnamed


@dataclass
class Program:
    chunk: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    symbols: list[SymbolSource]
    statements: list[Statement]
    regions: list[Region] = field(default_factory=list)
    # "native": float32 products call the native kernels, which must be loaded to run it; "sql": pure SQL.
    kernels: str = "sql"
    # "fp32", or "int8": the known matrices the native kernels multiply are int8 tiles.
    weight_format: str = "fp32"
    # Tables no longer needed after region k: dropped to free memory.
    drops: list[list[str]] = field(default_factory=list)
    weights: list[WeightTable] = field(default_factory=list)
    # Bytes of values in each table of matrix tiles, which a product scans whole (an embedding,
    # read a row per token, is left out): how much of its weights a region scans.
    weight_bytes: dict[str, int] = field(default_factory=dict)
    # The database the SQL is written for (onnx2sql/dialects).
    backend: str = "duckdb"

    def finish(self, region_size: int = DEFAULT_REGION_SIZE) -> "Program":
        keep = {t.table for t in self.outputs} | {t.table for t in self.inputs}
        self.regions = build_regions(self.statements, keep, region_size)
        self.drops = _last_uses(self)
        return self

    def largest_region_weights(self) -> int:
        """The most bytes of matrix tiles one region scans."""
        return max((sum(self.weight_bytes.get(t, 0) for t in region_reads(self.statements, r)) for r in self.regions),
                   default=0)

    def region_query(self, k: int, comments: bool = False) -> str:
        """The SELECT of region k, in the program's dialect."""
        return dialect_for(self.backend).finish(region_query(self.statements, self.regions[k], comments))

    def region_sql(self, k: int, comments: bool = False, query: str | None = None) -> str:
        """The statement that stores region k's sink: its query (or `query`, which stands for it)
        creating the sink's table, or appended to it."""
        region = self.regions[k]
        sink = self.statements[region.sink]
        dialect = dialect_for(self.backend)
        query = query if query is not None else self.region_query(k, comments)
        if sink.appends:
            return dialect.insert_rows(quote_ident(sink.table), self._columns(sink.table), query)
        return dialect.create_table_as(quote_ident(sink.table), query)

    def _columns(self, table: str) -> list[str]:
        """The columns of a graph input's table (the only tables a program appends to)."""
        spec = next(t for t in self.inputs if t.table == table)
        return [f"i{k}" for k in range(max(len(spec.shape) - 1, 0))] + ["c", "v"]

    def executable(self, drop: bool = True, region_sql: Callable[[int], str] | None = None) -> Iterator[str]:
        """The regions as DuckDB executes them, with each stored table dropped after its last use
        unless `drop` is false (the tables then stay until replaced or dropped by the caller).
        `region_sql` gives region k's statement, when not `self.region_sql(k)`; it is called just
        before that statement is run, after the regions before it ran."""
        for k, drops in enumerate(self.drops):
            yield region_sql(k) if region_sql is not None else self.region_sql(k)
            if drop:
                yield from (f"DROP TABLE IF EXISTS {quote_ident(t)}" for t in drops)

    def script(self) -> str:
        """The whole program as a readable SQL file with a shape comment on every table."""
        from onnx2sql.ops.context import describe_layout

        lines = ["-- onnx2sql program. Layout: leading index columns i0.., chunk c, v = up to "
                 f"{self.chunk} elements of the last axis.",
                 f"-- Kernels: {self.kernels} ({KERNEL_NOTES.get((self.backend, self.kernels), 'pure SQL')}).",
                 f"-- Weights: {self.weight_format}"
                 + (" (matrix products read int8 tiles with a float32 scale per 32 values through "
                    "onnx2sql_tile_matvec_q8)." if self.weight_format == "int8" else "."),
                 f"-- Symbols are {SYMBOL_KINDS.get(self.backend, 'variables')} set before each run:"]
        lines += [f"--   {s.symbol} = {comment_text(s.input)} axis {s.axis} ({comment_text(s.label)})"
                  for s in self.symbols]
        lines += [f"-- input  {comment_text(t.name)} -> {t.table}: {describe_layout(t.runtime(), self.chunk)}"
                  for t in self.inputs]
        lines += [f"-- output {comment_text(t.name)} <- {t.table}: {describe_layout(t.runtime(), self.chunk)}"
                  for t in self.outputs]
        for k, (region, drops) in enumerate(zip(self.regions, self.drops)):
            lines.append("")
            lines.append(f"-- region {k}: {self.statements[region.sink].comment}")
            lines.append(f"{self.region_sql(k, comments=True)};")
            lines += [f"DROP TABLE IF EXISTS {quote_ident(t)};" for t in drops]
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        return json.dumps({
            "chunk": self.chunk,
            "inputs": [asdict(t) for t in self.inputs],
            "outputs": [asdict(t) for t in self.outputs],
            "symbols": [asdict(s) for s in self.symbols],
            "kernels": self.kernels,
            "weight_format": self.weight_format,
            "statements": [asdict(s) for s in self.statements],
            "regions": [r.members for r in self.regions],
            "drops": self.drops,
            "weight_bytes": self.weight_bytes,
            "backend": self.backend,
        })

    @staticmethod
    def from_json(text: str) -> "Program":
        data = json.loads(text)
        return Program(
            chunk=data["chunk"],
            inputs=[TensorSpec(**t) for t in data["inputs"]],
            outputs=[TensorSpec(**t) for t in data["outputs"]],
            symbols=[SymbolSource(**s) for s in data["symbols"]],
            statements=[Statement(**{**s, "reads": tuple(s["reads"])}) for s in data["statements"]],
            regions=[Region(members) for members in data["regions"]],
            kernels=data["kernels"],
            weight_format=data.get("weight_format", "fp32"),
            drops=data["drops"],
            weight_bytes=data.get("weight_bytes", {}),
            backend=data.get("backend", "duckdb"),
        )


def _last_uses(program: Program) -> list[list[str]]:
    """Per region, the stored tables it is the last reader of (never graph inputs or outputs)."""
    keep = {t.table for t in program.outputs} | {t.table for t in program.inputs}
    created = {program.statements[r.sink].table for r in program.regions}
    last: dict[str, int] = {}
    for k, region in enumerate(program.regions):
        for table in region_reads(program.statements, region):
            last[table] = k
    drops: list[list[str]] = [[] for _ in program.regions]
    for table, k in last.items():
        if table in created and table not in keep:
            drops[k].append(table)
    return drops
