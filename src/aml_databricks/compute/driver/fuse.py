"""`/dbfs/...`, `/Volumes/...` and `/Workspace/...` for all Python code of a run, as Databricks' FUSE
mounts give them.

On Databricks any code on the driver (a notebook, a Python file task, a library it imports) can
`open("/dbfs/x")` or `os.listdir("/Volumes/c/s/v")`. Here there is no FUSE mount, so the driver
process wraps the file functions Python code reaches such paths through: `open` (builtins and io,
which `pathlib` and pandas use) and the `os` functions that take paths (which `os.path`, `pathlib`,
`shutil`, `glob` and `os.walk` call by module attribute). A path under `/dbfs` or `/Volumes` is
mapped to its local file (`PathMapper.python_local`); every other argument passes through as it
was, after one `startswith` check. (`/Workspace` paths go to the run's copy of workspace files:
compute/driver/workspace_files.py.) C extensions that open files themselves (pyarrow's file
system, for one) and subprocesses (`%sh`) don't see the mapping.
"""

from __future__ import annotations

import builtins
import functools
import io
import os
from collections.abc import Callable
from typing import Any

PREFIXES = ("/dbfs", "/Volumes", "/Workspace")
# os functions whose first argument is a path; `rename`/`replace` take two, `link`/`symlink` too.
ONE_PATH = ("stat", "lstat", "listdir", "scandir", "mkdir", "rmdir", "remove", "unlink", "open", "access",
            "chmod", "utime", "truncate", "makedirs", "removedirs", "readlink")
TWO_PATHS = ("rename", "replace", "link", "symlink")
PATH_KEYWORDS = frozenset({"file", "path", "name", "src", "dst"})
_ORIGINALS: dict[tuple[Any, str], Any] = {}


def install(python_local: Callable[[str], str]) -> None:
    """Map /dbfs, /Volumes and /Workspace paths in this process through `python_local`; idempotent."""
    uninstall()

    def mapped(path: Any) -> Any:
        if isinstance(path, str):
            return python_local(path) if path.startswith(PREFIXES) else path
        if isinstance(path, os.PathLike):
            text = os.fspath(path)
            if isinstance(text, str) and text.startswith(PREFIXES):
                return python_local(text)
        return path

    def wrap(function: Callable[..., Any], paths: int) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if args:
                args = (*map(mapped, args[:paths]), *args[paths:])
            for key in PATH_KEYWORDS.intersection(kwargs):
                kwargs[key] = mapped(kwargs[key])
            return function(*args, **kwargs)
        return wrapper

    wrapped_open = wrap(io.open, 1)
    _patch(builtins, "open", wrapped_open)
    _patch(io, "open", wrapped_open)
    for name in ONE_PATH:
        if hasattr(os, name):
            _patch(os, name, wrap(getattr(os, name), 1))
    for name in TWO_PATHS:
        if hasattr(os, name):
            _patch(os, name, wrap(getattr(os, name), 2))


def uninstall() -> None:
    for (module, name), original in _ORIGINALS.items():
        setattr(module, name, original)
    _ORIGINALS.clear()


def _patch(module: Any, name: str, replacement: Any) -> None:
    _ORIGINALS.setdefault((module, name), getattr(module, name))
    setattr(module, name, replacement)
