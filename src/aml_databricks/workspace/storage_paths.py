"""Databricks storage paths named in REST calls (the DBFS and Files APIs) -> local files, confined.

The mapping is the one notebooks use (`dbfs:/x` and `/x` under the DBFS root, `/mnt/<m>` in the mount's
folder, `/Volumes/...` under the volumes root); `_mapper` is the only place this module reaches for it,
so a move of that mapping is one import to change here.

Confinement: a path with a `..` segment, a scheme other than `dbfs:`, or no leading `/` is refused,
and so is any path whose real location (symlinks resolved) is outside the root it maps into. The
roots themselves are the DBFS root, the volumes root and each mount's folder; nothing else is touched.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aml_databricks.workspace.errors import InvalidParameterValue

VOLUMES = "/Volumes"


def _mapper(fs_table: Mapping[str, Any]) -> Any:
    """The notebooks' path mapping, built from the driver protocol's `fs` object."""
    from aml_databricks.compute.driver.paths import PathMapper

    return PathMapper.from_config(fs_table)


@dataclass(frozen=True)
class StoragePath:
    """One resolved path: what the API shows, where it is on disk, and the root it must stay in."""

    path: str  # absolute, normalised: "/mnt/azuremlblobstore/x", "/Volumes/c/s/v/f"
    local: Path
    root: Path
    is_root: bool  # the DBFS root, a mount's folder or the volumes root itself

    def child(self, name: str) -> str:
        return posixpath.join(self.path, name)


class StoragePaths:
    """Resolves API paths against the current mount table (mounts made by runs show up at once)."""

    def __init__(self, fs_table: Callable[[], Mapping[str, Any]]) -> None:
        self._fs_table = fs_table
        self._staging_ready = False

    def dbfs(self, raw: Any, what: str = "path") -> StoragePath:
        """A DBFS API path: `/x` or `dbfs:/x` (mounts and `/Volumes/...` included)."""
        if isinstance(raw, str) and raw.startswith("dbfs:"):
            raw = raw[len("dbfs:"):]
        return self._resolve(normalize(raw, what))

    def volume(self, raw: Any) -> StoragePath:
        """A Files API path: inside a volume, `/Volumes/<catalog>/<schema>/<volume>[/...]`."""
        path = normalize(raw, "path")
        if len(path.split("/")) < 5 or not path.startswith(VOLUMES + "/"):
            raise InvalidParameterValue(
                f"Path ({path}) is not in a volume: the Files API takes /Volumes/<catalog>/<schema>/<volume>/...")
        return self._resolve(path)

    def staging(self) -> Path:
        """Where uploads are written before they are renamed into place: `DATA_DIR/uploads`, beside the DBFS root.

        Staged names carry the server's pid: on first use, what an earlier server left half-written goes."""
        folder = Path(str(self._fs_table()["dbfs_root"])).parent / "uploads"
        if not self._staging_ready:
            folder.mkdir(parents=True, exist_ok=True)
            for leftover in folder.iterdir():
                if f"-{os.getpid()}-" not in leftover.name:
                    leftover.unlink(missing_ok=True)
            self._staging_ready = True
        return folder

    def mount_points(self) -> list[str]:
        """Mount points and `/Volumes`: folders that exist in the namespace whether or not the DBFS root has them."""
        return [*sorted(self._fs_table().get("mounts") or {}), VOLUMES]

    def _resolve(self, path: str) -> StoragePath:
        table = self._fs_table()
        local = Path(_mapper(table).local(path))
        roots = [Path(str(table["dbfs_root"])), Path(str(table["volumes_root"])),
                 *(Path(str(folder)) for folder in (table.get("mounts") or {}).values())]
        root = max((r for r in roots if _within(local, r)), key=lambda r: len(r.parts))
        if not _within(Path(os.path.realpath(local)), Path(os.path.realpath(root))):
            raise InvalidParameterValue(f"Path ({path}) leads outside its storage root (a symbolic link).")
        return StoragePath(path, local, root, local == root)


def normalize(raw: Any, what: str = "path") -> str:
    """An absolute path without `.`/`..` segments, repeated or trailing slashes; refuses anything else."""
    if not isinstance(raw, str) or not raw:
        raise InvalidParameterValue(f"{what} is required and must be a string.")
    if "\x00" in raw:
        raise InvalidParameterValue(f"{what} ({raw!r}) contains a NUL character.")
    if not raw.startswith("/"):
        raise InvalidParameterValue(f"{what} ({raw}) must be absolute: start it with '/' or 'dbfs:/'.")
    parts = [p for p in raw.split("/") if p and p != "."]
    if ".." in parts:
        raise InvalidParameterValue(f"{what} ({raw}) must not contain '..' segments.")
    return "/" + "/".join(parts)


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
