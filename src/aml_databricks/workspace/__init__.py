"""The local Azure Databricks workspace: Jobs, Workspace and Secrets APIs on loopback, persisted in SQLite."""

from aml_databricks.workspace.server import LocalWorkspace

__all__ = ["LocalWorkspace"]
