"""Workspace files next to a notebook, on local disk, so `import my_lib` and `open("data.csv")` work.

On Databricks (DBR 14.0+, and 15.4 LTS which this follows) a notebook runs with its own workspace folder
as the working directory and first on `sys.path`, and the folder's workspace files (Workspace API objects
of type FILE, in Git folders or not) are readable there through /Workspace. Here the driver copies the
files of the notebook's folder and its subfolders (not the notebooks: Databricks does not import those as
modules either) out of the workspace into the run's directory, once, before the first cell, and runs the
notebook from that copy. Writes there stay in the run's directory; they are not written back.
"""

from __future__ import annotations

import base64
import posixpath
from pathlib import Path

from aml_databricks.compute.driver.api import ApiError, WorkspaceApi

MAX_FILES = 2000  # a notebook in a huge shared folder copies at most this many files
MAX_DEPTH = 8


def copy_folder(api: WorkspaceApi, folder: str, target: Path) -> int:
    """Copy the workspace files under `folder` into `target` (mirroring subfolders); how many were copied."""
    copied = 0
    pending = [(folder, target, 0)]
    while pending and copied < MAX_FILES:
        remote, local, depth = pending.pop()
        try:
            objects = api.get("/api/2.0/workspace/list", {"path": remote}).get("objects") or []
        except ApiError:
            continue  # a folder deleted meanwhile, or the root of an empty workspace
        for entry in objects:
            path = str(entry.get("path") or "")
            name = posixpath.basename(path)
            if not name or name in (".", ".."):
                continue
            if entry.get("object_type") == "DIRECTORY" and depth < MAX_DEPTH:
                pending.append((path, local / name, depth + 1))
            elif entry.get("object_type") == "FILE" and copied < MAX_FILES:
                exported = api.get("/api/2.0/workspace/export", {"path": path, "format": "AUTO"})
                local.mkdir(parents=True, exist_ok=True)
                (local / name).write_bytes(base64.b64decode(exported.get("content") or ""))
                copied += 1
    return copied
