"""Files that hold run output are the workspace user's alone: 0600 files in 0700 folders.

A run's output can carry anything the notebook printed (redaction only hides secret values literally),
so other users of the machine must not read it, whatever the umask.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any


def private_folder(path: Path) -> Path:
    """`mkdir -p` and 0700, also for a folder that existed already with wider rights."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def open_private(path: Path, mode: str) -> IO[Any]:
    """`open(path, mode)` for writing or appending ("w", "a", "wb", "ab"); a new file is created 0600 and
    an existing one narrowed to 0600."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    descriptor = os.open(path, flags, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
        return os.fdopen(descriptor, mode)
    except BaseException:
        os.close(descriptor)
        raise


def write_private(path: Path, text: str) -> None:
    with open_private(path, "w") as handle:
        handle.write(text)
