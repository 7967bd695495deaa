"""Text generation inside DuckDB: prefill and decode run the compiled program; the KV cache stays
in tables (present.* is renamed into past_key_values.* between steps); the next token is chosen
by SQL. Only token ids cross into Python."""
from __future__ import annotations

import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import duckdb
import numpy as np

from onnx2sql.api import DB_FILE, compile as compile_model, compiled_from, explain_database_error, \
    open_compiled_db, written_by_older_version
from onnx2sql.dialects import dialect_for, using
from onnx2sql.emit.dims import evaluate_dim, static_dim
from onnx2sql.emit.program import OUTPUT_ROWS_FROM, Program
from onnx2sql.emit.sql import quote_ident, render
from onnx2sql.errors import InputError, UsageError
from onnx2sql.runtime.batching import grown, left_padded, positions
from onnx2sql.runtime.kernel_mode import check_weight_format, requested_mode, resolve_weights
from onnx2sql.runtime.session import CountingConnection, DatabaseSession, RepeatingSession, Session
from onnx2sql.runtime.text import ModelFolder
from onnx2sql.sizes import parse_size
from onnx2sql.storage.folders import private_temp_dir, recover_interrupted_replace, remove_dead_owners, \
    remove_stale_staging, staging_dir

PAST_PREFIX, PRESENT_PREFIX = "past_key_values.", "present."
# With a memory limit below this many times the weights one region scans, ops run one at a time.
REGION_WEIGHT_SHARE = 2
SPILL_PREFIX = "onnx2sql-spill-"  # DuckDB's temp_directory, one per Generator, in the temp folder


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0  # 0: greedy
    top_k: int = 0  # 0: no limit
    top_p: float = 1.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def check(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise UsageError(f"--temperature must be a number >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise UsageError(f"--top-k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise UsageError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.seed is not None and self.seed < 0:
            raise UsageError(f"--seed must be >= 0, got {self.seed}")


@dataclass
class Generation:
    prompt_ids: list[int]
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    ttft_s: float = 0.0
    tokens_per_s: float = 0.0
    finish_reason: str = "length"
    # SQL statements the last step ran, from loading its inputs to choosing its token (a decode
    # step's, when there was one).
    statements_per_step: int = 0

    def as_json(self) -> dict:
        return {"prompt_ids": self.prompt_ids, "token_ids": self.token_ids, "text": self.text,
                "ttft_s": self.ttft_s, "tokens_per_s": self.tokens_per_s, "finish_reason": self.finish_reason,
                "statements_per_step": self.statements_per_step}


@dataclass
class Batch:
    """Sequences generated together, with the batch's figures."""
    generations: list[Generation]
    ttft_s: float  # until every sequence had its first token (the prefill of the whole batch)
    decode_tokens_per_s: float  # tokens after the first, of all sequences, per second of decoding
    statements_per_step: int  # SQL statements in the last step, for the whole batch


def default_db(model_dir: Path) -> Path:
    return model_dir / "sql" / "model.duckdb"


class Generator:
    """A model folder plus its compiled database, ready to generate."""

    # What the database raises (a failed clean-up after a step's own error is ignored).
    database_errors: tuple[type[Exception], ...] = (duckdb.Error,)

    def __init__(self, model_dir: str | Path, db: str | Path | None = None, memory_limit: str | None = None,
                 progress: bool = True, kernels: str | None = None, weights: str | None = None):
        """`kernels` ("auto", "native", "sql"; None: $ONNX2SQL_KERNELS if set, else whatever the
        database was compiled with, or auto when compiling) is the mode of the compiled program,
        `weights` ("fp32", "int8"; None: the database's, or fp32 when compiling) its weight format;
        the model folder's own database is compiled again in another mode or format when one is
        asked for, a --db of another one is refused."""
        self.folder = ModelFolder.open(model_dir)
        self.model = self.folder.path / "model.onnx"
        self.db_path = Path(db) if db else default_db(self.folder.path)
        # The model folder's own database is onnx2sql's to replace; a --db the user named is not.
        self.own_db = self.db_path.resolve() == default_db(self.folder.path).resolve()
        requested = requested_mode(kernels)
        if weights is not None:
            check_weight_format(weights)
        self.weights = weights
        # int8 decides the kernels (native); fp32 leaves them to --kernels, or to the database's.
        self.kernels = resolve_weights(weights, requested)[0] if weights == "int8" or requested is not None else None
        config: dict[str, str] = {}
        # DuckDB takes a byte count; checked here so a typo names the flag.
        limit_bytes = parse_size(memory_limit, "--memory-limit") if memory_limit else None
        if limit_bytes is not None:
            config["memory_limit"] = f"{limit_bytes}b"
        self.memory_limited = limit_bytes is not None
        self._prepare_database(progress)
        self.spill_dir: Path | None = None
        self.con: duckdb.DuckDBPyConnection | None = None
        try:
            remove_dead_owners(Path(tempfile.gettempdir()), SPILL_PREFIX)  # of generates that were killed
            self.spill_dir = private_temp_dir(SPILL_PREFIX)
            config["temp_directory"] = str(self.spill_dir)
            con, self.program = self._open_database(config, progress)
            self.con = CountingConnection(con)
            if limit_bytes is not None and limit_bytes < REGION_WEIGHT_SHARE * self.program.largest_region_weights():
                # A region holds the scans and results of many ops at once; when one region's
                # weights would take half of the memory or more, each op runs alone so DuckDB
                # streams one product's weights at a time.
                self.program.finish(region_size=1)
            self._prepare_program()
        except BaseException:
            self.close()  # nothing is left behind, not even an empty spill folder
            raise

    def _prepare_database(self, progress: bool) -> None:
        """Finish what an interrupted run left, then compile if there is no database yet."""
        if self.own_db:
            recover_interrupted_replace(self.db_path.parent)
        remove_stale_staging(self.db_path.parent if self.own_db else self.db_path)
        if self.db_path.is_dir():
            raise InputError(f"--db {str(self.db_path)!r} is a folder; name a database file")
        if self.own_db and self.db_path.exists() and written_by_older_version(self.db_path):
            self.db_path.unlink()  # the model folder's own database: compiled again below
        if not self.db_path.exists():
            compile_database(self.model, self.db_path, progress, own_folder=self.own_db, kernels=self.kernels,
                             weights=self.weights)

    def _open_database(self, config: dict[str, str], progress: bool):
        """The database and its program; the model folder's own database is compiled again when
        model.onnx changed or another kernel mode is asked for, while a --db compiled from another
        model or in another mode is refused."""
        con, program = open_compiled_db(self.db_path, config)
        try:
            current = compiled_from(con, self.model, self.db_path)
        except BaseException:
            con.close()
            raise
        same_mode = self.kernels is None or program.kernels == self.kernels
        same_weights = self.weights is None or program.weight_format == self.weights
        if current and same_mode and same_weights:
            return con, program
        con.close()
        if not self.own_db and not current:
            raise InputError(f"database {str(self.db_path)!r} was compiled from another model than "
                             f"{str(self.model)!r}; compile again or pass another --db")
        if not self.own_db and not same_mode:
            raise InputError(f"{str(self.db_path)!r} was compiled with --kernels {program.kernels}, not "
                             f"{self.kernels}: name another --db or leave --kernels out")
        if not self.own_db:
            raise InputError(f"{str(self.db_path)!r} was compiled with --weights {program.weight_format}, not "
                             f"{self.weights}: name another --db or leave --weights out")
        compile_database(self.model, self.db_path, progress, own_folder=True, kernels=self.kernels,
                         weights=self.weights)
        return open_compiled_db(self.db_path, config)

    def _new_session(self) -> Session:
        return RepeatingSession(self.con, self.program)

    def _prepare_program(self) -> None:
        self.session = self._new_session()
        self.dialect = dialect_for(self.program.backend)
        pairs = _present_to_past(self.program)
        tables = {s.name: s.table for s in self.program.inputs} | {s.name: s.table for s in self.program.outputs}
        # Worked out once: which present table becomes which past table after each step. A cache
        # the program grows in place (present and past share a table) needs no rename.
        self.cache_renames = [(tables[present], tables[past]) for present, past in pairs.items()
                              if tables[present] != tables[past]]
        self.past_inputs = frozenset(pairs.values())
        self.cache_tables = [tables[past] for past in pairs.values()]  # after _promote_presents
        logits = next((o for o in self.program.outputs if o.name == "logits"), None)
        if logits is None:
            raise InputError(f"{str(self.folder.path)!r}: the model has no 'logits' output")
        self.logits = logits
        with using(self.dialect):
            table = quote_ident(logits.table)
            self.greedy_sql = self.dialect.finish(render("generate/greedy.sql.j2", N=self.program.chunk, logits=table))
            self.sample_sql = self.dialect.finish(render("generate/sample.sql.j2", N=self.program.chunk, logits=table))
        self.vocab_size = static_dim(logits.shape[-1])

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None
        if self.spill_dir is not None:
            shutil.rmtree(self.spill_dir, ignore_errors=True)
            self.spill_dir = None

    def __enter__(self) -> "Generator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def generate(self, prompt: str, max_new_tokens: int = 32, sampling: Sampling = Sampling(), chat: bool = False,
                 on_text: Callable[[str], None] | None = None) -> Generation:
        return self.generate_ids(self.encode(prompt, chat), max_new_tokens, sampling, on_text)

    def encode(self, prompt: str, chat: bool = False) -> list[int]:
        if not prompt:
            raise InputError("the prompt is empty")
        ids = self.folder.encode(prompt, chat=chat)
        if not ids:
            raise InputError("the prompt encodes to no tokens")
        return ids

    def generate_ids(self, prompt_ids: list[int], max_new_tokens: int, sampling: Sampling = Sampling(),
                     on_text: Callable[[str], None] | None = None,
                     on_logits: Callable[[np.ndarray], None] | None = None) -> Generation:
        """Generate from token ids. `on_text` receives the text as it grows; `on_logits`, for
        checking, each step's last logits row read back from the database (the loop itself never
        reads logits into Python)."""
        shown = ""

        def stream(results: list[Generation]) -> None:
            nonlocal shown
            text = self.folder.decode(results[0].token_ids)
            on_text(text[len(shown):])
            shown = text

        batch = self.generate_batch_ids([prompt_ids], max_new_tokens, sampling,
                                        on_step=stream if on_text is not None else None,
                                        on_logits=(lambda rows: on_logits(rows[0])) if on_logits is not None else None)
        return batch.generations[0]

    def generate_batch(self, prompts: Sequence[str], max_new_tokens: int | Sequence[int] = 32,
                       sampling: Sampling = Sampling(), chat: bool = False,
                       seeds: Sequence[int | None] | None = None) -> "Batch":
        """Generate from several prompts at once, in the same statements; see generate_batch_ids."""
        return self.generate_batch_ids([self.encode(p, chat) for p in prompts], max_new_tokens, sampling, seeds)

    def generate_batch_ids(self, prompts: Sequence[list[int]], max_new_tokens: int | Sequence[int],
                           sampling: Sampling = Sampling(), seeds: Sequence[int | None] | None = None,
                           on_step: Callable[[list[Generation]], None] | None = None,
                           on_logits: Callable[[list[np.ndarray | None]], None] | None = None) -> "Batch":
        """Generate for several sequences in the same statements: sequence k is batch row k. Prompts
        are padded on the left and the padding masked, so a sequence's tokens are those it gets
        alone. Each sequence stops at its own end-of-text token or token limit (`max_new_tokens`,
        one for all or one each) and samples from its own generator (`seeds`, one each; default
        the sampling's seed for all). Sequences that have stopped leave the batch once they are half
        of its rows, so that later steps cost less."""
        sampling.check()
        limits = self._check_batch(prompts, max_new_tokens, seeds)
        rngs = [np.random.default_rng(seed) for seed in (seeds if seeds is not None else [sampling.seed] * len(prompts))]
        results = [Generation(list(p)) for p in prompts]
        finished_at: list[float | None] = [None] * len(prompts)
        rows = list(range(len(prompts)))  # the sequence in each batch row
        ids, mask = left_padded(prompts)
        start = time.perf_counter()
        decode_start, past, statements = start, 0, 0
        try:
            for step in range(max(limits)):
                counted = self.con.statements
                self._run_step(ids, mask, past, first=step == 0)
                self._promote_presents()  # the next step's cache; harmless after the last step
                tokens = self._choose(ids.shape[1] - 1, sampling,
                                      [rngs[k] if finished_at[k] is None else None for k in rows])
                statements = self.con.statements - counted
                if on_logits is not None:
                    on_logits(self._batch_logits(rows, len(prompts), ids.shape[1]))
                now = time.perf_counter()
                if step == 0:
                    decode_start = now
                for k, token in zip(rows, tokens):
                    if finished_at[k] is None:
                        results[k].token_ids.append(token)
                        if token in self.folder.eos_ids:
                            results[k].finish_reason = "eos"
                        if token in self.folder.eos_ids or len(results[k].token_ids) >= limits[k]:
                            finished_at[k] = now
                if on_step is not None:
                    on_step(results)
                if all(at is not None for at in finished_at):
                    break
                past += ids.shape[1]
                ids, mask = np.array(tokens, dtype=np.int64)[:, None], grown(mask)
                keep = [row for row, k in enumerate(rows) if finished_at[k] is None]
                if len(keep) <= len(rows) // 2:
                    # Half the rows are done: they leave the batch, which makes later steps cheaper.
                    self._keep_cache_rows(keep)
                    rows, ids, mask = [rows[row] for row in keep], ids[keep], mask[keep]
        except duckdb.Error as exc:
            explain_database_error(self.db_path, exc)
            raise
        finally:
            self._drop_temporaries()
        ttft = decode_start - start
        for result, at in zip(results, finished_at):
            decoded, elapsed = len(result.token_ids) - 1, (at or decode_start) - decode_start
            result.tokens_per_s = decoded / elapsed if decoded > 0 and elapsed > 0 else 0.0
            result.ttft_s, result.statements_per_step = ttft, statements
            result.text = self.folder.decode(result.token_ids)
        decoded = sum(len(r.token_ids) - 1 for r in results)
        elapsed = max(at or decode_start for at in finished_at) - decode_start
        return Batch(results, ttft, decoded / elapsed if decoded > 0 and elapsed > 0 else 0.0, statements)

    def _check_batch(self, prompts: Sequence[list[int]], max_new_tokens: int | Sequence[int],
                     seeds: Sequence[int | None] | None) -> list[int]:
        """Each sequence's token limit, once the prompts, limits and seeds are known to be usable."""
        if not prompts:
            raise UsageError("no prompts to generate from")
        limits = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
        if len(limits) != len(prompts) or (seeds is not None and len(seeds) != len(prompts)):
            raise UsageError(f"{len(prompts)} prompts need as many token limits and seeds, got {len(limits)} limits"
                             f"{'' if seeds is None else f' and {len(seeds)} seeds'}")
        for limit in limits:
            if limit < 1:
                raise UsageError(f"--max-new-tokens must be at least 1, got {limit}")
        for seed in seeds or []:
            if seed is not None and seed < 0:
                raise UsageError(f"--seed must be >= 0, got {seed}")
        for ids in prompts:
            if not ids:
                raise InputError("a prompt has no tokens")
            self._check_token_ids(ids)
        width, context = max(len(p) for p in prompts), self.folder.context_length
        if width + max(limits) > context:
            which = "prompt" if len(prompts) == 1 else "the longest prompt"
            raise InputError(f"{which} ({width} tokens) plus {max(limits)} new tokens exceeds the "
                             f"model's context of {context} tokens")
        return limits

    def _check_token_ids(self, ids: list[int]) -> None:
        """A token id the embedding has no row for would silently select nothing in SQL."""
        if self.vocab_size is None:
            return
        outside = [t for t in ids if not 0 <= t < self.vocab_size]
        if outside:
            raise InputError(f"token id {outside[0]} is outside the model's vocabulary of "
                             f"{self.vocab_size} (ids 0 to {self.vocab_size - 1})")

    def _drop_temporaries(self) -> None:
        try:
            self.session.drop_temporaries()
        except self.database_errors:
            pass  # the step's own error, already raised, says more

    def _run_step(self, ids: np.ndarray, mask: np.ndarray, past: int, first: bool) -> None:
        """One step for every sequence: `ids` is [batch, n] new tokens, `mask` [batch, past + n]
        (0 on padding)."""
        batch, n = ids.shape
        arrays: dict[str, np.ndarray] = {"input_ids": ids, "attention_mask": mask, "position_ids": positions(mask, n)}
        for spec in self.program.inputs:
            if spec.name.startswith(PAST_PREFIX):
                # Only the shape is read: the cache itself is already in its table.
                heads, head_dim = int(spec.shape[1]), int(spec.shape[3])
                arrays[spec.name] = np.broadcast_to(np.float32(0), (batch, heads, past, head_dim))
        self.session.bind(arrays)
        # Only the last position's logits are read: the head skips the prompt's other rows.
        self.session.set_symbols({OUTPUT_ROWS_FROM: n - 1})
        self.session.load_inputs(arrays, skip=frozenset() if first else self.past_inputs)
        # A one-token step's intermediates are a few kilobytes: they stay until the next step's
        # CREATE OR REPLACE, which costs less than the ~1,500 DROPs (about 12% of a step). Under a
        # memory limit they are dropped: each table pins storage blocks of its own.
        self.session.execute(drop=n > 1 or self.memory_limited)

    def _batch_logits(self, rows: list[int], count: int, seq: int) -> list[np.ndarray | None]:
        """Each sequence's last logits row (None for a sequence that has left the batch)."""
        found: list[np.ndarray | None] = [None] * count
        for row, k in enumerate(rows):
            found[k] = self._last_logits(row, seq)
        return found

    def _last_logits(self, row: int, seq: int) -> np.ndarray:
        vocab = evaluate_dim(self.logits.shape[-1], self.session.bindings)
        return self.session.read_tensor(self.logits.table, len(self.logits.shape), (vocab,),
                                        np.dtype(self.logits.dtype), where=f"i0 = {int(row)} AND i1 = {int(seq - 1)}")

    def _choose(self, position: int, sampling: Sampling, rngs: list[np.random.Generator | None]) -> list[int]:
        """Every sequence's next token, in one statement; a sequence whose generator is None has
        stopped, and draws nothing."""
        if sampling.greedy:
            rows = self.con.execute(self.greedy_sql, {"pos": position}).fetchall()
        else:
            rows = self.con.execute(self.sample_sql, {
                "pos": position, "temperature": float(sampling.temperature), "top_k": int(sampling.top_k),
                "top_p": float(sampling.top_p), "u": [float(r.random()) if r is not None else 0.0 for r in rngs],
            }).fetchall()
        if [int(r[0]) for r in rows] != list(range(len(rngs))):
            raise InputError(f"the logits of {len(rngs)} sequences came out as {len(rows)} rows: does an index input "
                             "select rows that do not exist?")
        return [int(r[1]) for r in rows]

    def _keep_cache_rows(self, keep: list[int]) -> None:
        """Only batch rows `keep` stay in the KV cache, renumbered 0, 1, ... in that order."""
        renumber = " ".join(f"WHEN {int(old)} THEN {new}" for new, old in enumerate(keep))
        for table in self.cache_tables:
            name = self.dialect.temp_table(quote_ident(table))
            self.con.execute(f"DELETE FROM {name} WHERE i0 NOT IN ({', '.join(str(int(r)) for r in keep)})")
            self.con.execute(f"UPDATE {name} SET i0 = CASE i0 {renumber} END")

    def _promote_presents(self) -> None:
        """present.* tables become the next step's past_key_values.* tables, renamed in place."""
        for present, past in self.cache_renames:
            self.con.execute(f"DROP TABLE IF EXISTS {self.dialect.temp_table(quote_ident(past))}")
            self.con.execute(f"ALTER TABLE {self.dialect.temp_table(quote_ident(present))} RENAME TO {quote_ident(past)}")


class DatabaseGenerator(Generator):
    """A Generator whose model is compiled into, and runs in, a database other than DuckDB; each
    step runs in a session of `session_class`, whose errors come out as DatabaseError."""

    session_class: type[DatabaseSession]

    def _attach(self, database, compiled: Callable[[], Program], what: str) -> None:
        """Take the program `compiled()` finds or compiles in the open `database` (its errors named
        after `what`) and prepare generation there; the database is closed when that fails."""
        self.memory_limited = False
        self.spill_dir = None
        self.con = None
        try:
            with self.session_class.errors(what):
                self.program = compiled()
            self.con = CountingConnection(database)  # type: ignore[arg-type]
            self._prepare_program()
        except BaseException:
            database.close()
            raise

    def _new_session(self) -> DatabaseSession:
        return self.session_class(self.con, self.program)

    def _choose(self, position: int, sampling: Sampling, rngs: list[np.random.Generator | None]) -> list[int]:
        with self.session_class.errors(f"{self.session_class.display} refused choosing the next token"):
            return super()._choose(position, sampling, rngs)

    def _keep_cache_rows(self, keep: list[int]) -> None:
        with self.session_class.errors(self.session_class.display):
            super()._keep_cache_rows(keep)


def _present_to_past(program: Program) -> dict[str, str]:
    inputs = {s.name for s in program.inputs}
    for required in ("input_ids", "attention_mask", "position_ids"):
        if required not in inputs:
            raise InputError(f"the model has no {required!r} input: is it an Optimum text-generation-with-past export?")
    pairs = {}
    for out in program.outputs:
        if out.name.startswith(PRESENT_PREFIX):
            past = PAST_PREFIX + out.name[len(PRESENT_PREFIX):]
            if past not in inputs:
                raise InputError(f"output {out.name!r} has no matching input {past!r}")
            pairs[out.name] = past
    return pairs


def compile_database(model: Path, db_path: Path, progress: bool, own_folder: bool,
                     kernels: str | None = None, weights: str | None = None) -> None:
    """Compile into the model's sql/ folder, or next to a user's --db path and move it into place."""
    if own_folder:
        compile_model(model, db_path.parent, progress=progress, kernels=kernels, weights=weights)
        return
    if db_path.parent.exists() and not db_path.parent.is_dir():
        raise InputError(f"cannot write the database --db {str(db_path)!r}: {str(db_path.parent)!r} is a file, "
                         "not a folder")
    try:
        staging = staging_dir(db_path)
    except OSError as exc:
        raise InputError(f"cannot write the database --db {str(db_path)!r}: {exc.strerror} "
                         f"({exc.filename})") from exc
    try:
        compile_model(model, staging / "out", progress=progress, kernels=kernels, weights=weights)
        (staging / "out" / "program.sql").rename(db_path.with_suffix(".program.sql"))
        (staging / "out" / DB_FILE).rename(db_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
