"""databricks-sdk for the step, without importing every service of the SDK.

`import databricks.sdk.<anything>` runs the package's `__init__`, which imports all of the SDK's
service modules (some 40, for `WorkspaceClient`), half of the time `aml-databricks run` spent
before its submit. The step uses four APIs (Jobs, Workspace, DBFS, and the raw client), so:

    defer_package_init()   registers `databricks.sdk` as a package whose `__init__` runs only when
                           a name it defines is first asked for (`from databricks.sdk import
                           WorkspaceClient` anywhere in the process still works, a little later)
    StepClient(config)     the four APIs on one ApiClient, the same classes WorkspaceClient uses

If `databricks.sdk` is already imported (a test, a benchmark, a notebook), both change nothing.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import types
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from databricks.sdk.config import Config
    from databricks.sdk.core import ApiClient
    from databricks.sdk.service.files import DbfsAPI
    from databricks.sdk.service.jobs import JobsAPI
    from databricks.sdk.service.workspace import WorkspaceAPI

PACKAGE = "databricks.sdk"


class DatabricksApis(Protocol):
    """What the step calls: satisfied by `WorkspaceClient` and by `StepClient`."""

    @property
    def api_client(self) -> ApiClient: ...

    @property
    def jobs(self) -> JobsAPI: ...

    @property
    def workspace(self) -> WorkspaceAPI: ...

    @property
    def dbfs(self) -> DbfsAPI: ...


class StepClient:
    """Jobs, Workspace and DBFS on one ApiClient, built like `WorkspaceClient` builds them."""

    def __init__(self, config: Config) -> None:
        from databricks.sdk.core import ApiClient

        self.config = config
        self.api_client = ApiClient(config)

    @cached_property
    def jobs(self) -> JobsAPI:
        from databricks.sdk.mixins.jobs import JobsExt

        return JobsExt(self.api_client)  # type: ignore[no-untyped-call]

    @cached_property
    def workspace(self) -> WorkspaceAPI:
        from databricks.sdk.mixins.workspace import WorkspaceExt

        return WorkspaceExt(self.api_client)  # type: ignore[no-untyped-call]

    @cached_property
    def dbfs(self) -> DbfsAPI:
        from databricks.sdk.mixins.files import DbfsExt

        return DbfsExt(self.api_client)  # type: ignore[no-untyped-call]


def defer_package_init() -> None:
    """Make `databricks.sdk` importable without running its `__init__` until one of its own names
    is used. Call before anything imports the SDK; a no-op once it is imported."""
    if PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return  # not installed as a regular package: let the import fail or succeed as usual
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


def _is_submodule(package: types.ModuleType, name: str) -> bool:
    return any(
        os.path.isfile(os.path.join(folder, f"{name}.py")) or os.path.isdir(os.path.join(folder, name))
        for folder in package.__path__
    )
