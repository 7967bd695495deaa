"""The engines under benchmark, one class each behind one interface: set up (compile or load), then
greedy generation from token ids, timed the same way for all (time to first token; decode tokens/s
over the tokens after the first). Heavy imports happen in `setup`, inside the engine's own process."""
from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

OnToken = Callable[[int], None]


@dataclass
class EngineOptions:
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    duckdb_memory_limit: str | None = None
    gguf: str | None = None  # the llama.cpp weights (F32), prepared by the runner
    gguf_q8_0: str | None = None  # the same weights quantized by llama.cpp to Q8_0
    context: int = 4096  # llama.cpp's KV cache is allocated for this many positions up front
    eos_ids: list[int] = field(default_factory=list)
    kernels: str | None = None  # the `duckdb` engine's mode (None: auto); `duckdb-sql` is always pure SQL
    # The `postgres` engine's database; None: a private server in MODEL_DIR/bench/postgres.
    postgres_url: str | None = None

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Run:
    tokens: list[int]
    ttft_s: float
    decode_tokens_per_s: float
    statements_per_step: int | None = None  # SQL statements in a decode step (database engines)


@dataclass
class BatchRun:
    tokens: list[list[int]]  # each sequence's
    ttft_s: float  # until every sequence had its first token
    decode_tokens_per_s: float  # tokens after the first, of all sequences, per second of decoding


class Unsupported(Exception):
    """The engine lacks an optional feature of the benchmark."""


class BatchUnsupported(Unsupported):
    """The engine generates one sequence at a time only."""


class ProfileUnsupported(Unsupported):
    """The engine has no statement profile of a decode step."""


class Engine(ABC):
    name: ClassVar[str]
    # The weights' precision: tokens are compared with onnxruntime's where it is the same (fp32).
    precision: ClassVar[str] = "fp32"

    def __init__(self, model_dir: Path, options: EngineOptions):
        self.model_dir = model_dir
        self.options = options

    @abstractmethod
    def setup(self) -> str:
        """Compile or load the model; returns which of the two it did."""

    @abstractmethod
    def generate(self, prompt_ids: list[int], new_tokens: int, on_token: OnToken) -> Run:
        ...

    @abstractmethod
    def disk_files(self) -> list[Path]:
        """The files the engine reads its weights from (known before `setup`)."""

    def generate_batch(self, prompts: list[list[int]], new_tokens: int) -> BatchRun:
        """Greedy generation for several sequences at once, each stopping at its end-of-text."""
        raise BatchUnsupported(f"{self.name} generates one sequence at a time here")

    def profile_step(self, prompt_ids: list[int]) -> dict[str, Any]:
        """Where one decode step's time goes, statement by statement (runtime/step_profile.py)."""
        raise ProfileUnsupported(f"{self.name} has no statement profile")

    def close(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        """Figures of the engine's set-up worth reporting beside its speed."""
        return {}


class GeneratorEngine(Engine):
    """An onnx2sql engine: a Generator (set up as `self.generator`) does the greedy loop in SQL."""

    def generate(self, prompt_ids: list[int], new_tokens: int, on_token: OnToken) -> Run:
        count = iter(range(1, new_tokens + 1))
        result = self.generator.generate_ids(prompt_ids, new_tokens, on_text=lambda _: on_token(next(count)))
        return Run(result.token_ids, result.ttft_s, result.tokens_per_s, result.statements_per_step)

    def generate_batch(self, prompts: list[list[int]], new_tokens: int) -> BatchRun:
        batch = self.generator.generate_batch_ids(prompts, new_tokens)
        return BatchRun([g.token_ids for g in batch.generations], batch.ttft_s, batch.decode_tokens_per_s)

    def close(self) -> None:
        self.generator.close()


class DuckDBEngine(GeneratorEngine):
    """onnx2sql in DuckDB, with the kernels of `options.kernels` (native by default)."""

    name = "duckdb"

    def kernels(self) -> str | None:
        # Asked for explicitly: a model folder's database left in pure SQL by an earlier
        # `--kernels sql` is compiled again with the kernels rather than measured as `duckdb`.
        return self.options.kernels or "auto"

    def weights(self) -> str | None:
        return "fp32"

    def database(self) -> Path:
        from onnx2sql.runtime.generate import default_db

        return default_db(self.model_dir)

    def setup(self) -> str:
        from onnx2sql.api import written_by_older_version
        from onnx2sql.runtime.generate import Generator

        if self.database().exists() and written_by_older_version(self.database()):
            self.database().unlink()  # the benchmark's own database, from an older onnx2sql: compiled again
        kind = "load" if self.database().exists() else "compile"
        self.generator = Generator(self.model_dir, db=self.database(), memory_limit=self.options.duckdb_memory_limit,
                                   progress=True, kernels=self.kernels(), weights=self.weights())
        return kind

    def describe(self) -> dict[str, Any]:
        return {"kernels": self.generator.program.kernels, "weights": self.generator.program.weight_format}

    def profile_step(self, prompt_ids: list[int]) -> dict[str, Any]:
        from onnx2sql.runtime.step_profile import profile_decode_step

        return profile_decode_step(self.generator, prompt_ids)

    def disk_files(self) -> list[Path]:
        return [self.database()]


class DuckDBSqlEngine(DuckDBEngine):
    """onnx2sql in DuckDB in pure SQL (no native kernels), from a database of its own beside the
    benchmark's results (the model's sql/ folder belongs to compile)."""

    name = "duckdb-sql"

    def kernels(self) -> str | None:
        return "sql"

    def database(self) -> Path:
        return self.model_dir / "bench" / "duckdb-sql.duckdb"


class DuckDBInt8Engine(DuckDBEngine):
    """onnx2sql in DuckDB with int8 weight tiles multiplied by the native kernels, from a database
    of its own beside the benchmark's results."""

    name = "duckdb-int8"
    precision = "int8"

    def kernels(self) -> str | None:
        return "native"

    def weights(self) -> str | None:
        return "int8"

    def database(self) -> Path:
        return self.model_dir / "bench" / "duckdb-int8.duckdb"


class SqliteEngine(GeneratorEngine):
    """onnx2sql in SQLite, products through the SQLite extension built from kernels/ (pure SQL
    where it cannot load), from the model folder's own database file (MODEL_DIR/sqlite/model.sqlite)."""

    name = "sqlite"

    def kernels(self) -> str:
        return self.options.kernels or "auto"

    def database(self) -> Path:
        from onnx2sql.runtime.sqlite_models import default_sqlite_db

        return default_sqlite_db(self.model_dir)

    def setup(self) -> str:
        from onnx2sql.runtime.sqlite_models import SqliteGenerator

        kind = "load" if self.database().exists() else "compile"
        self.generator = SqliteGenerator(self.model_dir, self.database(), progress=True, kernels=self.kernels())
        return kind

    def describe(self) -> dict[str, Any]:
        return {"kernels": self.generator.program.kernels, "weights": "fp32"}

    def disk_files(self) -> list[Path]:
        return [self.database()]


class SqliteSqlEngine(SqliteEngine):
    """onnx2sql in SQLite in pure SQL (JSON arrays, products walking one list and looking up the
    other's elements), from a database file of its own beside the benchmark's results."""

    name = "sqlite-sql"

    def kernels(self) -> str:
        return "sql"

    def database(self) -> Path:
        return self.model_dir / "bench" / "sqlite-sql.sqlite"


class PostgresEngine(GeneratorEngine):
    """onnx2sql in PostgreSQL (pure SQL, pgvector dot products): the model compiled into the
    database at `options.postgres_url`, or into a private server started for the run."""

    name = "postgres"

    def setup(self) -> str:
        from onnx2sql.runtime.postgres import PostgresDatabase, PostgresServer
        from onnx2sql.runtime.postgres_models import PostgresGenerator, compiled_program, model_schema

        self.server = None
        url = self.options.postgres_url
        if url is None:
            self.server = PostgresServer(self.model_dir / "bench" / "postgres")
            url = self.server.url
        with PostgresDatabase.connect(url) as db:
            kind = "load" if db.fetchall("SELECT 1 FROM pg_namespace WHERE nspname = %s",
                                         [model_schema(self.model_dir / "model.onnx")]) else "compile"
            # A changed model, or one compiled without pgvector where it is there now, compiles.
            program = compiled_program(db, self.model_dir / "model.onnx", progress=True, kernels="auto")
        self.generator = PostgresGenerator(self.model_dir, url, progress=True, kernels=program.kernels)
        return kind

    def describe(self) -> dict[str, Any]:
        return {"kernels": self.generator.program.kernels, "weights": "fp32"}

    def disk_files(self) -> list[Path]:
        return []  # the server's own files, shared with whatever else the database holds

    def close(self) -> None:
        super().close()
        if self.server is not None:
            self.server.stop()


class SparkEngine(GeneratorEngine):
    """onnx2sql in a local Spark (local[2], pure SQL), from the model folder's own folder of Parquet
    weights (MODEL_DIR/spark)."""

    name = "spark"

    def folder(self) -> Path:
        from onnx2sql.runtime.spark_models import default_spark_folder

        return default_spark_folder(self.model_dir)

    def setup(self) -> str:
        from onnx2sql.runtime.spark_models import META_FILE, SparkGenerator

        kind = "load" if (self.folder() / META_FILE).is_file() else "compile"
        self.generator = SparkGenerator(self.model_dir, self.folder(), progress=True)
        return kind

    def describe(self) -> dict[str, Any]:
        return {"kernels": "sql", "weights": "fp32"}

    def disk_files(self) -> list[Path]:
        return sorted(self.folder().glob("weights/*.parquet"))


class StepEngine(Engine):
    """An engine driven one step at a time from Python: the greedy loop and its timing live here."""

    @abstractmethod
    def step(self, ids: list[int], past: int) -> np.ndarray:
        """Feed `ids` after `past` cached positions; the last position's logits."""

    def reset(self) -> None:
        pass

    def generate(self, prompt_ids: list[int], new_tokens: int, on_token: OnToken) -> Run:
        self.reset()
        tokens: list[int] = []
        start = time.perf_counter()
        first_at = start
        ids, past = list(prompt_ids), 0
        for k in range(new_tokens):
            token = int(np.argmax(self.step(ids, past)))
            tokens.append(token)
            if k == 0:
                first_at = time.perf_counter()
            on_token(k + 1)
            if token in self.options.eos_ids:
                break
            ids, past = [token], past + len(ids)
        elapsed = time.perf_counter() - first_at
        decoded = len(tokens) - 1
        return Run(tokens, first_at - start, decoded / elapsed if decoded > 0 and elapsed > 0 else 0.0)


class OnnxRuntimeEngine(StepEngine):
    """The same ONNX file as DuckDB, present.* fed back as past_key_values.* each step."""
    name = "onnxruntime"

    def setup(self) -> str:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.options.threads
        self.session = ort.InferenceSession(str(self.model_dir / "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]
        # past_key_values.* inputs are [batch, kv_heads, past, head_dim] with fixed heads and head_dim.
        self.past_shapes = {i.name: (int(i.shape[1]), int(i.shape[3])) for i in self.session.get_inputs()
                            if i.name.startswith("past_key_values.")}
        return "load"

    def reset(self) -> None:
        self.past = {name: np.zeros((1, heads, 0, dim), np.float32) for name, (heads, dim) in self.past_shapes.items()}

    def step(self, ids: list[int], past: int) -> np.ndarray:
        return self.run_step(np.array([ids], np.int64), np.ones((1, past + len(ids)), np.int64))[0]

    def run_step(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Feed [batch, n] new tokens after the cached past (`mask`: [batch, past + n], 0 on padding);
        the last position's logits of each sequence."""
        from onnx2sql.runtime.batching import positions

        feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": positions(mask, ids.shape[1]), **self.past}
        out = dict(zip(self.outputs, self.session.run(self.outputs, feeds)))
        self.past = {k.replace("present.", "past_key_values."): v for k, v in out.items() if k.startswith("present.")}
        return out["logits"][:, -1]

    def generate_batch(self, prompts: list[list[int]], new_tokens: int) -> BatchRun:
        """The same batch as DuckDB's: prompts padded on the left and masked, stops per sequence."""
        from onnx2sql.runtime.batching import grown, left_padded

        ids, mask = left_padded(prompts)
        self.past = {name: np.zeros((len(prompts), heads, 0, dim), np.float32)
                     for name, (heads, dim) in self.past_shapes.items()}
        tokens: list[list[int]] = [[] for _ in prompts]
        done = [False] * len(prompts)
        start = time.perf_counter()
        first_at = start
        for k in range(new_tokens):
            chosen = np.argmax(self.run_step(ids, mask), axis=-1)
            if k == 0:
                first_at = time.perf_counter()
            for row, token in enumerate(chosen):
                if not done[row]:
                    tokens[row].append(int(token))
                    done[row] = int(token) in self.options.eos_ids
            if all(done):
                break
            ids, mask = chosen[:, None].astype(np.int64), grown(mask)
        elapsed = time.perf_counter() - first_at
        decoded = sum(len(t) - 1 for t in tokens)
        return BatchRun(tokens, first_at - start, decoded / elapsed if decoded > 0 and elapsed > 0 else 0.0)

    def disk_files(self) -> list[Path]:
        model = self.model_dir / "model.onnx"
        data = self.model_dir / "model.onnx_data"
        return [model, data] if data.exists() else [model]


class LlamaCppEngine(StepEngine):
    """llama.cpp (llama-cpp-python) on a GGUF holding the same weights as F32."""
    name = "llama.cpp"

    def gguf(self) -> str | None:
        return self.options.gguf

    def setup(self) -> str:
        from llama_cpp import Llama

        if not self.gguf():
            raise RuntimeError(f"no GGUF file was prepared for {self.name}")
        threads = self.options.threads
        self.llm = Llama(model_path=self.gguf(), n_ctx=self.options.context, n_batch=512, n_threads=threads,
                         n_threads_batch=threads, verbose=False)
        return "load"

    def reset(self) -> None:
        self.llm.reset()  # forget the cached prefix: every run prefills its whole prompt

    def step(self, ids: list[int], past: int) -> np.ndarray:
        self.llm.eval(ids)
        # Without logits_all only the batch's last position has logits: row 0 of llama.cpp's buffer.
        return np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.llm.n_vocab(),)).copy()

    def disk_files(self) -> list[Path]:
        return [Path(self.gguf() or "")]

    def close(self) -> None:
        self.llm.close()


class LlamaCppQ8Engine(LlamaCppEngine):
    """llama.cpp on the same weights quantized to Q8_0 by llama.cpp itself: int8 blocks of 32 with
    a float16 scale, activations quantized to int8 in the products (the like-for-like of int8 tiles)."""
    name = "llama.cpp-q8_0"
    precision = "int8"

    def gguf(self) -> str | None:
        return self.options.gguf_q8_0


ENGINES: dict[str, type[Engine]] = {e.name: e for e in (DuckDBEngine, DuckDBSqlEngine, DuckDBInt8Engine,
                                                        SqliteEngine, SqliteSqlEngine, PostgresEngine, SparkEngine,
                                                        OnnxRuntimeEngine, LlamaCppEngine, LlamaCppQ8Engine)}
