"""A query on `samples.*` made while the workspace still installs them waits for them instead of failing.

The host installs the sample tables in the background after a data dir's first server start
(compute/host/samples.py) and keeps a marker file while it does. Here the Spark Connect client's
calls that analyse or execute a plan are wrapped: when one fails because a `samples` table or the
schema is not found while the marker exists, the driver asks for the install to start now and makes
the same call again every RETRY_S until it succeeds or the install has ended (then once more): the
tables are made one by one, and a notebook that reads `samples.iris` need not wait for the others.
Nothing ran on the server for a call that failed analysis, so making it again is safe. Every request
is built inside these calls, so each attempt has an operation id of its own.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

WAIT_LIMIT_S = 600.0
POLL_S = 0.1
RETRY_S = 0.5  # while the install runs, a call that found no `samples` table is made again this often
WANTED = "samples-wanted"  # compute/host/samples.py: install now, the server need not be idle first
_CALLS = ("_analyze", "to_table", "to_pandas", "execute_command")
_STREAMS = ("to_table_as_iterator", "execute_command_as_iterator")
_MISSING = ("TABLE_OR_VIEW_NOT_FOUND", "SCHEMA_NOT_FOUND")
_PATCHED = "_aml_databricks_samples"


def install(pending: str) -> None:
    """Wrap this process's Connect client calls to wait on the `pending` marker (see the module doc)."""
    from pyspark.sql.connect.client.core import SparkConnectClient

    marker = Path(pending)
    for name in _CALLS:
        method = getattr(SparkConnectClient, name, None)
        if method is not None and not getattr(method, _PATCHED, False):
            setattr(SparkConnectClient, name, _waiting(method, marker))
    for name in _STREAMS:
        method = getattr(SparkConnectClient, name, None)
        if method is not None and not getattr(method, _PATCHED, False):
            setattr(SparkConnectClient, name, _waiting_stream(method, marker))


def missing_samples(error: BaseException) -> bool:
    """The error says a `samples` table (or the schema) does not exist."""
    text = str(error)
    return any(code in text for code in _MISSING) and "samples" in text.lower()


def wait_for_samples(marker: Path, limit_s: float = WAIT_LIMIT_S) -> bool:
    """Ask for the install now and wait until it has ended; False if none was under way."""
    if not marker.exists():
        return False
    with contextlib.suppress(OSError):  # without it the install still happens once the server is idle
        (marker.parent / WANTED).touch()
    deadline = time.monotonic() + limit_s
    while marker.exists() and time.monotonic() < deadline:
        time.sleep(POLL_S)
    return True


class _Retries:
    """When a call that found no `samples` table is made again: while an install is under way (after
    waiting up to RETRY_S, less if it ends), and once after it ended, whenever that was."""

    def __init__(self, marker: Path) -> None:
        self._marker = marker
        self._deadline = time.monotonic() + WAIT_LIMIT_S
        self._waited = False
        self._after_end = False

    def again(self, error: Exception) -> bool:
        if not missing_samples(error) or time.monotonic() >= self._deadline:
            return False
        if self._marker.exists():
            wait_for_samples(self._marker, RETRY_S)
            self._waited = True
            return True
        if self._waited and not self._after_end:  # it ended between the call and this check
            self._after_end = True
            return True
        return False


def _waiting(method: Callable[..., Any], marker: Path) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        retries = _Retries(marker)
        while True:
            try:
                return method(self, *args, **kwargs)
            except Exception as error:
                if not retries.again(error):
                    raise

    setattr(call, _PATCHED, True)
    return call


def _waiting_stream(method: Callable[..., Iterator[Any]], marker: Path) -> Callable[..., Iterator[Any]]:
    @functools.wraps(method)
    def stream(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        retries = _Retries(marker)
        while True:
            started = False
            try:
                for item in method(self, *args, **kwargs):
                    started = True
                    yield item
                return
            except Exception as error:
                if started or not retries.again(error):
                    raise

    setattr(stream, _PATCHED, True)
    return stream
