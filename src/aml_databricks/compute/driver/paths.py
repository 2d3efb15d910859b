"""Where Databricks paths live on this machine.

One mapping serves `dbutils.fs`, plain Python file access through `/dbfs/...`, and Spark:

    dbfs:/x, /x (in dbutils.fs and Spark)   -> <dbfs_root>/x
    /dbfs/x (plain Python file access)      -> <dbfs_root>/x
    /mnt/<name>/x                           -> the mount's local folder /x
    /Volumes/<catalog>/<schema>/<vol>/x     -> <volumes_root>/<catalog>/<schema>/<vol>/x
    abfss://c@a.dfs.core.windows.net/x      -> the storage table's folder for container c of account a /x
    wasbs://c@a.blob.core.windows.net/x     -> the same folder (one container, two endpoints)
    file:/x                                 -> /x on this machine (the driver's local disk)

Spark resolves `/x`, `/mnt/...` and `/Volumes/...` itself through Hadoop ViewFS (its mount table is
set by the cluster's server confs and, for mounts made at run time, by session confs from
`viewfs_session_confs`); only the schemes Hadoop has no file system for here (`dbfs:`, `abfss:`,
`wasbs:`) are rewritten before a path reaches Spark (`spark_path`).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aml_databricks.compute.protocol import FileSystem

# The ViewFS mount table name: the cluster's servers run with fs.defaultFS=viewfs://dbfs/.
VIEWFS_TABLE = "dbfs"
_STORAGE_SCHEMES = ("abfss", "abfs", "wasbs", "wasb")


class PathNotMappedError(ValueError):
    """A storage URI or mount source that the local workspace has no folder for."""


def storage_key(uri: str) -> tuple[str, str]:
    """(container, account) of an abfss/wasbs URI, so both endpoints of one container match."""
    parts = urlsplit(uri)
    if parts.scheme not in _STORAGE_SCHEMES or "@" not in parts.netloc:
        raise PathNotMappedError(f"not an Azure storage URI: {uri}")
    container, _, host = parts.netloc.partition("@")
    return container, host.split(".", 1)[0]


def is_storage_uri(path: str) -> bool:
    return path.split("://", 1)[0] in _STORAGE_SCHEMES and "://" in path


@dataclass
class PathMapper:
    dbfs_root: Path
    volumes_root: Path
    mounts: dict[str, Path] = field(default_factory=dict)  # "/mnt/x" -> local folder
    storage: dict[tuple[str, str], Path] = field(default_factory=dict)  # (container, account) -> folder

    @classmethod
    def from_config(cls, config: FileSystem | Mapping[str, Any]) -> PathMapper:
        """From the driver protocol's `FileSystem` (task.json's `fs` object), or its JSON form."""
        fs = config if isinstance(config, FileSystem) else FileSystem.from_json(config)
        mapper = cls(Path(fs.dbfs_root), Path(fs.volumes_root))
        for mount_point, folder in fs.mounts.items():
            mapper.mounts[normalize_mount_point(mount_point)] = Path(folder)
        for uri, folder in fs.storage.items():
            mapper.storage[storage_key(uri)] = Path(folder)
        return mapper

    def local(self, path: str) -> Path:
        """The local file or folder behind a DBFS-style path, as `dbutils.fs` sees it."""
        if path.startswith("file:"):
            return Path(_strip_file_scheme(path))
        if is_storage_uri(path):
            return self.storage_folder(path)
        if path.startswith("dbfs:"):
            path = path[len("dbfs:") :]
        absolute = posixpath.normpath("/" + path.lstrip("/"))  # normpath of an absolute path can't climb out
        mount = self._mount_of(absolute)
        if mount is not None:
            return _join(self.mounts[mount], absolute[len(mount) :])
        if absolute == "/Volumes" or absolute.startswith("/Volumes/"):
            return _join(self.volumes_root, absolute[len("/Volumes") :])
        return _join(self.dbfs_root, absolute)

    def python_local(self, path: str) -> str:
        """What a plain Python `open()` of a Databricks path means: `/dbfs/x` is DBFS's `/x`."""
        if path == "/dbfs" or path.startswith("/dbfs/"):
            return str(self.local(path[len("/dbfs") :] or "/"))
        if path == "/Volumes" or path.startswith("/Volumes/"):
            return str(self.local(path))
        return path

    def spark_path(self, path: str) -> str:
        """A path Spark can resolve: `dbfs:/x` -> `/x` (ViewFS), storage URIs -> their local folder."""
        if path.startswith("dbfs:"):
            return "/" + path[len("dbfs:") :].lstrip("/")
        if is_storage_uri(path):
            return self.storage_folder(path).as_uri()
        return path

    def storage_folder(self, uri: str) -> Path:
        key = storage_key(uri)
        folder = self.storage.get(key)
        if folder is None:
            container, account = key
            raise PathNotMappedError(
                f"no local folder for container '{container}' of storage account '{account}': "
                "map it with `workspace serve --storage abfss://<container>@<account>.dfs.core.windows.net=DIR`"
            )
        return _join(folder, posixpath.normpath("/" + urlsplit(uri).path.lstrip("/")))

    def mount_source_folder(self, source: str) -> Path:
        """The local folder a `dbutils.fs.mount(source=...)` refers to."""
        if source.startswith("file:"):
            return Path(_strip_file_scheme(source))
        if is_storage_uri(source):
            return self.storage_folder(source)
        raise PathNotMappedError(
            f"unsupported mount source {source!r}: use file:///<folder> or an abfss:// / wasbs:// URI "
            "mapped with `workspace serve --storage`"
        )

    def viewfs_session_confs(self) -> dict[str, str]:
        """Spark session confs that make ViewFS resolve mounts and volumes like `local` does."""
        prefix = f"fs.viewfs.mounttable.{VIEWFS_TABLE}"
        confs = {f"{prefix}.link./Volumes": self.volumes_root.as_uri()}
        for mount_point, folder in self.mounts.items():
            confs[f"{prefix}.link.{mount_point}"] = folder.as_uri()
        return confs

    def _mount_of(self, absolute: str) -> str | None:
        matches = [mp for mp in self.mounts if absolute == mp or absolute.startswith(mp + "/")]
        return max(matches, key=len) if matches else None


def normalize_mount_point(mount_point: str) -> str:
    if mount_point.startswith("dbfs:"):
        mount_point = mount_point[len("dbfs:") :]
    normalized = posixpath.normpath("/" + mount_point.strip().lstrip("/"))
    if not normalized.startswith("/mnt/") or normalized.count("/") < 2:
        raise ValueError(f"mount points live under /mnt/: {mount_point!r}")
    return normalized


def _strip_file_scheme(uri: str) -> str:
    rest = uri[len("file:") :]
    if rest.startswith("//"):
        rest = urlsplit(uri).path  # file:///x or file://localhost/x
    return posixpath.normpath("/" + rest.lstrip("/"))


def _join(root: Path, absolute: str) -> Path:
    relative = absolute.lstrip("/")
    return root / relative if relative else root
