"""databricks-sdk for the step, without importing every service of the SDK.

`import databricks.sdk.<anything>` runs the package's `__init__`, which imports all of the SDK's
service modules (some 40, for `WorkspaceClient`), half of the time `aml-databricks run` spent
before its submit. The step uses three: the raw client (submit, runs/get, runs/list and the notebook
check, gateway.py), Jobs (cancel, run output) and DBFS (the output check), so:

    defer_package_init()   registers `databricks.sdk` as a package whose `__init__` runs only when
                           a name it defines is first asked for (`from databricks.sdk import
                           WorkspaceClient` anywhere in the process still works, a little later)
    StepClient(config)     those APIs on one ApiClient, the same classes WorkspaceClient uses

If `databricks.sdk` is already imported (a test, a benchmark, a notebook), both change nothing.
`defer_package_init` lives in `aml_databricks/sdk_import.py`: `workspace serve` uses it too.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Protocol

from aml_databricks.sdk_import import PACKAGE as PACKAGE
from aml_databricks.sdk_import import defer_package_init as defer_package_init

if TYPE_CHECKING:
    from databricks.sdk.config import Config
    from databricks.sdk.core import ApiClient
    from databricks.sdk.service.files import DbfsAPI
    from databricks.sdk.service.jobs import JobsAPI


class DatabricksApis(Protocol):
    """What the step calls: satisfied by `WorkspaceClient` and by `StepClient`."""

    @property
    def api_client(self) -> ApiClient: ...

    @property
    def jobs(self) -> JobsAPI: ...

    @property
    def dbfs(self) -> DbfsAPI: ...


class StepClient:
    """Jobs and DBFS on one ApiClient, built like `WorkspaceClient` builds them."""

    def __init__(self, config: Config) -> None:
        from databricks.sdk.core import ApiClient

        self.config = config
        self.api_client = ApiClient(config)

    @cached_property
    def jobs(self) -> JobsAPI:
        from databricks.sdk.mixins.jobs import JobsExt

        return JobsExt(self.api_client)  # type: ignore[no-untyped-call]

    @cached_property
    def dbfs(self) -> DbfsAPI:
        from databricks.sdk.mixins.files import DbfsExt

        return DbfsExt(self.api_client)  # type: ignore[no-untyped-call]
