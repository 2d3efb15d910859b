"""`workspace serve` defers databricks-sdk's package body: submodules import alone, the rest on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.subprocess

PROBE = """
import sys
from aml_databricks.sdk_import import defer_package_init
assert defer_package_init()
from databricks.sdk.service.jobs import RunLifeCycleState
from databricks.sdk.errors import NotFound
assert "databricks.sdk.service.catalog" not in sys.modules, "the whole SDK was imported"
assert RunLifeCycleState.RUNNING.value == "RUNNING"
from databricks.sdk import WorkspaceClient  # the first use of the package itself runs its body
import databricks.sdk
assert "databricks.sdk.service.catalog" in sys.modules
assert databricks.sdk.WorkspaceClient is WorkspaceClient
assert databricks.sdk.service.jobs.RunLifeCycleState is RunLifeCycleState  # one module, not a second copy
assert type(databricks.sdk) is type(sys)
assert not defer_package_init()  # imported already: left alone
print("ok")
"""


def test_submodules_import_without_the_package_body_which_runs_on_first_use() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
