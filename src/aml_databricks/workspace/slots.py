"""How many task runs execute at once: a slot per task run, waited for until free or the run stops."""

from __future__ import annotations

import threading
from collections.abc import Callable


class TaskSlots:
    def __init__(self, count: int) -> None:
        self._free = count
        self._changed = threading.Condition()

    def acquire(self, give_up: Callable[[], bool]) -> bool:
        """Take a slot, waiting while none is free; False (no slot taken) once `give_up()` holds."""
        with self._changed:
            while self._free == 0:
                if give_up():
                    return False
                self._changed.wait()
            self._free -= 1
            return True

    def release(self) -> None:
        with self._changed:
            self._free += 1
            self._changed.notify_all()

    def wake(self) -> None:
        """Make every waiter check `give_up` again (a run was asked to stop)."""
        with self._changed:
            self._changed.notify_all()
