"""Where the step's words go: log lines, a live line on a TTY, the final result.

Every line passes through a `Masker` holding the secret values met so far (the Databricks token,
the MLflow token), so even an error message echoed from the service cannot print one.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any, TextIO

MASK = "***"


class Masker:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self.add(*secrets)

    def add(self, *values: str | None) -> None:
        # Very short values would mask innocent text and are not real tokens anyway.
        self._secrets.update(v for v in values if v and len(v) >= 6)

    def __call__(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text


class Reporter:
    """Text mode logs to stdout (Azure ML's std_log). JSON mode keeps stdout for the one result
    document and logs to stderr."""

    def __init__(
        self, masker: Masker, *, json_mode: bool = False, log: TextIO | None = None, out: TextIO | None = None
    ) -> None:
        self.mask = masker
        self.json_mode = json_mode
        self._out = out or sys.stdout
        self._log = log or (sys.stderr if json_mode else self._out)
        self._live_shown = False

    @property
    def is_tty(self) -> bool:
        return bool(getattr(self._log, "isatty", lambda: False)())

    def info(self, line: str) -> None:
        self._clear_live()
        print(self.mask(line), file=self._log, flush=True)

    def block(self, title: str, text: str) -> None:
        """A multi-line text (an error trace) indented under a title."""
        self.info(title)
        for line in text.rstrip().splitlines():
            self.info(f"    {line}")

    def live(self, line: str) -> None:
        if not self.is_tty:
            return
        self._log.write("\r\x1b[2K" + self.mask(line))
        self._log.flush()
        self._live_shown = True

    def _clear_live(self) -> None:
        if self._live_shown:
            self._log.write("\r\x1b[2K")
            self._live_shown = False

    def document(self, data: Any) -> None:
        """A JSON document on stdout (the dry-run payload, the `--output-format json` result)."""
        self._clear_live()
        print(self.mask(json.dumps(data, indent=2, sort_keys=False)), file=self._out, flush=True)
