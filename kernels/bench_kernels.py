#!/usr/bin/env python3
"""Micro-benchmark: a 2048 x 2048 float32 matrix times a vector, in G multiply-adds per second.

  tile_matvec    onnx2sql_tile_matvec over a table of BLOB tiles of 64 rows, one x row
  onnx2sql_dot   onnx2sql_dot over a table of FLOAT[] rows
  list_dot       DuckDB's list_dot_product over the same FLOAT[] rows
  numpy          weight @ x

One thread each by default (DuckDB threads=1, BLAS threads=1). Prints best and median of the repeats.
usage: python kernels/bench_kernels.py [--n 2048] [--tile-rows 64] [--repeats 20] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable


def set_blas_threads(threads: int) -> None:
    # Read by the BLAS libraries when numpy is first imported.
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)


def timings(run: Callable[[], object], repeats: int) -> list[float]:
    run()  # warm-up: first-touch page faults and plan caches are not what is measured
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        out.append(time.perf_counter() - start)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048, help="rows = columns of the matrix")
    parser.add_argument("--tile-rows", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    set_blas_threads(args.threads)

    import duckdb
    import numpy as np

    from onnx2sql.runtime.kernels import KERNEL_CONFIG, build_extension, load_kernels

    build_extension()
    n, tile_rows = args.n, args.tile_rows
    g = np.random.default_rng(0)
    weight = g.standard_normal((n, n), dtype=np.float32)
    x = g.standard_normal(n, dtype=np.float32)

    con = duckdb.connect(config={**KERNEL_CONFIG, "threads": str(args.threads)})
    load_kernels(con)
    con.execute("CREATE TABLE xs AS SELECT ?::FLOAT[] AS x", [x.tolist()])
    con.execute("CREATE TABLE tiles (c INTEGER, tile BLOB)")
    con.executemany("INSERT INTO tiles VALUES (?, ?)",
                    [[c, weight[c * tile_rows:(c + 1) * tile_rows].astype("<f4").tobytes()]
                     for c in range(n // tile_rows)])
    con.execute("CREATE TABLE rows AS SELECT r::INTEGER AS r, w::FLOAT[] AS w "
                "FROM (SELECT unnest(range(?)) AS r, unnest(?::FLOAT[][]) AS w)", [n, weight.tolist()])

    queries = {
        "tile_matvec": "SELECT c, onnx2sql_tile_matvec(tile, x) FROM tiles, xs",
        "onnx2sql_dot": "SELECT r, onnx2sql_dot(w, x) FROM rows, xs",
        "list_dot": "SELECT r, list_dot_product(w, x) FROM rows, xs",
    }
    # Results agree with numpy before anything is timed.
    expected = weight.astype(np.float64) @ x.astype(np.float64)
    got = np.concatenate([np.array(v, dtype=np.float64) for _, v in
                          sorted(con.execute(queries["tile_matvec"]).fetchall())])
    assert np.allclose(got, expected, rtol=1e-3, atol=1e-3), "tile_matvec disagrees with numpy"

    isa = con.execute("SELECT onnx2sql_kernels_isa()").fetchone()[0]
    print(f"{n} x {n} float32 matrix-vector, {args.threads} thread(s), kernels: {isa}, "
          f"duckdb {duckdb.__version__}, {args.repeats} repeats")
    print(f"{'method':<14} {'best GMAC/s':>12} {'median GMAC/s':>14} {'median ms':>10}")
    runs: dict[str, Callable[[], object]] = {name: (lambda q=q: con.execute(q).fetchall())
                                             for name, q in queries.items()}
    runs["numpy"] = lambda: weight @ x
    for name, run in runs.items():
        t = timings(run, args.repeats)
        best, median = min(t), statistics.median(t)
        print(f"{name:<14} {n * n / best / 1e9:>12.2f} {n * n / median / 1e9:>14.2f} {median * 1e3:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
