"""The Files API (`/api/2.0/fs/files/<path>`, `/api/2.0/fs/directories/<path>`) on `/Volumes/...`.

A plain HTTP file API, not JSON RPC: an upload is the raw request body (streamed to a staging file,
then renamed into place), a download the raw file with `Content-Length`, `Content-Type` and
`Last-Modified` (what databricks-sdk reads) and single or multiple `Range`s; HEAD answers the same
headers with no body. Errors are Databricks' JSON, with the codes of the newer APIs: 404 NOT_FOUND,
409 ALREADY_EXISTS (an upload with `overwrite=false` onto a file, a directory where a file is in the
way), 400 DIRECTORY_NOT_EMPTY. A directory listing pages by name: `page_size` (at most and by default
1000) and an opaque `page_token`, `next_page_token` only while more entries follow.
"""

from __future__ import annotations

import base64
import binascii
import os
import shutil
import time
from email.utils import formatdate
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from aml_databricks.workspace.errors import AlreadyExists, ApiError, DirectoryNotEmpty, InvalidParameterValue, NotFound
from aml_databricks.workspace.storage_paths import StoragePath, StoragePaths

FILES_PREFIX = "/api/2.0/fs/files"
DIRECTORIES_PREFIX = "/api/2.0/fs/directories"
MAX_PAGE_SIZE = 1000


def _headers(local: Path) -> dict[str, str]:
    stat = local.stat()
    return {"content-length": str(stat.st_size), "content-type": "application/octet-stream",
            "last-modified": formatdate(stat.st_mtime, usegmt=True)}


def _flag(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    if value.lower() not in ("true", "false"):
        raise InvalidParameterValue(f"overwrite must be true or false, got {value!r}.")
    return value.lower() == "true"


class Files:
    def __init__(self, paths: StoragePaths) -> None:
        self.paths = paths

    async def handle(self, request: Request) -> Response:
        """Dispatch one call under either prefix; the path after the prefix is the volume path."""
        route = request.scope["path"]
        method = request.method
        if route.startswith(FILES_PREFIX + "/"):
            where = self.paths.volume(route[len(FILES_PREFIX):])
            if method in ("GET", "HEAD"):
                return self._download(request, where)
            if method == "PUT":
                return await self._upload(request, where)
            if method == "DELETE":
                return self._delete_file(where)
        elif route.startswith(DIRECTORIES_PREFIX + "/"):
            where = self.paths.volume(route[len(DIRECTORIES_PREFIX):])
            if method == "GET":
                return self._list(request, where)
            if method == "HEAD":
                self._require_dir(where)
                return Response(status_code=200)
            if method == "PUT":
                return self._create_directory(where)
            if method == "DELETE":
                return self._delete_directory(where)
        problem = InvalidParameterValue(f"Method {method} is not allowed for {route}.")
        problem.status = 405
        return JSONResponse(problem.body(), status_code=problem.status)

    # -- files ----------------------------------------------------------------------------

    def _download(self, request: Request, where: StoragePath) -> Response:
        if not where.local.is_file():
            raise NotFound(f"The file {where.path} does not exist.")
        if request.method == "HEAD":
            return Response(status_code=200, headers=_headers(where.local))
        # Starlette serves Range (single and multiple) and If-Range itself; HEAD is answered above
        headers = _headers(where.local)
        return FileResponse(where.local, media_type=headers["content-type"], stat_result=where.local.stat(),
                            headers={"last-modified": headers["last-modified"]})

    async def _upload(self, request: Request, where: StoragePath) -> Response:
        overwrite = _flag(request.query_params.get("overwrite"), default=True)
        self._check_file_target(where, overwrite)
        staged = self.paths.staging() / f"put-{os.getpid()}-{time.monotonic_ns()}"
        try:
            with staged.open("wb") as out:
                async for chunk in request.stream():
                    out.write(chunk)
            self._check_file_target(where, overwrite)  # again: another upload may have finished meanwhile
            self._make_parents(where.local.parent, where.path)
            shutil.move(staged, where.local)
        finally:
            staged.unlink(missing_ok=True)
        return Response(status_code=204)

    def _delete_file(self, where: StoragePath) -> Response:
        if not where.local.is_file():
            raise NotFound(f"The file {where.path} does not exist.")
        where.local.unlink()
        return Response(status_code=204)

    def _check_file_target(self, where: StoragePath, overwrite: bool) -> None:
        if where.local.is_dir():
            raise AlreadyExists(f"A directory exists at {where.path}.")
        if where.local.exists() and not overwrite:
            raise AlreadyExists(f"The file {where.path} already exists and overwrite is false.")

    # -- directories ----------------------------------------------------------------------

    def _require_dir(self, where: StoragePath) -> None:
        if not where.local.is_dir():
            raise NotFound(f"The directory {where.path} does not exist.")

    def _list(self, request: Request, where: StoragePath) -> Response:
        self._require_dir(where)
        size = _page_size(request.query_params.get("page_size"))
        after = _decode_token(request.query_params.get("page_token"))
        names = sorted(name for name in os.listdir(where.local) if name > after)
        contents: list[dict[str, Any]] = []
        last = after
        for name in names:
            if len(contents) == size:
                break
            last = name
            try:
                child = self.paths.volume(where.child(name))
                stat = child.local.stat()
            except (ApiError, OSError):
                continue  # a dangling link or one leading out of the volume is not listed
            entry: dict[str, Any] = {"path": child.path, "name": name, "is_directory": child.local.is_dir(),
                                     "last_modified": int(stat.st_mtime * 1000)}
            if not entry["is_directory"]:
                entry["file_size"] = stat.st_size
            contents.append(entry)
        body: dict[str, Any] = {"contents": contents}
        if names and last != names[-1]:
            body["next_page_token"] = base64.urlsafe_b64encode(last.encode()).decode()
        return JSONResponse(body)

    def _create_directory(self, where: StoragePath) -> Response:
        self._make_parents(where.local, where.path)
        return Response(status_code=204)

    def _delete_directory(self, where: StoragePath) -> Response:
        self._require_dir(where)
        if where.path.count("/") <= 4:
            raise InvalidParameterValue(f"{where.path} is a volume: the Files API deletes directories inside it.")
        if any(os.scandir(where.local)):
            raise DirectoryNotEmpty(f"The directory {where.path} is not empty: delete its contents first.")
        where.local.rmdir()
        return Response(status_code=204)

    def _make_parents(self, folder: Path, path: str) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise AlreadyExists(f"A file is in the way of {path}.") from None


def _page_size(raw: str | None) -> int:
    if raw is None:
        return MAX_PAGE_SIZE
    try:
        size = int(raw)
    except ValueError:
        raise InvalidParameterValue(f"page_size must be an integer, got {raw!r}.") from None
    if size < 0:
        raise InvalidParameterValue(f"page_size must not be negative, got {size}.")
    return min(size, MAX_PAGE_SIZE) or MAX_PAGE_SIZE


def _decode_token(raw: str | None) -> str:
    if not raw:
        return ""
    try:
        return base64.urlsafe_b64decode(raw.encode()).decode()
    except (binascii.Error, ValueError):
        raise InvalidParameterValue("page_token is not a token this listing returned.") from None
