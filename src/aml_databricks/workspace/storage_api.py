"""HTTP wiring of the DBFS API and the Files API: their routes, each authorised and erroring like the rest.

`storage_routes` gives the app the DBFS endpoints by (method, path) and one endpoint for every path
under the Files API's prefixes. Both accept the workspace token and run tokens, as Databricks accepts
a user's and a notebook's token.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from aml_databricks.workspace.dbfs import MAX_BLOCK_BYTES, Dbfs, MaxBlockSizeExceeded
from aml_databricks.workspace.errors import ApiError, InternalError, MalformedRequest
from aml_databricks.workspace.files import DIRECTORIES_PREFIX, FILES_PREFIX, Files
from aml_databricks.workspace.storage_paths import StoragePaths

Endpoint = Callable[[Request], Awaitable[Response]]
Authorize = Callable[[Request], object]
MAX_MULTIPART_UPLOAD_BYTES = 2 * 1024 * 1024 * 1024
FILE_API_PREFIXES = (FILES_PREFIX + "/", DIRECTORIES_PREFIX + "/")
log = logging.getLogger(__name__)


def storage_routes(fs_table: Callable[[], Mapping[str, Any]],
                   authorize: Authorize) -> tuple[dict[tuple[str, str], Endpoint], Endpoint]:
    """(DBFS endpoints by (method, path), the Files API endpoint for paths under FILE_API_PREFIXES)."""
    paths = StoragePaths(fs_table)
    dbfs = Dbfs(paths)
    files = Files(paths)

    def json_call(handler: Callable[[dict[str, Any]], dict[str, Any] | None]) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            async def answer() -> Response:
                return JSONResponse(handler(await _params(request)) or {})
            return await _guarded(request, authorize, answer)
        return endpoint

    async def put(request: Request) -> Response:
        async def answer() -> Response:
            if not request.headers.get("content-type", "").startswith("multipart/form-data"):
                params = await _params(request)
                dbfs.put(params.get("path"), params.get("contents"), None, params.get("overwrite"))
                return JSONResponse({})
            try:
                # a file part goes to disk as it arrives; a `contents` field is allowed its base64 size
                async with request.form(max_part_size=MAX_BLOCK_BYTES * 2) as form:
                    fields = {name: value for name, value in form.items() if isinstance(value, str)}
                    upload = next((value for value in form.values() if isinstance(value, UploadFile)), None)
                    spooled = await _spool(upload, paths.staging()) if upload is not None else None
            except MultiPartException as exc:
                raise MalformedRequest(f"The multipart body could not be read: {exc.message}") from None
            try:
                dbfs.put(fields.get("path"), fields.get("contents"), spooled, fields.get("overwrite"))
            finally:
                if spooled is not None:
                    spooled.unlink(missing_ok=True)  # refused (or already moved into place)
            return JSONResponse({})
        return await _guarded(request, authorize, answer)

    base = "/api/2.0/dbfs"
    table: dict[tuple[str, str], Endpoint] = {
        ("GET", f"{base}/get-status"): json_call(lambda p: dbfs.get_status(p.get("path"))),
        ("GET", f"{base}/list"): json_call(lambda p: dbfs.listing(p.get("path"))),
        ("GET", f"{base}/read"): json_call(lambda p: dbfs.read(p.get("path"), p.get("offset"), p.get("length"))),
        ("POST", f"{base}/put"): put,
        ("POST", f"{base}/create"): json_call(lambda p: dbfs.create(p.get("path"), p.get("overwrite"))),
        ("POST", f"{base}/add-block"): json_call(lambda p: dbfs.add_block(p.get("handle"), p.get("data"))),
        ("POST", f"{base}/close"): json_call(lambda p: dbfs.close(p.get("handle"))),
        ("POST", f"{base}/mkdirs"): json_call(lambda p: dbfs.mkdirs(p.get("path"))),
        ("POST", f"{base}/delete"): json_call(lambda p: dbfs.delete(p.get("path"), p.get("recursive"))),
        ("POST", f"{base}/move"): json_call(lambda p: dbfs.move(p.get("source_path"), p.get("destination_path"))),
    }

    async def transfer_endpoints(request: Request) -> Response:
        # Where databricks-sdk's w.files moves data: only the Files API 2.0 on this host, single-shot (no
        # presigned cloud URLs here), so uploads of any size go in one PUT instead of trying multipart first.
        async def answer() -> Response:
            host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
            return JSONResponse({"endpoints": [{"api": "FILES_API", "api_version": "2.0", "scheme": request.url.scheme,
                                                "hostname": host, "multipart_upload_supported": False}]})
        return await _guarded(request, authorize, answer)

    table[("GET", "/api/2.0/fs/endpoints")] = transfer_endpoints

    async def files_endpoint(request: Request) -> Response:
        return await _guarded(request, authorize, lambda: files.handle(request))

    return table, files_endpoint


async def _guarded(request: Request, authorize: Authorize, answer: Callable[[], Awaitable[Response]]) -> Response:
    try:
        authorize(request)
        return await answer()
    except ApiError as error:
        if request.method == "HEAD":  # a HEAD answer has no body, only the status
            return Response(status_code=error.status)
        return JSONResponse(error.body(), status_code=error.status)
    except Exception as exc:  # a bug must still answer in Databricks' error shape
        log.exception("%s %s failed", request.method, request.scope["path"])
        internal = InternalError(f"Local workspace error: {type(exc).__name__}: {exc}")
        return JSONResponse(internal.body(), status_code=internal.status)


async def _params(request: Request) -> dict[str, Any]:
    """Query parameters and a JSON body (any content type: the legacy CLI sends `text/json`)."""
    params: dict[str, Any] = dict(request.query_params)
    raw = await request.body()
    if raw.strip():
        try:
            body = json.loads(raw)
        except ValueError:
            raise MalformedRequest("The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise MalformedRequest("The request body must be a JSON object.")
        params.update({k: v for k, v in body.items() if v is not None})
    return params


async def _spool(upload: UploadFile, staging: Path) -> Path:
    """The file part, copied to a staging file in 1 MB pieces; more than 2 GB is refused."""
    target = staging / f"multipart-{os.getpid()}-{time.monotonic_ns()}"
    written = 0
    with target.open("wb") as out:
        while chunk := await upload.read(1024 * 1024):
            written += len(chunk)
            if written > MAX_MULTIPART_UPLOAD_BYTES:
                out.close()
                target.unlink(missing_ok=True)
                raise MaxBlockSizeExceeded("A multipart upload takes at most 2 GB: use create/add-block/close.")
            out.write(chunk)
    return target
