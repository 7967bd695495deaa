#!/usr/bin/env python3
"""Build build/onnx2sql_kernels.duckdb_extension for the installed duckdb, and the SQLite extension
build/onnx2sql_sqlite.so over the same kernels.

Steps: find the installed duckdb version and platform; fetch duckdb.h and duckdb_extension.h from that
version's source distribution on PyPI into build/duckdb-headers/<version>/ (once); compile the kernels
and the binding with the system C compiler against the C extension API version those headers declare;
append the metadata footer DuckDB requires of a loadable extension. Does nothing when the output is
up to date (same sources, compiler, duckdb version). The SQLite extension needs sqlite3ext.h from the
system (Debian: libsqlite3-dev).

usage: python kernels/build.py [--force] [--quiet] [--build-dir DIR] [--only {duckdb,sqlite}]
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

KERNELS_DIR = Path(__file__).resolve().parent
REPO_ROOT = KERNELS_DIR.parent
BUILD_DIR = REPO_ROOT / "build"
EXTENSION_NAME = "onnx2sql_kernels"
EXTENSION_VERSION = "v0.1.0"
SOURCES = ("onnx2sql_kernels.c", "duckdb_binding.c")
LOCAL_HEADERS = ("onnx2sql_kernels.h",)
DUCKDB_HEADERS = ("duckdb.h", "duckdb_extension.h")
SQLITE_EXTENSION_NAME = "onnx2sql_sqlite"
SQLITE_SOURCES = ("onnx2sql_kernels.c", "sqlite_binding.c")
# Baseline ISA on purpose: the AVX2 kernels carry their own target attribute and are picked at load time.
CFLAGS = ("-O3", "-fPIC", "-shared", "-std=c11", "-fvisibility=hidden", "-Wall", "-Wextra")


class BuildError(RuntimeError):
    """The extension could not be built; the message says what is missing."""


@dataclass(frozen=True)
class Target:
    """What the extension is built for; any change means a rebuild."""

    duckdb_version: str
    platform: str
    c_api: tuple[int, int, int]
    compiler: tuple[str, ...]


def output_path(build_dir: Path = BUILD_DIR) -> Path:
    return build_dir / f"{EXTENSION_NAME}.duckdb_extension"


def installed_duckdb() -> tuple[str, str]:
    """(version, platform) of the duckdb Python package this interpreter imports."""
    try:
        import duckdb
    except ImportError as exc:
        raise BuildError(f"the duckdb Python package is not installed for {sys.executable}") from exc
    con = duckdb.connect()
    try:
        platform = con.execute("PRAGMA platform").fetchone()[0]
    finally:
        con.close()
    return duckdb.__version__, platform


def find_compiler() -> tuple[str, ...]:
    """$CC if set, else cc, else gcc, else clang."""
    if os.environ.get("CC"):
        command = tuple(shlex.split(os.environ["CC"]))
        if shutil.which(command[0]):
            return command
        raise BuildError(f"the C compiler named by $CC ({os.environ['CC']!r}) was not found")
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return (path,)
    raise BuildError("no C compiler found (looked for $CC, cc, gcc, clang); install one, "
                     "e.g. `apt-get install gcc`, then run `make kernels`")


# ------------------------------------------------------------------ DuckDB headers

def headers_dir(version: str, build_dir: Path) -> Path:
    return build_dir / "duckdb-headers" / version


def fetch_headers(version: str, build_dir: Path, quiet: bool) -> Path:
    """build/duckdb-headers/<version>/ holding duckdb.h and duckdb_extension.h, downloaded if missing."""
    target = headers_dir(version, build_dir)
    if all((target / name).is_file() for name in DUCKDB_HEADERS):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        sdist = download_sdist(version, Path(tmp), quiet)
        staging = Path(tmp) / "include"
        extract_headers(sdist, version, staging)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


def download_sdist(version: str, dest: Path, quiet: bool) -> Path:
    """The duckdb==version source distribution from the package index, fetched with pip.

    Only duckdb itself is taken as source; pip prepares its metadata in an isolated environment with
    wheels of its build requirements, so nothing is installed into this environment."""
    if not quiet:
        print(f"fetching the duckdb {version} source distribution for its C headers ...", file=sys.stderr)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", "duckdb",
               "-d", str(dest), f"duckdb=={version}"]
    result = subprocess.run(command, capture_output=True, text=True)
    found = sorted(dest.glob("duckdb-*.tar.gz"))
    if result.returncode != 0 or not found:
        lines = (result.stdout + result.stderr).strip().splitlines()[-15:]
        tail = "\n".join(line if len(line) <= 300 else line[:300] + " ..." for line in lines)
        raise BuildError(
            f"could not download the duckdb {version} source distribution from the package index "
            f"(needed for duckdb.h and duckdb_extension.h).\ncommand: {shlex.join(command)}\n{tail}")
    return found[0]


def extract_headers(sdist: Path, version: str, dest: Path) -> None:
    dest.mkdir(parents=True)
    with tarfile.open(sdist) as tar:
        for name in DUCKDB_HEADERS:
            member = f"duckdb-{version}/external/duckdb/src/include/{name}"
            try:
                source = tar.extractfile(member)
            except KeyError:
                source = None
            if source is None:
                raise BuildError(f"{sdist.name} has no {member}")
            (dest / name).write_bytes(source.read())


def c_api_version(extension_header: Path) -> tuple[int, int, int]:
    """The C extension API version the header declares by default, i.e. the one this duckdb provides."""
    text = extension_header.read_text()
    parts = []
    for part in ("MAJOR", "MINOR", "PATCH"):
        match = re.search(rf"#define DUCKDB_EXTENSION_API_VERSION_{part} (\d+)", text)
        if not match:
            raise BuildError(f"{extension_header} declares no DUCKDB_EXTENSION_API_VERSION_{part}")
        parts.append(int(match.group(1)))
    if parts[0] != 1:
        raise BuildError(f"{extension_header} declares C extension API v{parts[0]}; this build needs v1")
    return parts[0], parts[1], parts[2]


# ------------------------------------------------------------------ compile and footer

def compile_extension(target: Target, include_dir: Path, out: Path) -> None:
    major, minor, patch = target.c_api
    defines = [f"-DDUCKDB_EXTENSION_API_VERSION_MAJOR={major}", f"-DDUCKDB_EXTENSION_API_VERSION_MINOR={minor}",
               f"-DDUCKDB_EXTENSION_API_VERSION_PATCH={patch}"]
    command = [*target.compiler, *CFLAGS, *defines, f"-I{include_dir}", f"-I{KERNELS_DIR}",
               *(str(KERNELS_DIR / s) for s in SOURCES), "-o", str(out)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"compiling the kernels failed:\n{shlex.join(command)}\n{result.stderr.strip()}")


def metadata_footer(platform: str, c_api: tuple[int, int, int]) -> bytes:
    """The 534 bytes DuckDB reads at the end of an extension: a WebAssembly custom-section header named
    duckdb_signature, eight 32-byte fields in reverse order, and an empty (unsigned) 256-byte signature."""
    fields = [b"4", platform.encode(), "v{}.{}.{}".format(*c_api).encode(), EXTENSION_VERSION.encode(),
              b"C_STRUCT", b"", b"", b""]
    if any(len(f) > 32 for f in fields):
        raise BuildError(f"metadata field longer than 32 bytes: {fields}")
    header = b"\x00" + bytes([147, 4, 16]) + b"duckdb_signature" + bytes([128, 4])
    return header + b"".join(f.ljust(32, b"\x00") for f in reversed(fields)) + bytes(256)


def build_key(target: Target) -> str:
    """Hash of everything the output depends on."""
    return _sources_key(json.dumps(asdict(target), sort_keys=True), SOURCES)


def _sources_key(target: str, sources: tuple[str, ...]) -> str:
    """Hash of what an extension is built for (`target`), the flags, its sources and this script."""
    digest = hashlib.sha256(target.encode())
    digest.update(" ".join(CFLAGS).encode())
    for name in (*sources, *LOCAL_HEADERS, "build.py"):
        digest.update((KERNELS_DIR / name).read_bytes())
    return digest.hexdigest()


@contextlib.contextmanager
def build_lock(build_dir: Path) -> Iterator[None]:
    """Serialises concurrent builds (two test runs, make and a test) on Unix."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(build_dir / f"{EXTENSION_NAME}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _up_to_date(out: Path, stamp: Path, key: str) -> bool:
    """Whether `out` was built from what `key` hashes (its stamp file holds the key)."""
    return out.is_file() and stamp.is_file() and stamp.read_text() == key


def build(build_dir: Path = BUILD_DIR, force: bool = False, quiet: bool = True) -> Path:
    """Builds the extension if it is missing or stale; returns its path."""
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    out = output_path(build_dir)
    stamp = build_dir / f"{EXTENSION_NAME}.stamp"
    with build_lock(build_dir):
        version, platform = installed_duckdb()
        compiler = find_compiler()
        include_dir = fetch_headers(version, build_dir, quiet)
        target = Target(version, platform, c_api_version(include_dir / "duckdb_extension.h"), compiler)
        key = build_key(target)
        if not force and _up_to_date(out, stamp, key):
            return out
        # Written beside the output and renamed over it: a reader never sees a half-written file.
        partial = out.with_name(out.name + ".partial")
        compile_extension(target, include_dir, partial)
        with open(partial, "ab") as fh:
            fh.write(metadata_footer(platform, target.c_api))
        os.replace(partial, out)
        stamp.write_text(key)
        if not quiet:
            print(f"built {out} (duckdb {version}, C API v{'.'.join(map(str, target.c_api))}, {platform})",
                  file=sys.stderr)
    return out


# ------------------------------------------------------------------ the SQLite extension

def sqlite_output_path(build_dir: Path = BUILD_DIR) -> Path:
    return build_dir / f"{SQLITE_EXTENSION_NAME}{'.dylib' if sys.platform == 'darwin' else '.so'}"


def build_sqlite(build_dir: Path = BUILD_DIR, force: bool = False, quiet: bool = True) -> Path:
    """Builds the SQLite extension if it is missing or stale; returns its path."""
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    out = sqlite_output_path(build_dir)
    stamp = build_dir / f"{SQLITE_EXTENSION_NAME}.stamp"
    with build_lock(build_dir):
        compiler = find_compiler()
        key = _sources_key(" ".join(compiler), SQLITE_SOURCES)
        if not force and _up_to_date(out, stamp, key):
            return out
        partial = out.with_name(out.name + ".partial")
        command = [*compiler, *CFLAGS, f"-I{KERNELS_DIR}", *(str(KERNELS_DIR / s) for s in SQLITE_SOURCES),
                   "-lm", "-o", str(partial)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            hint = ("\nsqlite3ext.h is missing: install SQLite's headers (apt-get install libsqlite3-dev)"
                    if "sqlite3ext.h" in result.stderr else "")
            raise BuildError(f"compiling the SQLite extension failed:\n{shlex.join(command)}\n"
                             f"{result.stderr.strip()}{hint}")
        os.replace(partial, out)
        stamp.write_text(key)
        if not quiet:
            print(f"built {out}", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    parser.add_argument("--quiet", action="store_true", help="print only errors")
    parser.add_argument("--build-dir", type=Path, default=BUILD_DIR)
    parser.add_argument("--only", choices=("duckdb", "sqlite"), default=None, help="build one extension")
    args = parser.parse_args(argv)
    builders = {"duckdb": build, "sqlite": build_sqlite}
    failed = 0
    for name, builder in builders.items():
        if args.only not in (None, name):
            continue
        try:
            out = builder(args.build_dir, force=args.force, quiet=args.quiet)
        except BuildError as exc:
            print(f"error ({name} extension): {exc}", file=sys.stderr)
            failed += 1
            continue
        if not args.quiet:
            print(out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
