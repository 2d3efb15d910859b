"""Secret redaction, as Databricks does it: a fetched secret value printed by a notebook shows as [REDACTED].

The driver routes its file descriptors 1 and 2 through `RedactingPump`, a pipe whose reader
thread redacts before writing to the real log. Working at the descriptor level (rather than
wrapping `sys.stdout`) also covers output that never passes through Python's streams:
`%sh` commands, `os.system`, native libraries and child processes.
"""

from __future__ import annotations

import os
import select
import sys
import threading

REDACTED = "[REDACTED]"
# A line still without its newline (a prompt, a progress bar) is written after this long.
_FLUSH_PARTIAL_AFTER_S = 0.1


class Redactor:
    """The set of secret values fetched during a run, and their removal from text."""

    def __init__(self) -> None:
        self._values: tuple[str, ...] = ()
        self._encoded: tuple[bytes, ...] = ()
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        if not value:
            return  # an empty secret would "match" everywhere
        with self._lock:
            # Longest first, so a secret containing another one is replaced whole.
            values = sorted({*self._values, value}, key=len, reverse=True)
            self._values = tuple(values)
            self._encoded = tuple(v.encode() for v in values)

    def redact(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, REDACTED)
        return text

    def redact_bytes(self, data: bytes) -> bytes:
        for value in self._encoded:
            data = data.replace(value, REDACTED.encode())
        return data


class RedactingPump:
    """Redirect this process's stdout and stderr descriptors through a redacting pipe."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._target_fd = -1
        self._read_fd = -1
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self._target_fd = os.dup(1)  # where fd 1 pointed: the run's output.log
        self._read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 1)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self._thread = threading.Thread(target=self._pump, name="redacting-pump", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Restore the descriptors and drain the pipe (a child still holding it is not waited for)."""
        if self._thread is None:
            return
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self._target_fd, 1)  # closes our last write ends of the pipe: the reader sees EOF
        os.dup2(self._target_fd, 2)
        self._thread.join(timeout)
        self._thread = None

    def _pump(self) -> None:
        pending = b""
        while True:
            ready, _, _ = select.select([self._read_fd], [], [], _FLUSH_PARTIAL_AFTER_S if pending else None)
            if not ready:
                self._write(pending)
                pending = b""
                continue
            chunk = os.read(self._read_fd, 65536)
            if not chunk:
                break
            pending += chunk
            # Redact whole lines only, so a secret split across two reads is still found.
            cut = pending.rfind(b"\n") + 1
            if cut:
                self._write(pending[:cut])
                pending = pending[cut:]
        self._write(pending)
        os.close(self._read_fd)

    def _write(self, data: bytes) -> None:
        if not data:
            return
        data = self._redactor.redact_bytes(data)
        while data:
            written = os.write(self._target_fd, data)
            data = data[written:]
