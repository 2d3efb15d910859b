"""What `pipeline run` tells its user: plain lines always, and on a terminal a live last line.

Azure ML's log viewer and CI are not terminals: there every phase is one plain line when it starts
and nothing is redrawn. On a terminal the current phase also shows as a last line that counts the
seconds ("running databricks … 12 s"), cleared before each ordinary line and drawn again after it,
so that no stretch of waiting is silent.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

REDRAW_S = 0.25
CLEAR = "\r\x1b[K"


class Console:
    def __init__(self, stream: TextIO | None = None, *, live: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self._lock = threading.Lock()
        self._phases: list[tuple[str, float]] = []  # the newest is the one shown
        self._drawn = False
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def say(self, line: str) -> None:
        """One ordinary line (the live line, if any, stays below it)."""
        with self._lock:
            self._clear()
            self.stream.write(line + "\n")
            self._draw()
            self.stream.flush()

    @contextmanager
    def phase(self, text: str, *, announce: bool = True) -> Iterator[None]:
        """Say `text …` now (`announce`); on a terminal keep a live line with its elapsed seconds until
        it ends."""
        if announce:
            self.say(f"{text} …")
        entry = (text, time.monotonic())
        with self._lock:
            self._phases.append(entry)
            self._clear()
            self._draw()
            self.stream.flush()
        if self.live and self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="console-live-line", daemon=True)
            self._ticker.start()
        try:
            yield
        finally:
            with self._lock:
                if entry in self._phases:  # close() may have cleared them meanwhile
                    self._phases.remove(entry)
                self._clear()
                self._draw()
                self.stream.flush()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self._phases.clear()
            self._clear()
            self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(REDRAW_S):
            with self._lock:
                self._clear()
                self._draw()
                self.stream.flush()

    def _draw(self) -> None:
        if self.live and self._phases:
            text, started = self._phases[-1]
            self.stream.write(f"{text} … {time.monotonic() - started:.0f} s")
            self._drawn = True

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write(CLEAR)
            self._drawn = False
