"""Workspace files next to a notebook, on local disk, so `import my_lib` and `open("data.csv")` work.

On Databricks (DBR 14.0+, and 15.4 LTS which this follows) a notebook runs with its own workspace folder
as the working directory and first on `sys.path`, and the folder's workspace files (Workspace API objects
of type FILE, in Git folders or not) are readable there through /Workspace. Here the driver copies the
files of the notebook's folder and its subfolders (not the notebooks: Databricks does not import those as
modules either) out of the workspace into the run's directory, once, before the first cell, and runs the
notebook from that copy. Writes there stay in the run's directory; they are not written back.

Absolute `/Workspace/...` paths (`open("/Workspace/Users/me/proj/data.csv")`, `sys.path.append(
"/Workspace/Shared/libs")`) read the same copy: `WorkspaceMirror` fetches a file or folder the first time
a path under it is used (the notebook's own folder is there already) and maps the path to its local copy;
fuse.py routes Python's file functions through it and `install_import_hook` lets `sys.path` entries name it.
"""

from __future__ import annotations

import base64
import posixpath
import sys
from pathlib import Path
from typing import Any

from aml_databricks.compute.driver.api import ApiError, WorkspaceApi

WORKSPACE_PREFIX = "/Workspace"

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


class WorkspaceMirror:
    """`/Workspace/<path>` -> the local copy of that workspace object under `root`, fetched on first use."""

    def __init__(self, api: WorkspaceApi, root: Path) -> None:
        self.api = api
        self.root = root
        self._fetched: set[str] = set()  # workspace paths whose objects are copied (folders: all below)

    def mark_copied(self, folder: str) -> None:
        self._fetched.add(posixpath.normpath(folder))

    def local(self, path: str) -> str:
        """The local path for `path` when it is under /Workspace, fetching it first; other paths unchanged."""
        if path != WORKSPACE_PREFIX and not path.startswith(WORKSPACE_PREFIX + "/"):
            return path
        workspace_path = posixpath.normpath("/" + path[len(WORKSPACE_PREFIX):].lstrip("/"))
        local = self.root / workspace_path.lstrip("/")
        if not self._covered(workspace_path):
            self._fetch(workspace_path, local)
        return str(local)

    def _covered(self, workspace_path: str) -> bool:
        return any(workspace_path == done or workspace_path.startswith(done.rstrip("/") + "/")
                   for done in self._fetched)

    def _fetch(self, workspace_path: str, local: Path) -> None:
        self._fetched.add(workspace_path)  # once, found or not: a missing file stays missing, as a file would
        if workspace_path == "/":
            local.mkdir(parents=True, exist_ok=True)
            return
        try:
            status = self.api.get("/api/2.0/workspace/get-status", {"path": workspace_path})
        except ApiError:
            return  # not in the workspace: the local path doesn't exist either, so Python says so
        kind = status.get("object_type")
        if kind == "DIRECTORY" or kind == "REPO":
            local.mkdir(parents=True, exist_ok=True)
            copy_folder(self.api, workspace_path, local)
        elif kind == "FILE":
            exported = self.api.get("/api/2.0/workspace/export", {"path": workspace_path, "format": "AUTO"})
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(base64.b64decode(exported.get("content") or ""))


def install_import_hook(mirror: WorkspaceMirror) -> None:
    """Let `sys.path` entries under /Workspace import from their local copy (the import system calls the
    `os` module's C functions directly, so fuse.py's wrappers don't reach it)."""

    def workspace_path_hook(entry: str) -> Any:
        if entry != WORKSPACE_PREFIX and not entry.startswith(WORKSPACE_PREFIX + "/"):
            raise ImportError("not a /Workspace path")
        local = mirror.local(entry)
        for hook in sys.path_hooks:
            if hook is workspace_path_hook:
                continue
            try:
                return hook(local)
            except ImportError:
                continue
        raise ImportError(f"no importer for {entry}")

    sys.path_hooks.insert(0, workspace_path_hook)
    sys.path_importer_cache.clear()
