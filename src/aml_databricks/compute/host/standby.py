"""The standby slot: up to two drivers kept warm on the server the last Spark run used.

A standby is forked by the fork server (compute/host/forkserver.py) with a session open and one tiny
query run; the next run on that server takes it over. `with_session` / `session_of` read and rewrite
the session id inside a Spark Connect remote string.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Callable

from aml_databricks.compute.host.forkserver import DriverForkServer, Standby

log = logging.getLogger(__name__)

STANDBYS = 2


class StandbySlot:
    """Up to `capacity` standby drivers (compute/host/forkserver.py): forked drivers with a warm session
    open on the server the last Spark run used, each waiting to become a run's driver. Two, so that a
    run started right after another still finds one ready while the next warms up. Refilled after each
    Spark run ends, not when one starts, so their warm-up never competes with a run for the CPU."""

    def __init__(self, spawner: Callable[[], DriverForkServer | None], capacity: int = STANDBYS) -> None:
        self._spawner = spawner
        self._capacity = capacity
        self._lock = threading.Lock()
        self._standbys: list[Standby] = []
        self._spawning = 0
        self._closed = False

    def take(self) -> Standby | None:
        """A ready standby, the oldest first; those still warming up stay for later runs."""
        ended: list[Standby] = []
        taken: Standby | None = None
        with self._lock:
            for standby in list(self._standbys):
                if standby.driver.exited:
                    self._standbys.remove(standby)
                    ended.append(standby)
                elif taken is None and standby.ready:
                    self._standbys.remove(standby)
                    taken = standby
        for standby in ended:
            standby.dismiss()
        return taken

    def refill(self, remote: str) -> None:
        """New standbys on new sessions of `remote`'s server, forked in the background, up to the capacity;
        standbys for another server are dismissed (a run there would not use them)."""
        server = with_session(remote, "")
        with self._lock:
            if self._closed:
                return
            stale = [s for s in self._standbys if with_session(s.remote, "") != server]
            self._standbys = [s for s in self._standbys if s not in stale]
            missing = self._capacity - len(self._standbys) - self._spawning
            self._spawning += max(0, missing)
        for standby in stale:
            standby.dismiss()
        if missing > 0:
            threading.Thread(target=self._refill, args=(remote, missing), name="standby-driver", daemon=True).start()

    def _refill(self, remote: str, count: int) -> None:
        for _ in range(count):
            standby = None
            try:
                fork_server = self._spawner()
                if fork_server is not None:
                    standby = fork_server.spawn_standby(with_session(remote, str(uuid.uuid4())))
            except (OSError, RuntimeError, ValueError) as error:
                log.warning("no standby driver (%s): runs start their drivers from scratch", error)
            with self._lock:
                self._spawning -= 1
                if standby is not None and not self._closed:
                    self._standbys.append(standby)
                    standby = None
            if standby is not None:
                standby.dismiss()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            standbys, self._standbys = self._standbys, []
        for standby in standbys:
            standby.dismiss()


def with_session(remote: str, session_id: str) -> str:
    """`sc://host:port/;session_id=...;...` with another session id."""
    return re.sub(r"session_id=[^;]*", f"session_id={session_id}", remote)


def session_of(remote: str) -> str | None:
    match = re.search(r"session_id=([^;]*)", remote)
    return match[1] if match else None
