"""Stopping `pipeline run` at any moment, in bounded time.

The first Ctrl-C or SIGTERM raises `StoppedError` in the main thread, so that everything unwinds
the ordinary way: the running node gets SIGTERM (the step cancels its Databricks run), the local
workspace stops its runs and Spark servers, mounts lent by a running workspace are put back.
Further signals are only noted: a second Ctrl-C must not cut that cleanup short and leave a JVM.

Two things can still hang a stopping Python process, and both are cut off here:
- pyspark registers an `atexit` handler per Spark Connect client; a client that was talking to a
  server when the stop came (a cold start's first query) is never closed, and at exit that
  handler retries the dead server for minutes. `hard_exit` leaves with `os._exit` once cleanup is
  done, so no exit handler runs (everything the command owns has been stopped explicitly).
- cleanup itself may block (a server that does not answer). A watchdog started by the first
  signal runs the registered last-resort hooks (SIGKILL to node process groups and to this
  workspace's Spark servers) and exits after `WATCHDOG_S`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType

from aml_databricks.errors import StoppedError

WATCHDOG_S = 8.5  # the whole stop stays within 10 s
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


class Stopper:
    def __init__(self) -> None:
        self.signum: int | None = None
        self._last_resort: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(signal.Signals(self.signum), 130) if self.signum is not None else 0

    def on_last_resort(self, hook: Callable[[], None]) -> None:
        """Run `hook` if cleanup overruns the watchdog (it must be harmless once its part has stopped)."""
        with self._lock:
            self._last_resort.append(hook)

    @contextmanager
    def installed(self) -> Iterator[Stopper]:
        previous = {signum: signal.signal(signum, self._handle) for signum in EXIT_CODES}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def hard_exit(self, message: str) -> None:
        """The command is stopped and cleaned up: say so and leave without running exit handlers."""
        for stream in (sys.stdout, sys.stderr):
            with suppress(OSError, ValueError):
                stream.flush()
        print(f"aml-databricks: error: {message}", file=sys.stderr, flush=True)
        os._exit(self.exit_code or 130)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            print(f"already stopping ({NAMES.get(signal.Signals(signum), signum)} again): "
                  f"waiting for the cleanup, at most {WATCHDOG_S:.0f} s", file=sys.stderr, flush=True)
            return
        self.signum = signum
        watchdog = threading.Timer(WATCHDOG_S, self._overrun)
        watchdog.daemon = True
        watchdog.start()
        raise StoppedError(f"stopped by {NAMES.get(signal.Signals(signum), signum)}", self.exit_code)

    def _overrun(self) -> None:
        with self._lock:
            hooks = list(self._last_resort)
        for hook in hooks:
            with suppress(Exception):  # a last resort must not stop the next one
                hook()
        self.hard_exit(f"stopped by {NAMES.get(signal.Signals(self.signum or 2), '')}; cleanup took over "
                       f"{WATCHDOG_S:.0f} s and was cut short")
