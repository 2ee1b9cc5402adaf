"""Safe file writes: atomic replacement (a crash or a kill leaves either the old file or the new one,
never half of one), a timestamped backup of a file a user may have edited, and the checks that run
before any work so that an output can neither overwrite an input nor fail late."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TypeVar

from .errors import DietError

__all__ = ["atomic_open", "atomic_write_text", "backup", "check_output", "wait_until", "WAIT_STALL"]

T = TypeVar("T")
WAIT_STALL = float(os.environ.get("NNUNET_DIET_WAIT_STALL", "3600"))  # seconds without progress


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on a clean exit flush, fsync and rename
    it over ``path`` (mode 0644); on an exception remove it and leave ``path`` untouched."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "w") as fh:
        fh.write(text)


def backup(path: Path) -> Path | None:
    """Copy an existing ``path`` to ``<name>.<timestamp>.bak`` (never over an earlier backup) before it is
    replaced; returns the backup, None when there is no file to keep."""
    if not path.is_file():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    copy, n = path.with_name(f"{path.name}.{stamp}.bak"), 1
    while copy.exists():
        copy, n = path.with_name(f"{path.name}.{stamp}-{n}.bak"), n + 1
    try:
        shutil.copy2(path, copy)
    except OSError as exc:
        raise DietError(f"{path}: cannot back it up before replacing it ({exc.strerror or exc}); nothing written")
    return copy


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike | None] = (), folder: bool = False,
                 option: str = "-o/--output") -> Path:
    """Refuse, before any work, an output that would replace an input or that the system will not let us write:
    a folder where a file is to go (or the reverse), a file among its parent folders, a read-only folder."""
    path = Path(path).expanduser()
    for source in inputs:
        if source is not None and (_same(path, Path(source)) or path.resolve() == Path(source).resolve()):
            raise DietError(f"{option} {path}: is the input {source}; write the output elsewhere")
    if folder and path.exists() and not path.is_dir():
        raise DietError(f"{option} {path}: exists and is not a folder")
    if not folder and path.is_dir():
        raise DietError(f"{option} {path}: is a folder; give a file name")
    parent = path if folder and path.is_dir() else path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise DietError(f"{option} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DietError(f"{option} {path}: cannot write in {parent} (permission denied or read-only)")
    return path


def wait_until(ready: Callable[[], T | None], watched: Path, what: str, *, poll: float = 1.0,
               stall: float | None = None) -> T:
    """Poll ``ready()`` until it returns a value (not None), as long as another process makes progress:
    when ``watched`` (the file that process rewrites as it goes) has not changed for ``stall`` seconds
    (default :data:`WAIT_STALL`, ``NNUNET_DIET_WAIT_STALL``) a :class:`DietError` names it, so that a crashed
    writer does not leave its readers waiting for ever."""
    stall = WAIT_STALL if stall is None else stall
    last, since = None, time.monotonic()
    while (value := ready()) is None:
        stamp = watched.stat().st_mtime_ns if watched.exists() else None
        if stamp != last:
            last, since = stamp, time.monotonic()
        elif time.monotonic() - since > stall:
            raise DietError(f"{watched}: no progress for {stall:.0f} s while waiting for {what} "
                            "(did the process writing it stop? NNUNET_DIET_WAIT_STALL sets the patience)")
        time.sleep(poll)
    return value
