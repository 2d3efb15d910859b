"""Import databricks-sdk's service modules without paying for the whole SDK up front.

`import databricks.sdk.service.jobs` first runs `databricks/sdk/__init__.py`, which imports every
service the SDK has (catalog, ml, sql, dashboards ...) to build `WorkspaceClient`: about 0.8 s of CPU,
three quarters of what `workspace serve` spends before its port answers. The workspace needs only a
few service modules (enums and dataclasses) to answer requests.

`defer_package_init()` puts `databricks.sdk` in `sys.modules` as the real package with its body not yet
run: `__path__` and `__spec__` are set, so submodules (`service.jobs`, `errors`) import as usual and
cost what they cost. The first attribute the package itself is asked for (`WorkspaceClient`,
`databricks.sdk.AccountClient`, `dir()`) runs the package body then, in the same module object, and
from then on it is the ordinary package. Only the timing of the SDK's import changes, never what it
holds. A process that has imported `databricks.sdk` already is left alone.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import types
from typing import Any

_PACKAGE = "databricks.sdk"


class _DeferredPackage(types.ModuleType):
    """The package module until its body has run; `__getattr__` runs it on the first miss."""

    _lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)  # probes like __file__/__all__ must not pay for the SDK
        _run_body(self)
        return getattr(self, name)

    def __dir__(self) -> list[str]:
        _run_body(self)
        return list(self.__dict__)


def _run_body(module: types.ModuleType) -> None:
    with _DeferredPackage._lock:
        if type(module) is not _DeferredPackage:
            return  # another thread ran it while this one waited
        module.__class__ = types.ModuleType  # type: ignore[assignment]  # the ordinary package from here on
        spec = module.__spec__
        assert spec is not None and spec.loader is not None
        try:
            spec.loader.exec_module(module)
        except BaseException:
            module.__class__ = _DeferredPackage  # as an import that failed: the next use tries again
            raise


def defer_package_init() -> bool:
    """Make `databricks.sdk`'s package body run on first use; False if it is imported already or absent."""
    if _PACKAGE in sys.modules:
        return False
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return False
    module = _DeferredPackage(_PACKAGE)
    module.__spec__ = spec
    module.__loader__ = spec.loader
    module.__package__ = _PACKAGE
    module.__path__ = list(spec.submodule_search_locations)
    if spec.origin is not None:
        module.__file__ = spec.origin
    sys.modules[_PACKAGE] = module
    parent = sys.modules.get("databricks")
    if parent is not None:
        parent.sdk = module  # type: ignore[attr-defined]
    return True
