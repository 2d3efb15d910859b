"""Secret redaction, as Databricks does it: a fetched secret value printed by a task shows as [REDACTED].

The driver's half. The redaction of a run's output happens outside the driver, in the executor's
`LogPump` (compute/host/logpump.py): the driver's stdout and stderr are one pipe that the pump copies
to output.log, and the driver reports every secret value it fetches on a second pipe (`SecretChannel`)
before handing the value to the task's code. The driver redacts result.json's fields itself with the
same `Redactor`.
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Callable

from aml_databricks.compute.protocol import SECRET_FD_ENV

REDACTED = "[REDACTED]"


class Redactor:
    """The set of secret values fetched during a run, and their removal from text."""

    def __init__(self, on_add: Callable[[str], None] | None = None) -> None:
        self._values: tuple[str, ...] = ()
        self._encoded: tuple[bytes, ...] = ()
        self._lock = threading.Lock()
        self._on_add = on_add

    def add(self, value: str) -> None:
        if not value:
            return  # an empty secret would "match" everywhere
        with self._lock:
            if value in self._values:
                return
            # Longest first, so a secret containing another one is replaced whole.
            values = sorted({*self._values, value}, key=len, reverse=True)
            self._values = tuple(values)
            self._encoded = tuple(v.encode() for v in values)
        if self._on_add is not None:
            self._on_add(value)

    def redact(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, REDACTED)
        return text

    def redact_bytes(self, data: bytes) -> bytes:
        for value in self._encoded:
            data = data.replace(value, REDACTED.encode())
        return data


class SecretChannel:
    """The driver's end: one base64 line per secret value, written before the value is used."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls) -> SecretChannel | None:
        fd = os.environ.pop(SECRET_FD_ENV, "")  # children of the task need not know it
        return cls(int(fd)) if fd.isdigit() else None

    def report(self, value: str) -> None:
        line = base64.b64encode(value.encode()) + b"\n"
        with self._lock:
            while line:
                line = line[os.write(self._fd, line) :]
