"""A host name that does not resolve fails the request at once instead of being retried for minutes.

Why: notebooks talk to hosts on the internet (`mlflow.set_tracking_uri("databricks")` with
`DATABRICKS_HOST=https://demo.cloud.databricks.com`, REST APIs, package indexes). On a machine without
the internet their names don't resolve, and two widely used retry policies treat that as a passing
glitch: databricks-sdk retries every connection error for `retry_timeout_seconds` (300 s by default,
and its host-metadata lookup uses a client whose timeout can't be set), and urllib3's `Retry` (used by
MLflow: 7 retries with exponential backoff, ~4 minutes) counts it as a connect error. The run then sits
in sleeps until its timeout instead of failing with the one line that says what is wrong.

So the driver takes name-resolution failures out of those two retry policies only: the exception
types a notebook can catch stay the same (`requests.ConnectionError`, urllib3's `MaxRetryError`
caused by `NameResolutionError`), they just arrive after the first attempt. Databricks' Go SDK does the
same (it retries refused or reset connections and timeouts, not "no such host"). Connection refused,
resets and timeouts keep their retries: a server that is starting up is worth waiting for.
"""

from __future__ import annotations

import socket
import types
from typing import Any

from aml_databricks.compute.driver.import_hooks import when_imported

_MESSAGE_MARKERS = ("Failed to resolve", "Name or service not known", "nodename nor servname",
                    "Temporary failure in name resolution", "getaddrinfo failed")


def is_name_resolution_failure(error: BaseException | None) -> bool:
    """True when `error`, or anything it wraps, is a failure to resolve a host name."""
    seen: set[int] = set()
    pending: list[object] = [error]
    while pending:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, socket.gaierror) or type(item).__name__ == "NameResolutionError":
            return True
        pending += [item.__cause__, item.__context__, getattr(item, "reason", None), *item.args]
    return error is not None and any(marker in str(error) for marker in _MESSAGE_MARKERS)


def install() -> None:
    """Patch the retry policies of urllib3 and databricks-sdk in this process when (and if) the run's
    code imports them: importing databricks-sdk to patch it would cost every run ~1 s."""
    when_imported("urllib3.util.retry", _patch_urllib3)
    when_imported("databricks.sdk._base_client", _patch_databricks_sdk)


def _patch_urllib3(retry_module: types.ModuleType) -> None:
    from urllib3.exceptions import MaxRetryError

    Retry = retry_module.Retry
    original = Retry.increment
    if getattr(original, "_fails_unresolved_hosts", False):
        return

    def increment(self: Any, method: str | None = None, url: str | None = None, response: Any = None,
                  error: Exception | None = None, _pool: Any = None, _stacktrace: Any = None) -> Any:
        if error is not None and self.total is not False and is_name_resolution_failure(error):
            # what urllib3 raises when the retries are used up, so callers see the usual error
            raise MaxRetryError(_pool, url or "", error) from error
        return original(self, method, url, response, error, _pool, _stacktrace)

    increment._fails_unresolved_hosts = True  # type: ignore[attr-defined]
    Retry.increment = increment


def _patch_databricks_sdk(base_client_module: types.ModuleType) -> None:
    client_class = base_client_module._BaseClient
    original = client_class._is_retryable
    if getattr(original, "_fails_unresolved_hosts", False):
        return

    def is_retryable(err: BaseException, method: str | None = None) -> str | None:
        if is_name_resolution_failure(err):
            return None
        result: str | None = original(err, method=method)
        return result

    is_retryable._fails_unresolved_hosts = True  # type: ignore[attr-defined]
    client_class._is_retryable = staticmethod(is_retryable)
