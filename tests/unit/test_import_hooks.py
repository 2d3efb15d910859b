"""The driver's post-import hook: a callback runs on a module's first import, never imports it."""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from aml_databricks.compute.driver.import_hooks import when_imported


@pytest.fixture
def package(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "hooked_pkg"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "policy.py").write_text("def retries():\n    return 7\n")
    sys.path.insert(0, str(tmp_path))
    try:
        yield "hooked_pkg"
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n == "hooked_pkg" or n.startswith("hooked_pkg.")]:
            del sys.modules[name]


def test_the_callback_waits_for_the_import_and_sees_the_whole_module(package: str) -> None:
    seen: list[types.ModuleType] = []

    def patch(module: types.ModuleType) -> None:
        seen.append(module)
        module.retries = lambda: 0

    when_imported(f"{package}.policy", patch)
    assert f"{package}.policy" not in sys.modules and seen == []

    policy = importlib.import_module(f"{package}.policy")

    assert seen == [policy]
    assert policy.retries() == 0
    assert "return 7" in inspect.getsource(policy)  # the real loader still answers get_source


def test_a_module_already_imported_is_patched_at_once_and_only_once(package: str) -> None:
    policy = importlib.import_module(f"{package}.policy")
    calls: list[str] = []

    when_imported(f"{package}.policy", lambda module: calls.append(module.__name__))
    importlib.import_module(f"{package}.policy")

    assert calls == [policy.__name__]


def test_a_module_that_is_not_installed_is_simply_never_patched() -> None:
    calls: list[object] = []
    when_imported("no_such_module_anywhere", calls.append)

    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("no_such_module_anywhere")
    assert calls == []
