"""One process owns a data dir: an exclusive `flock` on `DATA_DIR/workspace.lock`.

The owner (a `workspace serve`, or a `LocalWorkspace` started by `pipeline run` or from Python)
holds the lock for as long as it serves; the kernel drops it when the process dies, however it
dies (kill -9 included), so a lock file left behind by a dead process is simply taken over.
Once listening, the owner publishes where it is in `DATA_DIR/server.json` (mode 0600: it holds
the token, like the `token` file beside it). Anyone else finding the lock held reads that file
and uses the running workspace instead of opening the same SQLite store, Derby metastore and
mount table a second time.

Only the owner writes or removes `server.json`. Whether a workspace is live is decided by the
lock, never by the file: a file left by a dead owner is stale as soon as the lock is free.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from aml_databricks.errors import UsageError

LOCK_FILE = "workspace.lock"
SERVER_FILE = "server.json"


@dataclass(frozen=True)
class RunningWorkspace:
    """The live workspace that owns a data dir, as it published itself."""

    host: str
    pid: int
    token: str = field(repr=False)  # never in a log line or a traceback
    spark: bool

    def describe(self) -> str:
        return f"{self.host} (pid {self.pid})"


class WorkspaceInUseError(UsageError):
    """The data dir is served by another live process."""


class DataDirLock:
    """The exclusive ownership of one data dir. Not reentrant: one `acquire` per owner."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._handle: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self) -> bool:
        """Take the lock if nobody holds it (never blocks). True when this object owns the data dir."""
        if self._handle is not None:
            return True
        self.data_dir.mkdir(parents=True, exist_ok=True)
        handle = (self.data_dir / LOCK_FILE).open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        # The pid, for a second process to name the owner while it is still starting.
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return True

    def publish(self, host: str, token: str, *, spark: bool) -> None:
        """Say where the owner listens: written whole (rename), readable by this user only."""
        if self._handle is None:
            raise RuntimeError("only the owner of the data dir publishes it")
        record = {"host": host, "pid": os.getpid(), "token": token, "spark": spark}
        staging = self.data_dir / f".{SERVER_FILE}.{os.getpid()}"
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle)
        os.replace(staging, self.data_dir / SERVER_FILE)

    def release(self) -> None:
        """Withdraw `server.json` (ours: we hold the lock) and let go of the lock. Idempotent."""
        if self._handle is None:
            return
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / SERVER_FILE).unlink()
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None


def running_workspace(data_dir: Path, *, wait_s: float = 0.0) -> RunningWorkspace | None:
    """The live workspace owning `data_dir`, or None when nobody holds its lock.

    An owner that holds the lock but has not published yet (it is starting) is waited for up to
    `wait_s`; after that, `WorkspaceInUseError` names it by pid.
    """
    data_dir = Path(data_dir)
    deadline = time.monotonic() + wait_s
    while True:
        if not _lock_is_held(data_dir):
            return None
        published = _read_published(data_dir)
        owner = _owner_pid(data_dir)
        if published is not None and (owner is None or published.pid == owner):
            return published
        if time.monotonic() >= deadline:
            who = f"pid {owner}" if owner is not None else "another process"
            raise WorkspaceInUseError(f"{data_dir} is in use by {who}, which is still starting its workspace")
        time.sleep(0.05)


def _lock_is_held(data_dir: Path) -> bool:
    path = data_dir / LOCK_FILE
    try:
        handle = path.open("r")
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _owner_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / LOCK_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def _read_published(data_dir: Path) -> RunningWorkspace | None:
    try:
        record = json.loads((data_dir / SERVER_FILE).read_text())
        return RunningWorkspace(host=str(record["host"]), pid=int(record["pid"]), token=str(record["token"]),
                                spark=bool(record.get("spark", True)))
    except (OSError, ValueError, KeyError, TypeError):
        return None
