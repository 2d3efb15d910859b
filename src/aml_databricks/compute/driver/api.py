"""The driver's calls back to the workspace, with the run's bearer token.

Standard library only: the driver starts once per task run, and importing an HTTP stack or the
SDK would add to every run's start-up. Calls are few and small.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

_RETRY_STATUSES = frozenset({429, 503})
_ATTEMPTS = 5


class ApiError(Exception):
    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(f"{error_code}: {message}" if error_code else message)
        self.status = status
        self.error_code = error_code
        self.message = message


class WorkspaceApi:
    def __init__(self, host: str, token: str, timeout: float = 60.0) -> None:
        self._host = host.rstrip("/")
        self._token = token
        self._timeout = timeout

    @property
    def host(self) -> str:
        return self._host

    @property
    def token(self) -> str:
        return self._token

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return self._call("GET", path + query, None)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", path, body)

    def _call(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(_ATTEMPTS):
            request = urllib.request.Request(self._host + path, data=data, method=method)
            request.add_header("Authorization", f"Bearer {self._token}")
            if data is not None:
                request.add_header("Content-Type", "application/json")
            try:
                with urllib.request.urlopen(request, timeout=self._timeout) as response:
                    payload = response.read()
                    return json.loads(payload) if payload.strip() else {}
            except urllib.error.HTTPError as error:
                if error.code in _RETRY_STATUSES and attempt + 1 < _ATTEMPTS:
                    time.sleep(_retry_delay(error.headers.get("Retry-After"), attempt))
                    continue
                raise _api_error(error) from None
            except (urllib.error.URLError, ConnectionError) as error:
                # A dropped connection: every call the driver retries is a read or carries an
                # idempotency token, so trying again can't apply anything twice.
                if attempt + 1 < _ATTEMPTS:
                    time.sleep(_retry_delay(None, attempt))
                    continue
                raise ApiError(0, "", f"workspace API unreachable at {self._host}: {error}") from None
        raise AssertionError("unreachable")


def _retry_delay(retry_after: str | None, attempt: int) -> float:
    try:
        return min(float(retry_after), 5.0) if retry_after else 0.2 * (1 << attempt)
    except ValueError:
        return 0.2 * (1 << attempt)


def _api_error(error: urllib.error.HTTPError) -> ApiError:
    try:
        body = json.loads(error.read() or b"{}")
    except ValueError:
        body = {}
    return ApiError(error.code, str(body.get("error_code", "")), str(body.get("message", error.reason)))
