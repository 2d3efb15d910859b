"""The `samples` tables of a data dir, installed off the critical path of the first start.

Installing them (scikit-learn's bundled datasets, three `saveAsTable`s on a cold JVM) costs about as
much as the server's own cold start, so it is not part of the server getting ready any more: once
the shared server is up, a background thread installs them as soon as that server has no run on it,
or at once when a run asks for them. Two marker files in `<data_dir>/metastore/` say where that stands,
for the drivers (compute/driver/samples_wait.py) as much as for the host:

    samples-installed   the tables are there (spares every later start the check)
    samples-pending     an install is scheduled or under way; a run that finds no `samples.*` table
                        while this exists waits for it to go, then tries again
    samples-wanted      written by such a run: install now, don't wait for the server to be idle
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

INSTALLED = "samples-installed"
PENDING = "samples-pending"
WANTED = "samples-wanted"
POLL_S = 0.2


def quiet_spark_connect_log() -> None:
    """Keep pyspark's Spark Connect logger off, as pyspark leaves it unless SPARK_CONNECT_LOG_LEVEL is
    set. Logging set-ups that keep existing loggers (MLflow's, in `pipeline run`) switch it back on,
    and it then prints a JSON line on stderr for every failed call of the install's client."""
    if "SPARK_CONNECT_LOG_LEVEL" not in os.environ:
        logging.getLogger("pyspark.sql.connect.logging").disabled = True


def pending_marker(data_dir: Path) -> Path:
    return Path(data_dir) / "metastore" / PENDING


class SampleInstaller:
    """Installs the sample tables once per data dir, in the background, when the shared server is idle."""

    def __init__(self, data_dir: Path) -> None:
        self._metastore = Path(data_dir) / "metastore"
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._client: Any = None  # the install's Spark Connect client while it talks to the server
        self._aborted = False  # its server was stopped under it: the install's failure is expected
        # A pending marker left by a workspace that died mid-install would keep runs waiting: it is
        # this process's to write again when it schedules its own install.
        (self._metastore / PENDING).unlink(missing_ok=True)
        (self._metastore / WANTED).unlink(missing_ok=True)

    @property
    def installed(self) -> bool:
        return (self._metastore / INSTALLED).exists()

    def schedule(self, remote_of: Callable[[str], str], idle: Callable[[], bool], closed: threading.Event) -> None:
        """Install on the server that `remote_of(session_id)` reaches, once `idle()` or a run wants them.
        At most one at a time; one that failed (the server stopped under it) is tried again on the next start."""
        with self._lock:
            if self.installed or (self._thread is not None and self._thread.is_alive()):
                return
            self._metastore.mkdir(parents=True, exist_ok=True)
            (self._metastore / PENDING).touch()
            self._done = threading.Event()
            self._aborted = False
            self._thread = threading.Thread(target=self._install, args=(remote_of, idle, closed),
                                            name="sample-tables", daemon=True)
            self._thread.start()

    def want(self) -> None:
        """Install now, without waiting for the server to be idle (what a run that needs them asks)."""
        with contextlib.suppress(OSError):
            (self._metastore / WANTED).touch()

    def abort(self) -> None:
        """The server is being stopped: end the install's client now. Its call in flight would otherwise
        retry the dead server for minutes, and pyspark's exit handler for an unclosed client retries
        it again when the process exits (a `pipeline run` that never ended)."""
        with self._lock:
            client, self._client = self._client, None
            self._aborted = client is not None
        if client is not None:
            quiet_spark_connect_log()  # the call in flight fails as its channel closes: expected, not news
            with contextlib.suppress(Exception):
                client.close()

    def wait(self, timeout: float | None = None) -> bool:
        """True once the install has ended (installed, failed or given up); at once if none is scheduled."""
        with self._lock:
            if self._thread is None:
                return True
            done = self._done
        return done.wait(timeout)

    def _install(self, remote_of: Callable[[str], str], idle: Callable[[], bool], closed: threading.Event) -> None:
        done = self._done
        try:
            while not (idle() or (self._metastore / WANTED).exists()):
                if closed.wait(POLL_S):
                    return
            started = time.monotonic()
            from pyspark.sql.connect.session import SparkSession

            from aml_databricks.compute.tables import install_samples

            quiet_spark_connect_log()
            spark = SparkSession(connection=remote_of(str(uuid.uuid4())))
            with self._lock:
                self._client = spark.client
            if closed.is_set():  # closed while the session was being made: `abort` found no client
                self._aborted = True
                spark.client.close()
            try:
                install_samples(spark)
            finally:
                with self._lock:
                    self._client = None
                if not spark.client.is_closed:
                    with contextlib.suppress(Exception):
                        spark.stop()
            (self._metastore / INSTALLED).touch()
            log.info("sample tables installed in %.1f s", time.monotonic() - started)
        except Exception as error:  # no scikit-learn, say, or the server went: the cluster is fine without them
            level = logging.DEBUG if self._aborted else logging.WARNING
            log.log(level, "sample tables not installed: %s: %s", type(error).__name__, error)
        finally:
            (self._metastore / PENDING).unlink(missing_ok=True)
            (self._metastore / WANTED).unlink(missing_ok=True)
            done.set()
