"""The local Azure Databricks workspace: Jobs, Workspace and Secrets APIs on loopback, persisted in SQLite."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aml_databricks.workspace.server import LocalWorkspace

__all__ = ["LocalWorkspace"]


def __getattr__(name: str) -> Any:
    # Lazy: `aml-databricks --help` and the step must not pay for uvicorn, Starlette and the SDK.
    if name == "LocalWorkspace":
        from aml_databricks.workspace.server import LocalWorkspace

        return LocalWorkspace
    raise AttributeError(name)
