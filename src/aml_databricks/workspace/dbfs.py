"""The DBFS API 2.0 (`/api/2.0/dbfs/*`) on the local files behind DBFS paths, with Databricks' limits.

What Databricks documents, and this does:
- `read` returns at most 1 MB (`length` defaults to 0.5 MB; more is MAX_READ_SIZE_EXCEEDED); a directory,
  a negative offset or length is INVALID_PARAMETER_VALUE; past the end it returns `bytes_read: 0`.
- `put` with `contents` (base64) takes at most 1 MB, `add-block` a block of at most 1 MB
  (MAX_BLOCK_SIZE_EXCEEDED); a multipart `put` with a file part takes up to 2 GB.
- `create` hands out a handle; `add-block` appends to it, `close` puts the file in place. A handle
  unused for 10 minutes is dropped (then RESOURCE_DOES_NOT_EXIST). Blocks are staged outside the
  target folder, so a half-written upload never shows up in a listing.
- `create`/`put` on an existing path without `overwrite` (or on a directory) is RESOURCE_ALREADY_EXISTS;
  `mkdirs` is `mkdir -p`, RESOURCE_ALREADY_EXISTS when a file is in the way.
- `delete` of a non-empty directory without `recursive` is IO_ERROR; of a missing path, a success.
- `move` of a missing source is RESOURCE_DOES_NOT_EXIST, onto an existing file RESOURCE_ALREADY_EXISTS;
  into an existing directory it moves the source inside it (Hadoop's rename, what DBFS runs on).
Mount points and `/Volumes` appear in the listing of their parent folders, as on Databricks.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aml_databricks.workspace.errors import (
    ApiError,
    InvalidParameterValue,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
)
from aml_databricks.workspace.storage_paths import StoragePath, StoragePaths

MB = 1024 * 1024
MAX_BLOCK_BYTES = MB
MAX_READ_BYTES = MB
DEFAULT_READ_BYTES = MB // 2
HANDLE_IDLE_SECONDS = 600


class MaxBlockSizeExceeded(ApiError):
    error_code = "MAX_BLOCK_SIZE_EXCEEDED"


class MaxReadSizeExceeded(ApiError):
    error_code = "MAX_READ_SIZE_EXCEEDED"


class IoError(ApiError):
    error_code = "IO_ERROR"


def not_found(path: str) -> ResourceDoesNotExist:
    return ResourceDoesNotExist(f"No file or directory exists on path {path}.")


def flag(value: Any) -> bool:
    """A boolean parameter as JSON (`true`) or a form/query field (`true`, `True`)."""
    return value is True or str(value).lower() == "true"


def integer(value: Any, name: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool):
        raise InvalidParameterValue(f"{name} must be an integer, got {value!r}.")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidParameterValue(f"{name} must be an integer, got {value!r}.") from None


def decode_block(data: Any, name: str) -> bytes:
    if not isinstance(data, str):
        raise InvalidParameterValue(f"{name} must be a base64-encoded string.")
    if len(data) > (MAX_BLOCK_BYTES + 2) // 3 * 4 + 4:  # refuse before decoding a huge string
        raise MaxBlockSizeExceeded(f"The {name} exceeds the limit of {MAX_BLOCK_BYTES} bytes.")
    try:
        block = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidParameterValue(f"{name} must be base64-encoded.") from None
    if len(block) > MAX_BLOCK_BYTES:
        raise MaxBlockSizeExceeded(f"The {name} exceeds the limit of {MAX_BLOCK_BYTES} bytes.")
    return block


def file_info(where: StoragePath) -> dict[str, Any]:
    stat = where.local.stat()
    is_dir = where.local.is_dir()
    return {"path": where.path, "is_dir": is_dir, "file_size": 0 if is_dir else stat.st_size,
            "modification_time": int(stat.st_mtime * 1000)}


@dataclass
class _Upload:
    target: StoragePath
    overwrite: bool
    staged: Path
    touched: float


class Dbfs:
    def __init__(self, paths: StoragePaths, clock: Callable[[], float] = time.monotonic) -> None:
        self.paths = paths
        self.clock = clock
        self._uploads: dict[int, _Upload] = {}
        self._handles = itertools.count(1)
        self._lock = threading.Lock()

    # -- reads ----------------------------------------------------------------------------

    def get_status(self, path: Any) -> dict[str, Any]:
        where = self.paths.dbfs(path)
        if where.local.exists():
            return file_info(where)
        if self._is_virtual_dir(where.path):
            return {"path": where.path, "is_dir": True, "file_size": 0, "modification_time": 0}
        raise not_found(where.path)

    def listing(self, path: Any) -> dict[str, Any]:
        where = self.paths.dbfs(path)
        if where.local.is_file():
            return {"files": [file_info(where)]}
        files: dict[str, dict[str, Any]] = {}
        if where.local.is_dir():
            for entry in sorted(os.listdir(where.local)):
                try:
                    child = self.paths.dbfs(where.child(entry))
                    files[child.path] = file_info(child)
                except (ApiError, OSError):
                    continue  # a dangling link or one leading out of the root is not listed
        elif not self._is_virtual_dir(where.path):
            raise not_found(where.path)
        for point in self._virtual_children(where.path):
            files.setdefault(point, {"path": point, "is_dir": True, "file_size": 0, "modification_time": 0})
        return {"files": [files[name] for name in sorted(files)]}

    def read(self, path: Any, offset: Any, length: Any) -> dict[str, Any]:
        where = self.paths.dbfs(path)
        start = integer(offset, "offset", 0)
        size = integer(length, "length", DEFAULT_READ_BYTES)
        if start < 0 or size < 0:
            raise InvalidParameterValue(f"offset and length must not be negative (got {start} and {size}).")
        if size > MAX_READ_BYTES:
            raise MaxReadSizeExceeded(f"Cannot read more than {MAX_READ_BYTES} bytes at a time, asked {size}.")
        if where.local.is_dir() or self._is_virtual_dir(where.path):
            raise InvalidParameterValue(f"Cannot read {where.path}: it is a directory.")
        try:
            with where.local.open("rb") as handle:
                handle.seek(start)
                data = handle.read(size)
        except FileNotFoundError:
            raise not_found(where.path) from None
        return {"bytes_read": len(data), "data": base64.b64encode(data).decode()}

    # -- writes ---------------------------------------------------------------------------

    def put(self, path: Any, contents: Any, upload: Path | None, overwrite: Any) -> None:
        """`contents` (base64, <= 1 MB) or a file part already spooled to `upload`."""
        where = self.paths.dbfs(path)
        self._check_writable(where, flag(overwrite))
        staged = self._stage()
        if upload is not None:
            shutil.move(upload, staged)
        else:
            staged.write_bytes(decode_block(contents, "contents") if contents is not None else b"")
        self._place(staged, where, flag(overwrite))

    def create(self, path: Any, overwrite: Any) -> dict[str, Any]:
        where = self.paths.dbfs(path)
        self._check_writable(where, flag(overwrite))
        self._drop_idle()
        staged = self._stage()
        staged.touch()
        with self._lock:
            handle = next(self._handles)
            self._uploads[handle] = _Upload(where, flag(overwrite), staged, self.clock())
        return {"handle": handle}

    def add_block(self, handle: Any, data: Any) -> None:
        block = decode_block(data, "data")
        upload = self._upload(handle)
        with upload.staged.open("ab") as out:
            out.write(block)
        upload.touched = self.clock()

    def close(self, handle: Any) -> None:
        upload = self._upload(handle)
        with self._lock:
            self._uploads.pop(upload_key(handle), None)
        self._place(upload.staged, upload.target, upload.overwrite)

    def mkdirs(self, path: Any) -> None:
        where = self.paths.dbfs(path)
        try:
            where.local.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ResourceAlreadyExists(
                f"Cannot create directory {where.path}: a file exists on its path.") from None

    def delete(self, path: Any, recursive: Any) -> None:
        where = self.paths.dbfs(path)
        if where.is_root or where.path in self.paths.mount_points():
            raise InvalidParameterValue(f"Cannot delete {where.path}: it is a storage root or a mount point.")
        local = where.local
        if local.is_symlink() or local.is_file():
            local.unlink()
        elif local.is_dir():
            if flag(recursive):
                shutil.rmtree(local)
            else:
                try:
                    local.rmdir()
                except OSError:
                    raise IoError(f"Directory {where.path} is not empty: use recursive delete or remove "
                                  "its contents first.") from None
        # a missing path is a success, as on Databricks

    def move(self, source_path: Any, destination_path: Any) -> None:
        source = self.paths.dbfs(source_path, "source_path")
        target = self.paths.dbfs(destination_path, "destination_path")
        if not source.local.exists() and not source.local.is_symlink():
            raise ResourceDoesNotExist(f"No file or directory exists on path {source.path}.")
        if source.is_root or source.path in self.paths.mount_points():
            raise InvalidParameterValue(f"Cannot move {source.path}: it is a storage root or a mount point.")
        if target.local.is_dir():
            target = self.paths.dbfs(target.child(posixpath_name(source.path)), "destination_path")
        if target.local.exists():
            raise ResourceAlreadyExists(f"A file or directory already exists on path {target.path}.")
        if target.path.startswith(source.path + "/"):
            raise InvalidParameterValue(f"Cannot move {source.path} into itself ({target.path}).")
        self._make_parent(target)
        shutil.move(source.local, target.local)

    # -- helpers --------------------------------------------------------------------------

    def _check_writable(self, where: StoragePath, overwrite: bool) -> None:
        if where.local.is_dir() or self._is_virtual_dir(where.path):
            raise ResourceAlreadyExists(f"A directory already exists on path {where.path}.")
        if where.local.exists() and not overwrite:
            raise ResourceAlreadyExists(f"A file already exists on path {where.path}: set overwrite to replace it.")

    def _place(self, staged: Path, where: StoragePath, overwrite: bool) -> None:
        try:
            self._check_writable(where, overwrite)
            self._make_parent(where)
            shutil.move(staged, where.local)  # a rename when the staging folder is on the same disk
        finally:
            staged.unlink(missing_ok=True)

    def _make_parent(self, where: StoragePath) -> None:
        try:
            where.local.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ResourceAlreadyExists(f"Cannot create {where.path}: a file exists on its path.") from None

    def _stage(self) -> Path:
        return self.paths.staging() / f"upload-{os.getpid()}-{time.monotonic_ns()}"

    def _upload(self, handle: Any) -> _Upload:
        self._drop_idle()
        with self._lock:
            upload = self._uploads.get(upload_key(handle))
        if upload is None:
            raise ResourceDoesNotExist(f"Handle {handle} does not exist (closed, or idle for over 10 minutes).")
        return upload

    def _drop_idle(self) -> None:
        now = self.clock()
        with self._lock:
            idle = [h for h, u in self._uploads.items() if now - u.touched > HANDLE_IDLE_SECONDS]
            dropped = [self._uploads.pop(h) for h in idle]
        for upload in dropped:
            upload.staged.unlink(missing_ok=True)

    def _is_virtual_dir(self, path: str) -> bool:
        """A mount point, or a folder that holds one (`/mnt` for `/mnt/x`), exists even if no folder backs it."""
        return any(point == path or point.startswith(path.rstrip("/") + "/") for point in self.paths.mount_points())

    def _virtual_children(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        return sorted({prefix + point[len(prefix):].split("/")[0]
                       for point in self.paths.mount_points() if point.startswith(prefix)})


def upload_key(handle: Any) -> int:
    try:
        return int(handle)
    except (TypeError, ValueError):
        raise InvalidParameterValue(f"handle must be an integer, got {handle!r}.") from None


def posixpath_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]
