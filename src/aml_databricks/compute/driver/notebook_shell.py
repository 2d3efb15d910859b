"""`IPython.get_ipython()` in a notebook run: the notebook's namespace, as Databricks' IPython kernel gives it.

On Databricks (DBR 11+) a notebook runs in an IPython kernel, and library code commonly finds the
notebook's `dbutils`/`spark` through it: `IPython.get_ipython().user_ns["dbutils"]` or
`.ns_table["user_global"]["dbutils"]`. The local driver runs cells itself, without IPython; when
IPython is not installed, a small `IPython` package (ipython_shim/, last on `sys.path`, so a real
IPython always wins) answers `get_ipython()` with `NotebookShell`: the namespaces, nothing else.
With a real IPython installed, `get_ipython()` is None there, as outside a kernel (documented).
"""

from __future__ import annotations

import builtins
import sys
from pathlib import Path
from typing import Any

SHIM_PATH = Path(__file__).resolve().parent / "ipython_shim"
_shell: NotebookShell | None = None


class NotebookShell:
    """The parts of IPython's InteractiveShell that code outside the notebook reads: its namespaces."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.user_ns = namespace
        self.user_global_ns = namespace
        self.ns_table = {"user_global": namespace, "user_local": namespace, "builtin": builtins.__dict__}

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"get_ipython().{name} is not available: the local workspace runs notebook cells without IPython "
            "(its shell offers user_ns and ns_table)"
        )


def install(namespace: dict[str, Any]) -> None:
    """Make `get_ipython()` return the shell of `namespace`; the shim goes last on sys.path, once."""
    global _shell
    _shell = NotebookShell(namespace)
    if str(SHIM_PATH) not in sys.path:
        sys.path.append(str(SHIM_PATH))


def get_ipython() -> NotebookShell | None:
    return _shell
