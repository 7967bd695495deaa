"""The `onnx2sql` command line: export, compile, run, generate, bench."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from onnx2sql.emit.regions import DEFAULT_REGION_SIZE
from onnx2sql.dialects import BACKENDS
from onnx2sql.errors import Onnx2SqlError, UsageError
from onnx2sql.runtime.kernel_mode import KERNEL_MODES, WEIGHT_FORMATS
from onnx2sql.runtime.prompts import DEFAULT_BATCH

# Exit codes: 0 success, 1 an error (bad model, file or input), 2 a usage error (a flag or
# argument that can never work), 130 interrupted (Ctrl-C).
EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def _cmd_export(args: argparse.Namespace) -> int:
    from onnx2sql.export import export_model

    out = export_model(args.model, Path(args.output) if args.output else None, force=args.force)
    print(out)
    return 0


def _cmd_compile(args: argparse.Namespace) -> int:
    from onnx2sql.api import compile as compile_model

    if args.backend != "duckdb":
        return _compile_elsewhere(args)
    if args.output is None:
        raise UsageError("compile needs -o, the folder to write the DuckDB database and SQL files to")
    if args.db is not None:
        raise UsageError("--db names a database of another backend; DuckDB's goes to the -o folder")
    out = compile_model(args.model, args.output, chunk_size=args.chunk_size, progress=not args.quiet,
                        region_size=args.region_size, kernels=args.kernels, weights=args.weights)
    print(out)
    return 0


def _compile_elsewhere(args: argparse.Namespace) -> int:
    """compile --backend sqlite or postgres: the model into the database file, or into its own
    schema of the PostgreSQL database, at --db."""
    if not args.db:
        what = {"sqlite": "a database file", "spark": "a folder for the Parquet weights"}.get(
            args.backend, "a postgresql:// connection URL")
        raise UsageError(f"--backend {args.backend} needs --db, {what}")
    if args.output is not None:
        raise UsageError(f"-o is for DuckDB; --backend {args.backend} compiles into the database at --db")
    if args.chunk_size is not None or args.region_size != DEFAULT_REGION_SIZE or args.weights not in (None, "fp32"):
        raise UsageError(f"--chunk-size, --region-size and --weights are DuckDB's for now; --backend {args.backend} "
                         "compiles with the defaults")
    model = Path(args.model)
    if args.backend == "sqlite":
        return _compile_into_sqlite(model, args)
    if args.backend == "spark":
        return _compile_for_spark(model, args)
    from onnx2sql.runtime.postgres import PostgresDatabase
    from onnx2sql.runtime.postgres_models import compiled_program, model_schema
    from onnx2sql.runtime.postgres_session import postgres_errors

    with PostgresDatabase.connect(args.db) as db, postgres_errors():
        program = compiled_program(db, model, progress=not args.quiet, kernels=args.kernels or "auto")
    print(f"{model_schema(model)} (kernels {program.kernels})")
    return 0


def _compile_into_sqlite(model: Path, args: argparse.Namespace) -> int:
    from onnx2sql.runtime.sqlite import SqliteDatabase, sqlite_errors
    from onnx2sql.runtime.sqlite_models import compiled_program

    with SqliteDatabase.connect(args.db) as db, sqlite_errors(f"SQLite database {args.db!r}"):
        program = compiled_program(db, model, args.db, progress=not args.quiet, kernels=args.kernels)
    print(f"{args.db} (kernels {program.kernels})")
    return 0


def _compile_for_spark(model: Path, args: argparse.Namespace) -> int:
    from onnx2sql.runtime.kernel_mode import check_backend_flags
    from onnx2sql.runtime.spark_models import compiled_folder

    check_backend_flags("spark", args.kernels, args.weights)
    compiled_folder(model, Path(args.db), progress=not args.quiet)
    print(f"{args.db} (kernels sql)")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from onnx2sql.api import check_outputs_path, load_feeds, run, save_outputs

    check_outputs_path(Path(args.output))  # before any work: a wrong name is a usage error
    feeds = load_feeds(Path(args.inputs))
    outputs = run(args.model, feeds, chunk_size=args.chunk_size, kernels=args.kernels, weights=args.weights,
                  backend=args.backend, db=args.db, spark_master=args.spark_master)
    save_outputs(outputs, Path(args.output))
    for name, value in outputs.items():
        print(f"{name}: {value.dtype} {list(value.shape)}")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from onnx2sql.runtime.backends import open_generator
    from onnx2sql.runtime.generate import Sampling

    sampling = Sampling(args.temperature, args.top_k, args.top_p, args.seed)
    sampling.check()  # before the model is opened (or compiled): a bad flag fails at once
    if args.max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    given = [flag for flag, value in (("--prompt", args.prompt), ("--prompts-file", args.prompts_file),
                                      ("--prompts-table", args.prompts_table)) if value is not None]
    if len(given) != 1:
        raise UsageError("give either --prompt or --prompts-file (or, on Spark, --prompts-table)")
    if args.prompts_file is not None or args.prompts_table is not None:
        return _generate_file(args, sampling)
    if args.output is not None or args.batch is not None:
        raise UsageError(f"{'-o' if args.output is not None else '--batch'} goes with --prompts-file")
    stream = None if args.json else _write_now
    with open_generator(args.model_dir, args.backend, db=args.db, memory_limit=args.memory_limit,
                        progress=not args.json, kernels=args.kernels, weights=args.weights,
                        spark_master=args.spark_master) as gen:
        result = gen.generate(args.prompt, args.max_new_tokens, sampling, chat=args.chat, on_text=stream)
    if args.json:
        print(json.dumps(result.as_json(), ensure_ascii=False))
    else:
        print()
        print(f"[{len(result.token_ids)} tokens, finish: {result.finish_reason}; time to first token "
              f"{result.ttft_s:.2f} s, decode {result.tokens_per_s:.2f} tokens/s]", file=sys.stderr)
    return 0


def _generate_file(args: argparse.Namespace, sampling) -> int:
    """generate --prompts-file (or, on Spark, --prompts-table): JSON lines out, in batches."""
    from onnx2sql.runtime.backends import open_generator
    from onnx2sql.runtime.prompts import check_output_file, describe_batch, generate_file, generate_records, \
        write_lines_atomically

    source = "--prompts-file" if args.prompts_file is not None else "--prompts-table"
    if args.output is None:
        raise UsageError(f"{source} needs -o, the JSON-lines file to write the results to")
    if args.json:
        raise UsageError(f"--json goes with --prompt; {source} always writes JSON lines")
    if args.prompts_table is not None and args.backend != "spark":
        raise UsageError("--prompts-table reads a table of Spark's catalog: it goes with --backend spark")
    out = Path(args.output)
    batch = DEFAULT_BATCH if args.batch is None else args.batch

    def open_model():
        return open_generator(args.model_dir, args.backend, db=args.db, memory_limit=args.memory_limit,
                              progress=True, kernels=args.kernels, weights=args.weights,
                              spark_master=args.spark_master)

    def progress(k: int, n: int, done) -> None:
        print(describe_batch(k, n, done), file=sys.stderr)

    if args.prompts_file is not None:
        lines = generate_file(open_model, Path(args.prompts_file), out, batch, args.max_new_tokens, sampling,
                              args.chat, on_batch=progress)
    else:
        from onnx2sql.runtime.spark_models import prompts_of_frame, table_frame

        check_output_file(out)
        where = f"--prompts-table {args.prompts_table!r}"
        lines = generate_records(open_model, lambda gen: prompts_of_frame(table_frame(gen.con.spark, args.prompts_table),
                                                                          where),
                                 where, batch, args.max_new_tokens, sampling, args.chat, on_batch=progress)
        write_lines_atomically(out, lines)
    print(f"[{len(lines)} results written to {out}]", file=sys.stderr)
    return 0


def _write_now(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _cmd_bench(args: argparse.Namespace) -> int:
    from onnx2sql.bench import bench_command

    return bench_command(args)


def _cmd_check(args: argparse.Namespace) -> int:
    from onnx2sql.check import check_model, format_report

    report = check_model(args.model)
    print(format_report(args.model, report))
    return 0 if report.ok else 1


def _spark_master_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spark-master", default=None,
                   help="with --backend spark: the master URL (default local[2]; spark://host:7077 for a cluster)")


def _kernels_flag(p: argparse.ArgumentParser, note: str = "") -> None:
    p.add_argument("--kernels", choices=KERNEL_MODES + ("pgvector",), default=None,
                   help=f"{note}native: float32 products call the DuckDB extension built from kernels/; sql: pure "
                        "SQL; auto (the default): native where it builds and loads; with --backend postgres, "
                        "pgvector (the default where the extension is there) or sql; with --backend sqlite, native is "
                        "the SQLite extension built from kernels/")


def _weights_flag(p: argparse.ArgumentParser, note: str = "") -> None:
    p.add_argument("--weights", choices=WEIGHT_FORMATS, default=None,
                   help=f"{note}fp32 (the default): exact; int8: matrix weights stored as int8 with a float32 "
                        "scale per 32 values (about a quarter of the bytes; needs the native kernels)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onnx2sql",
        description="Compile ONNX inference graphs into SQL and run them in DuckDB.",
        epilog=f"exit codes: 0 success, {EXIT_ERROR} an error (bad model, file, input or database), "
               f"{EXIT_USAGE} a usage error (a flag or argument that can never work), "
               f"{EXIT_INTERRUPTED} interrupted (Ctrl-C)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("export", help="export a model to ONNX (recipe name, HF folder or GGUF file)")
    p.add_argument("--model", required=True,
                   help="recipe (tiny-llama3, smollm2-135m, llama3.2-1b-shape), a Hugging Face "
                        "checkpoint folder or a .gguf file")
    p.add_argument("-o", "--output", help="output folder (default: models/<name>)")
    p.add_argument("--force", action="store_true", help="export again even if the folder is complete")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("compile", help="compile an ONNX model into a DuckDB database and SQL files")
    p.add_argument("model", help="path to a .onnx file")
    p.add_argument("-o", "--output", default=None, help="output folder (DuckDB)")
    p.add_argument("--chunk-size", type=int, default=None, help="elements per chunk of the last axis")
    p.add_argument("--region-size", type=int, default=DEFAULT_REGION_SIZE,
                   help=f"ops run as one SQL statement at most (default {DEFAULT_REGION_SIZE}; 1: one statement per op)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _kernels_flag(p)
    _weights_flag(p)
    p.add_argument("--backend", choices=BACKENDS, default="duckdb",
                   help="the database to compile for (duckdb: files in -o; sqlite: the database file --db; "
                        "postgres: into the database at --db; spark: Parquet weights in the folder --db)")
    p.add_argument("--db", default=None, help="with --backend sqlite: a database file; with --backend postgres: "
                                              "a postgresql:// connection URL; with --backend spark: a folder")
    p.set_defaults(func=_cmd_compile)

    p = sub.add_parser("check", help="list the model's ops and input types onnx2sql supports and those it does not")
    p.add_argument("model", help="path to a .onnx file")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("run", help="run an ONNX model (or a compiled folder) on inputs from an .npz")
    p.add_argument("model", help="a .onnx file or a folder written by `onnx2sql compile`")
    p.add_argument("--inputs", required=True, help=".npz file mapping graph input names to arrays")
    p.add_argument("-o", "--output", required=True, help=".npz file to write the graph outputs to")
    p.add_argument("--chunk-size", type=int, default=None, help="chunk size when compiling a .onnx")
    _kernels_flag(p, "when compiling a .onnx; ")
    _weights_flag(p, "when compiling a .onnx; ")
    p.add_argument("--backend", choices=BACKENDS, default="duckdb",
                   help="the database that runs the model (duckdb and sqlite: embedded; postgres: needs --db; "
                        "spark: local[2] or --spark-master)")
    p.add_argument("--db", default=None, help="with --backend sqlite: a database file (default: in memory); "
                                              "with --backend postgres: a postgresql:// connection URL")
    _spark_master_flag(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("generate", help="generate text with every multiply done in DuckDB")
    p.add_argument("model_dir", help="an exported model folder (model.onnx, config, tokenizer)")
    p.add_argument("--prompt", default=None, help="the text to continue")
    p.add_argument("--prompts-file", default=None,
                   help='JSON lines, one {"id": ..., "prompt": "...", "max_new_tokens": n, "seed": s} per line '
                        "(only prompt is required): each prompt is generated, in batches, and written to -o")
    p.add_argument("--prompts-table", default=None,
                   help="with --backend spark: a table of Spark's catalog with a column prompt (and optionally id, "
                        "max_new_tokens, seed), generated as a prompts file is")
    p.add_argument("-o", "--output", default=None, help="with --prompts-file: the JSON-lines file of results")
    p.add_argument("--batch", type=int, default=None,
                   help=f"with --prompts-file: sequences generated together in the same statements (default {DEFAULT_BATCH})")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--temperature", type=float, default=0.0, help="0 (the default) is greedy")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k most likely tokens (0: all)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass")
    p.add_argument("--seed", type=int, default=None, help="seed of the sampler")
    p.add_argument("--chat", action="store_true", help="apply the tokenizer's chat template")
    p.add_argument("--memory-limit", default=None, help="DuckDB memory limit, e.g. 300MB")
    p.add_argument("--backend", choices=BACKENDS, default="duckdb",
                   help="the database that runs the model (duckdb and sqlite: embedded; postgres: needs --db; "
                        "spark: local[2] or --spark-master)")
    p.add_argument("--db", default=None, help="compiled DuckDB or SQLite database (default MODEL_DIR/sql/model.duckdb "
                                              "or MODEL_DIR/sqlite/model.sqlite), with --backend postgres a postgresql:// "
                                              "URL, with --backend spark a folder of Parquet weights (default "
                                              "MODEL_DIR/spark)")
    _spark_master_flag(p)
    p.add_argument("--json", action="store_true", help="print one JSON line instead of streaming text")
    _kernels_flag(p, "default: the compiled database's, or auto when compiling; ")
    _weights_flag(p, "default: the compiled database's, or fp32 when compiling; ")
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("bench", help="benchmark DuckDB against onnxruntime (and llama.cpp) on the same weights")
    p.add_argument("model_dir", help="an exported model folder")
    p.add_argument("--engines", default="duckdb,duckdb-sql,duckdb-int8,onnxruntime,llama.cpp,llama.cpp-q8_0",
                   help="comma-separated engines to run (duckdb: native kernels; duckdb-sql: pure SQL; duckdb-int8: "
                        "int8 weight tiles; sqlite: SQLite with its kernels extension; sqlite-sql: SQLite in pure "
                        "SQL; postgres: PostgreSQL with pgvector; spark: a local Spark, pure SQL; onnxruntime; llama.cpp: F32; "
                        "llama.cpp-q8_0: llama.cpp's Q8_0)")
    p.add_argument("--prompt-lens", default="16,128", help="comma-separated prompt lengths in tokens")
    p.add_argument("--new-tokens", type=int, default=32, help="tokens generated per run")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per engine and prompt length")
    p.add_argument("--memory-cap", default=None,
                   help="also run each engine alone under this hard cgroup memory limit, e.g. 400MB")
    p.add_argument("--postgres-url", default=None,
                   help="the postgres engine's database (default: a private server in MODEL_DIR/bench/postgres)")
    p.add_argument("--duckdb-memory-limit", default=None,
                   help="DuckDB's memory_limit in the capped runs (default: half the cap)")
    p.add_argument("--cap-timeout", type=float, default=900.0, help="seconds a capped run may take")
    p.add_argument("--batch", type=int, default=None,
                   help="also generate this many different prompts at once per prompt length (aggregate decode "
                        "tokens/s; engines that batch: the database engines and onnxruntime)")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up run of each engine")
    p.add_argument("--profile-step", action="store_true",
                   help="also profile a decode step after each prompt length with DuckDB's profiler (DuckDB "
                        "engines): the step's planning time and its operators' CPU time")
    p.add_argument("--out", default=None, help="JSON results file or folder (default MODEL_DIR/bench/results.json)")
    p.add_argument("--plot", default=None, help="PNG chart file or folder (default: next to --out)")
    _kernels_flag(p, "the duckdb engine's kernels; ")
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        return _fail(args.command, str(exc), EXIT_USAGE)
    except Onnx2SqlError as exc:
        return _fail(args.command, str(exc), EXIT_ERROR)
    except OSError as exc:  # a file that cannot be read or written: named, no traceback
        where = f" ({exc.filename})" if exc.filename else ""
        return _fail(args.command, f"{exc.strerror or exc}{where}", EXIT_ERROR)
    except KeyboardInterrupt:
        return _fail(args.command, "interrupted", EXIT_INTERRUPTED)
    except RuntimeError as exc:
        if not _interrupted_query(exc):
            raise
        return _fail(args.command, "interrupted", EXIT_INTERRUPTED)


def _interrupted_query(exc: RuntimeError) -> bool:
    """DuckDB turns a Ctrl-C that arrives while a statement runs into this RuntimeError."""
    return str(exc) == "Query interrupted"


def _fail(command: str, message: str, code: int) -> int:
    # After Ctrl-C the terminal may be mid-line (streamed text): the message starts a line of its own.
    lead = "\n" if code == EXIT_INTERRUPTED else ""
    print(f"{lead}onnx2sql {command}: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
