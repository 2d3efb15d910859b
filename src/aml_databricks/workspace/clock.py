"""Time for the scheduler, injected: the wall clock for timestamps, and timers for timeouts.

Tests pass a clock they move by hand, so a timeout fires when the test says so and no test
sleeps waiting for one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    def cancel(self) -> None:
        """Stop the timer if it has not fired; harmless when it has."""


class Clock(Protocol):
    def now_ms(self) -> int:
        """Epoch milliseconds, as runs/get reports times."""

    def call_later(self, seconds: float, action: Callable[[], None]) -> Timer:
        """Run `action` once, on its own thread, after `seconds`."""


class SystemClock:
    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def call_later(self, seconds: float, action: Callable[[], None]) -> Timer:
        timer = threading.Timer(min(seconds, threading.TIMEOUT_MAX), action)
        timer.daemon = True
        timer.start()
        return timer
