"""The executor's end of secret redaction: copy the driver's output to output.log, redacting the secret
values the driver reports on its secrets pipe (compute/driver/redaction.py is the driver's end).

Working on the descriptors covers output that never passes through Python's streams (`%sh`,
`os.system`, native code, child processes), and living outside the driver means the last lines
before a crash or a cancel still reach the log.
"""

from __future__ import annotations

import base64
import os
import select
import threading
from pathlib import Path

from aml_databricks.compute.driver.redaction import Redactor

# A line still without its newline (a prompt, a progress bar) is written after this long.
_FLUSH_PARTIAL_AFTER_S = 0.1


class LogPump:
    """The executor's end: copy the driver's output to the log, redacting the secrets it reports."""

    def __init__(self, output_fd: int, secrets_fd: int, log_path: Path) -> None:
        self.redactor = Redactor()
        self._output_fd = output_fd
        self._secrets_fd: int | None = secrets_fd
        self._secrets_pending = b""
        self._log_path = log_path
        self._thread = threading.Thread(target=self._run, name="log-pump", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        with open(self._log_path, "ab") as log:
            try:
                self._copy(log.fileno())
            finally:
                os.close(self._output_fd)
                if self._secrets_fd is not None:
                    os.close(self._secrets_fd)

    def _copy(self, log_fd: int) -> None:
        pending = b""
        while True:
            watched = [self._output_fd] + ([self._secrets_fd] if self._secrets_fd is not None else [])
            timeout = _FLUSH_PARTIAL_AFTER_S if pending else None
            ready, _, _ = select.select(watched, [], [], timeout)
            if self._secrets_fd in ready:
                self._read_secrets()
            if not ready:
                _write_all(log_fd, self.redactor.redact_bytes(pending))
                pending = b""
                continue
            if self._output_fd not in ready:
                continue
            chunk = os.read(self._output_fd, 65536)
            if not chunk:
                break
            # A secret reported just before this output was printed is in the secrets pipe by now.
            self._read_secrets()
            pending += chunk
            # Redact whole lines only, so a secret split across two reads is still found.
            cut = pending.rfind(b"\n") + 1
            if cut:
                _write_all(log_fd, self.redactor.redact_bytes(pending[:cut]))
                pending = pending[cut:]
        _write_all(log_fd, self.redactor.redact_bytes(pending))

    def _read_secrets(self) -> None:
        while self._secrets_fd is not None and select.select([self._secrets_fd], [], [], 0)[0]:
            chunk = os.read(self._secrets_fd, 65536)
            if not chunk:
                os.close(self._secrets_fd)
                self._secrets_fd = None
                break
            self._secrets_pending += chunk
            *lines, self._secrets_pending = self._secrets_pending.split(b"\n")
            for line in lines:
                self.redactor.add(base64.b64decode(line).decode(errors="replace"))


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]
