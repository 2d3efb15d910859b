"""Workspace paths: the one rule for what a notebook, file or folder path may be."""

from __future__ import annotations

from typing import Any

from aml_databricks.workspace.errors import InvalidParameterValue

# Paths a spark_python_task may name on the local disk rather than in the workspace.
WORKSPACE_ROOTS = ("/Users", "/Shared", "/Workspace", "/Repos")


def normalize_path(raw: Any) -> str:
    """An absolute workspace path with no `.`/`..` segments; `/Workspace/x` is the same as `/x`."""
    if not isinstance(raw, str) or not raw.startswith("/"):
        raise InvalidParameterValue(f"Path ({raw}) is not absolute: workspace paths start with '/'.")
    if "\x00" in raw or "\\" in raw:
        raise InvalidParameterValue(f"Path ({raw!r}) has characters not allowed in a workspace path.")
    parts = [p for p in raw.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise InvalidParameterValue(f"Path ({raw}) must not contain '.' or '..' segments.")
    if parts[:1] == ["Workspace"]:
        parts = parts[1:]
    return "/" + "/".join(parts)


def is_local_file(path: str) -> bool:
    """A spark_python_task's python_file outside the workspace tree: read from the local disk."""
    return path.startswith("/") and not path.startswith(WORKSPACE_ROOTS)


def is_dbfs_file(path: str) -> bool:
    """A spark_python_task's python_file given as a DBFS URI (`dbfs:/x.py`), as Databricks accepts it."""
    return path.startswith("dbfs:/")
