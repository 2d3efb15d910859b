"""The standby slot: at most one driver kept warm on the server the last Spark run used.

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


class StandbySlot:
    """At most one standby driver (compute/host/forkserver.py): a forked driver with a warm session open on
    the server the last Spark run used, waiting to become the next run's driver. Refilled after each
    Spark run ends, not when one starts, so its warm-up never competes with a run for the CPU."""

    def __init__(self, spawner: Callable[[], DriverForkServer | None]) -> None:
        self._spawner = spawner
        self._lock = threading.Lock()
        self._standby: Standby | None = None
        self._closed = False

    def take(self) -> Standby | None:
        """The standby if it is ready; one still warming up stays for a later run."""
        with self._lock:
            standby = self._standby
            if standby is None or not (standby.ready or standby.driver.exited):
                return None
            self._standby = None
        if standby.driver.exited:
            standby.dismiss()
            return None
        return standby

    def refill(self, remote: str) -> None:
        """A new standby on a new session of `remote`'s server, forked in the background, unless one for
        that server is already there (replacing it would only keep it from ever getting warm)."""
        with self._lock:
            if self._standby is not None and with_session(self._standby.remote, "") == with_session(remote, ""):
                return
        threading.Thread(target=self._refill, args=(remote,), name="standby-driver", daemon=True).start()

    def _refill(self, remote: str) -> None:
        fork_server = self._spawner()
        if fork_server is None:
            return
        try:
            standby = fork_server.spawn_standby(with_session(remote, str(uuid.uuid4())))
        except (OSError, RuntimeError, ValueError) as error:
            log.warning("no standby driver (%s): runs start their drivers from scratch", error)
            return
        with self._lock:
            if self._closed:
                old: Standby | None = standby
            else:
                old, self._standby = self._standby, standby
        if old is not None:
            old.dismiss()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            standby, self._standby = self._standby, None
        if standby is not None:
            standby.dismiss()


def with_session(remote: str, session_id: str) -> str:
    """`sc://host:port/;session_id=...;...` with another session id."""
    return re.sub(r"session_id=[^;]*", f"session_id={session_id}", remote)


def session_of(remote: str) -> str | None:
    match = re.search(r"session_id=([^;]*)", remote)
    return match[1] if match else None
