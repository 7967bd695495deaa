"""Memory for the benchmark: sizes, peak resident memory of a process, the machine's memory
bandwidth, and a hard memory cap through a Linux cgroup (v1 or v2)."""
from __future__ import annotations

import os
import resource
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onnx2sql.sizes import parse_size  # noqa: F401 - re-exported for the bench

CGROUP_ROOT = Path("/sys/fs/cgroup")
def format_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far: VmHWM, the high-water mark of this program's
    own address space (ru_maxrss would carry over the parent's peak through fork and exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def total_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def evict_from_page_cache(paths: list[Path]) -> None:
    """Drop these files' cached pages, so that a capped run pays (and is charged) for reading them
    rather than finding them cached on another cgroup's account."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def measure_bandwidth(megabytes: int = 512, repeats: int = 5) -> dict[str, float]:
    """Copy bandwidth in bytes/s (read + write, as STREAM counts it), one thread and one thread per
    core; the best of `repeats`. numpy's copy releases the GIL, so threads run in parallel."""
    src = np.ones(megabytes * 2**20 // 4, dtype=np.float32)
    dst = np.empty_like(src)
    threads = os.cpu_count() or 1
    one = _best_copy_rate(src, dst, 1, repeats)
    many = _best_copy_rate(src, dst, threads, repeats) if threads > 1 else one
    return {"copy_bytes_per_s_1_thread": one, f"copy_bytes_per_s_{threads}_threads": many,
            "limit_bytes_per_s": max(one, many), "array_bytes": float(src.nbytes)}


def _best_copy_rate(src: np.ndarray, dst: np.ndarray, threads: int, repeats: int) -> float:
    parts = list(zip(np.array_split(src, threads), np.array_split(dst, threads)))
    best = float("inf")
    for _ in range(repeats):
        workers = [threading.Thread(target=np.copyto, args=(d, s)) for s, d in parts]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        best = min(best, time.perf_counter() - start)
    return 2 * src.nbytes / best


@dataclass
class CgroupCap:
    """A fresh memory cgroup limited to `limit_bytes`; a process joins it with `join(pid)`."""
    path: Path
    version: int
    limit_bytes: int

    @staticmethod
    def create(name: str, limit_bytes: int) -> "CgroupCap":
        """Raises CapUnavailable with the reason when no cap can be enforced here."""
        version, parent = _memory_cgroup_parent()
        path = parent / name
        try:
            path.mkdir()
            cap = CgroupCap(path, version, limit_bytes)
            cap._write_limit()
        except OSError as exc:
            _rmdir_quietly(path)
            raise CapUnavailable(f"cannot create a memory cgroup under {parent}: {exc}") from exc
        return cap

    def _write_limit(self) -> None:
        if self.version == 1:
            (self.path / "memory.limit_in_bytes").write_text(str(self.limit_bytes))
            swap = self.path / "memory.memsw.limit_in_bytes"
            if swap.exists():  # memory + swap: with swap the cap would otherwise only slow the process
                swap.write_text(str(self.limit_bytes))
        else:
            (self.path / "memory.max").write_text(str(self.limit_bytes))
            swap = self.path / "memory.swap.max"
            if swap.exists():
                swap.write_text("0")

    def join(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def oom_kills(self) -> int:
        name, key = ("memory.oom_control", "oom_kill") if self.version == 1 else ("memory.events", "oom_kill")
        return _read_key(self.path / name, key)

    def peak_usage_bytes(self) -> int | None:
        """Peak memory charged to the group (resident memory plus its page cache)."""
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        file = self.path / name
        return int(file.read_text()) if file.exists() else None

    def remove(self) -> None:
        _rmdir_quietly(self.path)


class CapUnavailable(Exception):
    """No hard memory cap can be enforced on this machine (not root, no memory controller, ...)."""


def _memory_cgroup_parent() -> tuple[int, Path]:
    """Where to create a capped group: inside this process's own memory cgroup, so that every
    limit above us still applies."""
    if os.geteuid() != 0:
        raise CapUnavailable("the memory cap needs root to create a cgroup (running as uid "
                             f"{os.geteuid()}); the capped runs cannot be enforced")
    own = _own_cgroups()
    v1 = CGROUP_ROOT / "memory"
    if (v1 / "memory.limit_in_bytes").exists():
        return 1, v1 / own.get("memory", "/").lstrip("/")
    controllers = CGROUP_ROOT / "cgroup.controllers"
    if controllers.exists() and "memory" in controllers.read_text().split():
        return 2, CGROUP_ROOT / own.get("", "/").lstrip("/")
    raise CapUnavailable(f"no cgroup memory controller is mounted under {CGROUP_ROOT}")


def _own_cgroups() -> dict[str, str]:
    """controller -> this process's cgroup path, from /proc/self/cgroup ('' is the v2 hierarchy)."""
    groups: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            groups[controller] = path
    return groups


def _read_key(file: Path, key: str) -> int:
    if not file.exists():
        return 0
    for line in file.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            return int(parts[1])
    return 0


def _rmdir_quietly(path: Path) -> None:
    # A cgroup directory is removed with rmdir once empty; its control files go with it.
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)  # the killed process may still be leaving the group
