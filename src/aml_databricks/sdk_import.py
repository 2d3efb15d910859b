"""Import databricks-sdk's service modules without paying for the whole SDK up front.

`import databricks.sdk.<anything>` first runs `databricks/sdk/__init__.py`, which imports every
service module the SDK has (some 40, catalog, ml, sql, dashboards ...) to build `WorkspaceClient`:
about 0.8 s of CPU. The step (step/sdk.py) uses four APIs; `workspace serve` needs a few service
modules' enums and dataclasses to answer, and without this spent three quarters of its start on the
rest (benchmarks/serve_start.py).

`defer_package_init()` registers `databricks.sdk` as the real package (`__path__`, `__spec__`) whose
`__init__` runs only when a name it defines is first asked for: submodules import as usual and cost
what they cost; `from databricks.sdk import WorkspaceClient` anywhere in the process still works, a
little later, in the same module object. Only the timing of the SDK's import changes, never what it
holds. If `databricks.sdk` is already imported (a test, a benchmark, a notebook), it changes nothing.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import types
from typing import Any

PACKAGE = "databricks.sdk"


def defer_package_init() -> bool:
    """Make `databricks.sdk` importable without running its `__init__` until one of its own names
    is used. Call before anything imports the SDK; a no-op (False) once it is imported."""
    if PACKAGE in sys.modules:
        return False
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return False  # not installed as a regular package: let the import fail or succeed as usual
    package = importlib.util.module_from_spec(spec)  # __path__, __spec__, __file__: submodules import
    loader = spec.loader
    lock = threading.RLock()  # the __init__ itself looks names up here while it runs
    ran: list[bool] = []

    def __getattr__(name: str) -> Any:  # PEP 562: only called for names not (yet) defined
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)  # probes for dunders must not pay for the whole SDK
        if _is_submodule(package, name):
            raise AttributeError(name)  # `from . import useragent`: the import system loads it next
        with lock:
            if not ran:
                ran.append(True)  # before running it: a lookup from inside finds what is there so far
                loader.exec_module(package)  # the real __init__, into this module's namespace
        try:
            return package.__dict__[name]
        except KeyError:
            raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}") from None

    package.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[PACKAGE] = package
    parent = sys.modules.get("databricks")
    if isinstance(parent, types.ModuleType):
        parent.sdk = package  # type: ignore[attr-defined]
    return True


def _is_submodule(package: types.ModuleType, name: str) -> bool:
    return any(
        os.path.isfile(os.path.join(folder, f"{name}.py")) or os.path.isdir(os.path.join(folder, name))
        for folder in package.__path__
    )
