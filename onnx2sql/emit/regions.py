"""Regions: lowered statements grouped so that a program runs as few database statements.

Lowering gives one statement per op (after elementwise fusion). Run one by one, each would be a
materialised table, and each costs the database a fixed amount whatever its size. A region is a
run of statements executed as one: its members become common table expressions of one
`CREATE TABLE ... AS WITH ...`, and only the region's last member (its sink) is stored. A
statement is stored only where it must be: a graph output or input, or a table read by a later
region.

Regions are built backwards: a statement joins the region of its readers when all of them are in
one region, that region has room, and the statement is not kept; otherwise it starts a region of
its own. Then a region made only of statements that are cheap to compute again (elementwise ops and
reductions: one pass over their inputs) and read by a few regions is copied into each of them
instead of being stored: RMSNorm's output, read by the K, V and attention regions of a layer,
costs no statement of its own. Because every member comes before its region's sink, emitting
regions in the order of their sinks keeps every read after its write. A CTE read twice is
materialised by DuckDB inside the statement, so a tensor read by two ops of one region is still
computed once.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

from onnx2sql.emit.sql import quote_ident

# Statements per region at most. 48 holds a whole Llama layer's attention and MLP (about 40 ops
# after fusion): on SmolLM2, sizes 48 to 400 gave the same 125 regions (the graph's own limit),
# 16 gave 188 and a slower step. Much larger statements would cost more to plan than they save (a
# whole 30-layer decode step as one statement took about a second to plan).
DEFAULT_REGION_SIZE = 48
# Regions a recomputable statement may be copied into before it is stored instead.
MAX_COPIES = 3


@dataclass
class Statement:
    """One lowered op: the SELECT that computes `table` from the tables it reads."""

    table: str
    sql: str
    comment: str
    reads: tuple[str, ...]
    # Its rows are appended to `table` (an existing input table) instead of creating the table.
    appends: bool = False
    # Cheap to compute again in each region that reads it (one pass over its inputs).
    recomputable: bool = False


@dataclass
class Region:
    """Statements run as one: `members` (indexes into the program's statements, in order) end with
    the sink, the one table the region stores."""

    members: list[int]

    @property
    def sink(self) -> int:
        return self.members[-1]


def build_regions(statements: Sequence[Statement], keep: Iterable[str], size: int) -> list[Region]:
    """Group statements into regions of at most `size` members (constants aside); `keep` names tables that must be
    stored (graph inputs and outputs). Regions come back in execution order."""
    if size < 1:
        raise ValueError(f"region size must be at least 1, got {size}")
    kept = set(keep)
    readers: dict[str, list[int]] = defaultdict(list)
    for k, stmt in enumerate(statements):
        for table in set(stmt.reads):
            readers[table.strip('"')].append(k)
    region_of: dict[int, int] = {}
    groups: list[list[int]] = []
    for k in reversed(range(len(statements))):
        table = statements[k].table
        homes = {region_of[r] for r in readers.get(table, [])}
        if table not in kept and len(homes) == 1:
            home = homes.pop()
            if not statements[k].reads or _sized(statements, groups[home]) < size:
                groups[home].append(k)
                region_of[k] = home
                continue
        region_of[k] = len(groups)
        groups.append([k])
    regions = sorted((Region(sorted(members)) for members in groups), key=lambda r: r.sink)
    return _copy_cheap_regions(statements, regions, kept, size)


def _copy_cheap_regions(statements: Sequence[Statement], regions: list[Region], kept: set[str],
                        size: int) -> list[Region]:
    """Copy each region of recomputable statements into the (at most MAX_COPIES) regions that read
    its sink, instead of storing the sink. Its own reads are stored tables, so the copies add none.
    A region that reads no table (a small constant written as VALUES) is copied into every reader."""
    out = list(regions)
    for region in regions:
        sink = statements[region.sink].table
        if sink in kept or not all(statements[k].recomputable for k in region.members):
            continue
        readers = [r for r in out if r is not region and sink in region_reads(statements, r)]
        constant = not region_reads(statements, region)
        if not readers or (not constant and (len(readers) > MAX_COPIES or any(
                _sized(statements, r.members) + _sized(statements, region.members) > size for r in readers))):
            continue
        for reader in readers:
            reader.members = sorted(set(reader.members) | set(region.members))
        out.remove(region)
    return out


def _sized(statements: Sequence[Statement], members: Iterable[int]) -> int:
    """Members that count towards a region's size: a constant (a statement that reads no table,
    VALUES rows) costs next to nothing to plan."""
    return sum(1 for k in members if statements[k].reads)


def region_reads(statements: Sequence[Statement], region: Region) -> set[str]:
    """Tables a region reads from outside itself (unquoted names)."""
    inner = {statements[k].table for k in region.members}
    return {t.strip('"') for k in region.members for t in statements[k].reads} - inner


def region_query(statements: Sequence[Statement], region: Region, comments: bool = False) -> str:
    """The SELECT of a region: every member as a CTE named after its table, then the sink's rows.
    Each member's SQL reads the others by their table names, which the CTEs now stand for."""
    if len(region.members) == 1:
        return statements[region.sink].sql
    parts = []
    for k in region.members:
        stmt = statements[k]
        note = f"-- {stmt.comment}\n" if comments else ""
        parts.append(f"{note}{quote_ident(stmt.table)} AS (\n{stmt.sql}\n)")
    return "WITH\n" + ",\n".join(parts) + f"\nSELECT * FROM {quote_ident(statements[region.sink].table)}"
