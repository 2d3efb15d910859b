"""`dbutils.fs` (and `%fs`): files through `PathMapper`, mounts through the workspace API.

Names, signatures, return values and error messages follow Databricks' `dbutils.fs`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

from aml_databricks.compute.driver.api import ApiError
from aml_databricks.compute.driver.paths import is_storage_uri, normalize_mount_point
from aml_databricks.compute.driver.run_context import Help, RunContext


class FileInfo(NamedTuple):
    path: str
    name: str
    size: int
    modificationTime: int

    def isDir(self) -> bool:
        return self.name.endswith("/")

    def isFile(self) -> bool:
        return not self.isDir()


class MountInfo(NamedTuple):
    mountPoint: str
    source: str
    encryptionType: str = ""


class FsUtils(Help):
    """Files in DBFS, mounts, Volumes and cloud storage: ls, cp, mv, rm, put, head, mkdirs, mount."""

    def __init__(self, context: RunContext, on_mounts_changed: Callable[[], None] = lambda: None) -> None:
        self._context = context
        self._paths = context.paths
        self._on_mounts_changed = on_mounts_changed
        self._mount_sources = {mp: folder.as_uri() for mp, folder in self._paths.mounts.items()}

    def ls(self, dir: str) -> list[FileInfo]:
        local = self._existing(dir)
        if local.is_file():
            return [self._info(dir, local, local.name)]
        base = dir if dir.endswith("/") else dir + "/"
        if base.startswith("/"):  # Databricks names DBFS entries with their scheme: dbfs:/data/x
            base = "dbfs:" + base
        return [self._info(base + child.name, child, child.name) for child in sorted(local.iterdir())]

    def head(self, file: str, maxBytes: int = 65536) -> str:
        with self._existing(file).open("rb") as handle:
            return handle.read(maxBytes).decode("utf-8", errors="replace")

    def put(self, file: str, contents: str, overwrite: bool = False) -> bool:
        local = self._paths.local(file)
        if local.exists() and not overwrite:
            raise FileExistsError(f"File {file} already exists; use overwrite=True to replace it.")
        local.parent.mkdir(parents=True, exist_ok=True)
        data = contents.encode()
        local.write_bytes(data)
        print(f"Wrote {len(data)} bytes.")
        return True

    def mkdirs(self, dir: str) -> bool:
        self._paths.local(dir).mkdir(parents=True, exist_ok=True)
        return True

    def cp(self, from_: str, to: str, recurse: bool = False) -> bool:
        source, target = self._existing(from_), self._paths.local(to)
        if source.is_dir():
            if not recurse:
                raise IsADirectoryError(f"{from_} is a directory: use recurse=True to copy it")
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / source.name if target.is_dir() else target)
        return True

    def mv(self, from_: str, to: str, recurse: bool = False) -> bool:
        source, target = self._existing(from_), self._paths.local(to)
        if source.is_dir() and not recurse:
            raise IsADirectoryError(f"{from_} is a directory: use recurse=True to move it")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source, target)
        return True

    def rm(self, dir: str, recurse: bool = False) -> bool:
        local = self._paths.local(dir)
        if not local.exists() and not local.is_symlink():
            return False
        if local.is_dir() and not local.is_symlink():
            if recurse:
                shutil.rmtree(local)
            else:
                local.rmdir()  # only an empty folder, as Databricks: non-empty needs recurse=True
        else:
            local.unlink()
        return True

    def mount(
        self,
        source: str,
        mount_point: str,
        encryption_type: str = "",
        extra_configs: Mapping[str, str] | None = None,
    ) -> bool:
        """Mount a local folder (`file:///...`) or a mapped storage URI at /mnt/<name>.

        `extra_configs` (account keys, OAuth settings) are accepted and not needed locally.
        """
        mount_point = normalize_mount_point(mount_point)
        if mount_point in self._paths.mounts:
            raise RuntimeError(f"Directory already mounted: {mount_point}")
        folder = self._paths.mount_source_folder(source)
        if not folder.is_dir():
            if not is_storage_uri(source):
                raise FileNotFoundError(f"mount source {source} is not a folder on this machine")
            folder.mkdir(parents=True, exist_ok=True)  # a container prefix exists once something is in it
        self._tell_workspace(
            "/api/2.0/local/mounts", {"mount_point": mount_point, "source": source, "local_path": str(folder)}
        )
        self._paths.mounts[mount_point] = folder
        self._mount_sources[mount_point] = source
        self._on_mounts_changed()
        return True

    def unmount(self, mount_point: str) -> bool:
        mount_point = normalize_mount_point(mount_point)
        if mount_point not in self._paths.mounts:
            raise RuntimeError(f"Directory not mounted: {mount_point}")
        self._tell_workspace("/api/2.0/local/mounts/delete", {"mount_point": mount_point})
        del self._paths.mounts[mount_point]
        self._mount_sources.pop(mount_point, None)
        self._on_mounts_changed()
        print(f"{mount_point} has been unmounted.")
        return True

    def mounts(self) -> list[MountInfo]:
        listed = [MountInfo("/", "DatabricksRoot"), MountInfo("/Volumes", "UnityCatalogVolumes")]
        listed += [MountInfo(mp, self._mount_sources.get(mp, str(folder))) for mp, folder in self._paths.mounts.items()]
        return listed

    def refreshMounts(self) -> bool:
        """Re-read the workspace's mount table (mounts made by other runs since this one started)."""
        api = self._context.require_api("dbutils.fs.refreshMounts")
        entries = api.get("/api/2.0/local/mounts").get("mounts") or []
        self._paths.mounts.clear()
        self._mount_sources.clear()
        for entry in entries:
            mount_point = normalize_mount_point(str(entry.get("mountPoint") or entry["mount_point"]))
            source = str(entry.get("source") or "")
            local = entry.get("local_path")
            self._paths.mounts[mount_point] = Path(local) if local else self._paths.mount_source_folder(source)
            self._mount_sources[mount_point] = source or self._paths.mounts[mount_point].as_uri()
        self._on_mounts_changed()
        return True

    def _tell_workspace(self, path: str, body: dict[str, str]) -> None:
        """Persist a mount change for later runs; without that endpoint it stays this run's own."""
        if self._context.api is None:
            return
        try:
            self._context.api.post(path, body)
        except ApiError as error:
            if not _endpoint_missing(error):
                raise

    def _existing(self, path: str) -> Path:
        local = self._paths.local(path)
        if not local.exists():
            raise FileNotFoundError(f"File {path} does not exist.")
        return local

    @staticmethod
    def _info(shown: str, local: Path, name: str) -> FileInfo:
        stat = local.stat()
        if local.is_dir():
            return FileInfo(shown.rstrip("/") + "/", name + "/", 0, int(stat.st_mtime * 1000))
        return FileInfo(shown, name, stat.st_size, int(stat.st_mtime * 1000))


def _endpoint_missing(error: ApiError) -> bool:
    """The workspace doesn't offer this call (an older or partial server), as opposed to refusing it."""
    return error.status in (404, 405) or (error.status == 400 and "is not allowed for" in error.message)
