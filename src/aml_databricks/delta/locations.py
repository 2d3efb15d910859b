"""Where a Delta table's path lives on this machine, as the server's Python workers see it.

The driver maps notebook paths (`dbfs:/`, `/mnt/...`, `/Volumes/...`, `abfss://...`) to `file:`
URIs before they reach Spark (it knows the run's mounts), and the catalog class resolves table
locations through Hadoop's ViewFS. What is left here is the fallback for paths that reach a
worker unmapped: `viewfs://dbfs/x` and `/x` are DBFS paths, `/Volumes/...` the volumes folder;
both roots come from the server's environment (`server.py`).
"""

from __future__ import annotations

import os
import posixpath
from urllib.parse import unquote, urlsplit

DBFS_ROOT_ENV = "AML_DATABRICKS_DBFS_ROOT"
VOLUMES_ROOT_ENV = "AML_DATABRICKS_VOLUMES_ROOT"


def local_path(path: str) -> str:
    """The absolute local folder of a table path given to the `delta` data source."""
    if not path:
        raise ValueError("a Delta table needs a path: .load(path) / .save(path)")
    if path.startswith("file:"):
        return posixpath.normpath(unquote(urlsplit(path).path) or "/")
    if path.startswith("viewfs:") or path.startswith("dbfs:"):
        path = unquote(urlsplit(path).path)
    if "://" in path:
        raise ValueError(f"the local workspace has no file system for {path}")
    absolute = posixpath.normpath("/" + path.lstrip("/"))
    if absolute == "/Volumes" or absolute.startswith("/Volumes/"):
        return _under(VOLUMES_ROOT_ENV, absolute[len("/Volumes") :])
    return _under(DBFS_ROOT_ENV, absolute)


def _under(variable: str, absolute: str) -> str:
    root = os.environ.get(variable)
    if not root:
        raise ValueError(f"{variable} is not set on this Spark server: can't place {absolute}")
    return posixpath.join(root, absolute.lstrip("/")).rstrip("/")
