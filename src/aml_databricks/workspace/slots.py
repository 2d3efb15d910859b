"""How many task runs execute at once: a slot per task run, handed out first come, first served.

Waiters queue in order and a freed slot goes to the first of them alone: with 1,000 runs queued,
waking every waiter on each release (a shared condition's notify_all) kept the API's threads from
the CPU (the thundering herd: benchmarks/queue_burst.py). A stopped run stops waiting at once.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable


class _Waiter:
    __slots__ = ("event", "granted")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.granted = False


class TaskSlots:
    def __init__(self, count: int) -> None:
        self._free = count
        self._lock = threading.Lock()
        self._waiters: deque[_Waiter] = deque()

    def acquire(self, give_up: Callable[[], bool]) -> bool:
        """Take a slot, waiting in line while none is free; False (no slot taken) once `give_up()` holds."""
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return True
            waiter = _Waiter()
            self._waiters.append(waiter)
        while True:
            with self._lock:
                waiter.event.clear()  # before the checks: a wake() after them sets it again
                if waiter.granted:
                    return True
                if give_up():
                    self._waiters.remove(waiter)
                    return False
            waiter.event.wait()

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiters)

    def release(self) -> None:
        with self._lock:
            if self._waiters:
                waiter = self._waiters.popleft()  # the slot passes straight to the first in line
                waiter.granted = True
                waiter.event.set()
            else:
                self._free += 1

    def wake(self) -> None:
        """Make every waiter check `give_up` again (a run was asked to stop)."""
        with self._lock:
            for waiter in self._waiters:
                waiter.event.set()
