"""JSON across the wire: one request's parameters read safely (size, encoding, depth, `null`), and
response bodies encoded so that nothing stored can make a response fail.

Everything a client sends passes here once, so the rules a handler may rely on hold everywhere:
the body is no larger than Databricks accepts (checked against Content-Length first, then while
streaming, so an oversized body is never held in memory), it is UTF-8 JSON or a well-formed
multipart form, no string holds a lone surrogate (which SQLite, logs and every response would
fail to encode later), nesting is shallow, and a `null` field means the field is absent, as
Databricks treats it (Prefect and other generated clients send every unset field as `null`).
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from aml_databricks.workspace.errors import MalformedRequest, RequestTooLarge

# Databricks: "The maximum allowed size of a request to the Jobs API is 10MB." The same bound is
# used for every route, except workspace/import whose 10 MB limit is on the decoded notebook, so
# its base64 body may be a third larger.
MAX_REQUEST_BYTES = 10 * 1024 * 1024
MAX_IMPORT_REQUEST_BYTES = 14 * 1024 * 1024
# Real payloads nest about six deep (tasks → notebook_task → base_parameters); 64 leaves room
# and keeps every recursive walk far from Python's recursion limit.
MAX_DEPTH = 64
# Bodies that carry a user's own JSON value, where a null is data (dbutils.jobs.taskValues.set).
USER_VALUE_PATHS = ("/api/2.0/local/task-values/set",)


def limit_for(path: str) -> int:
    return MAX_IMPORT_REQUEST_BYTES if path.endswith("/workspace/import") else MAX_REQUEST_BYTES


async def read_params(request: Request) -> dict[str, Any]:
    """Query and body parameters merged, checked, and (except in a user's own values) with `null` fields
    dropped."""
    params: dict[str, Any] = dict(request.query_params)
    limit = limit_for(request.scope["path"])
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(limit)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        params.update(await _form(request, limit))
    elif request.method != "GET" or _has_body(request.scope):
        raw = await _body(request, limit)
        if raw.strip():
            params.update(_json_object(raw, drop_nulls=request.scope["path"] not in USER_VALUE_PATHS))
    return params


async def _body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _form(request: Request, limit: int) -> dict[str, Any]:
    try:
        form = await request.form(max_part_size=limit)
    except (HTTPException, MultiPartException, ValueError, KeyError) as exc:  # a bad or missing boundary
        detail = getattr(exc, "detail", None) or str(exc)
        raise MalformedRequest(f"The multipart body is malformed: {detail}") from None
    params: dict[str, Any] = {}
    for name, value in form.items():
        params[name] = await value.read() if hasattr(value, "read") else value
    check_value(params)
    return params


def _json_object(raw: bytes, *, drop_nulls: bool) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except RecursionError:
        raise MalformedRequest(f"The request body nests deeper than {MAX_DEPTH} levels.") from None
    except ValueError:  # includes UnicodeDecodeError: the body is not UTF-8
        raise MalformedRequest("The request body is not valid UTF-8 JSON.") from None
    if not isinstance(body, dict):
        raise MalformedRequest("The request body must be a JSON object.")
    return check_value(body, drop_nulls=drop_nulls)  # type: ignore[no-any-return]


def check_value(value: Any, *, drop_nulls: bool = True) -> Any:
    """Refuse deep nesting and lone surrogates, and drop `null` fields in place; iterative, so no depth
    can overflow the stack."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise MalformedRequest(f"The request body nests deeper than {MAX_DEPTH} levels.")
        if isinstance(item, dict):
            for key in [k for k, v in item.items() if v is None and drop_nulls]:
                del item[key]
            for key, child in item.items():
                _check_text(key)
                pending.append((child, depth + 1))
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            _check_text(item)
    return value


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedRequest("The request holds a string that is not valid Unicode (a lone surrogate).") \
            from None


def _has_body(scope: MutableMapping[str, Any]) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            return True
    return False


def encode_json(content: Any) -> bytes:
    """A response body. A lone surrogate stored before requests were checked is sent as `?` rather than
    failing every listing that holds it with a 500."""
    text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8", errors="replace")
