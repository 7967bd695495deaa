"""Output folders written whole or not at all.

A folder is built in a hidden staging sibling named after the writing process and renamed into
place. A later run removes staging folders whose writer has died and finishes a replacement that
was cut short, so an interrupted compile leaves nothing behind for long and loses nothing."""
from __future__ import annotations

import glob
import os
import shutil
import tempfile
from pathlib import Path

from onnx2sql.errors import InputError, UsageError

STAGING_SUFFIX = ".partial"


def check_output_folder(out: Path, own_names: frozenset[str], flag: str = "-o") -> None:
    """Refuse an output folder that replacing would lose something in: a file, the current
    folder (or one holding it), or a folder with entries onnx2sql does not write."""
    if _holds_working_folder(out):
        raise UsageError(f"{flag} {str(out)!r} is the current folder or holds it; name a new folder, "
                         f"e.g. {flag} compiled")
    if out.exists() and not out.is_dir():
        raise InputError(f"output {str(out)!r} exists and is not a folder; name a new folder")
    if not out.is_dir():
        return
    foreign = sorted(entry.name for entry in out.iterdir() if entry.name not in own_names)
    if foreign:
        shown = ", ".join(repr(name) for name in foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise InputError(f"output folder {str(out)!r} holds files onnx2sql did not write ({shown}); "
                         "they would be lost: choose an empty or new folder")


def _holds_working_folder(out: Path) -> bool:
    here, target = Path.cwd().resolve(), out.resolve()
    return target == here or target in here.parents


def staging_dir(out: Path) -> Path:
    """A new hidden sibling of `out` whose name carries this process's id (see remove_stale_staging)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", suffix=STAGING_SUFFIX, dir=out.parent))
    path.chmod(0o755)  # mkdtemp makes it private; the output is an ordinary folder
    return path


def remove_stale_staging(out: Path) -> None:
    """Delete staging siblings of `out` left by a writer that no longer runs (killed mid-way)."""
    remove_dead_owners(out.parent, f".{out.name}.", STAGING_SUFFIX)


def private_temp_dir(prefix: str) -> Path:
    """A new folder in the temp folder whose name carries this process's id after `prefix`, so a
    later run can remove it if this process is killed before it does (remove_dead_owners)."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}."))


def remove_dead_owners(parent: Path, prefix: str, suffix: str = "") -> None:
    """Delete folders in `parent` named prefix + <process id> + ... + suffix whose process is gone."""
    if not parent.is_dir():
        return
    for path in parent.glob(f"{glob.escape(prefix)}*{glob.escape(suffix)}"):
        pid = path.name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and not _process_exists(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def old_copy(out: Path) -> Path:
    return out.with_name(f".{out.name}.old")


def recover_interrupted_replace(out: Path) -> None:
    """Finish a replace_dir that was cut short: put the previous folder back if the new one never
    arrived, otherwise delete the previous one."""
    old = old_copy(out)
    if not old.exists():
        return
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.rename(out)


def replace_dir(staging: Path, out: Path) -> None:
    """Move the finished staging folder to `out`, replacing an earlier output as atomically as
    two renames allow (recover_interrupted_replace repairs a kill between them)."""
    if out.exists():
        old = old_copy(out)
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out)
