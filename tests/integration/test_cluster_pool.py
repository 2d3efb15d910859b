"""The pool's bookkeeping (leases, idle reaping, eviction, failures) with `sleep` processes standing in for
the JVMs, through the pool's `Launcher` seam."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aml_databricks.compute.host.jvm import Server
from aml_databricks.compute.host.pool import ClusterPool, ClusterStartError

pytestmark = pytest.mark.subprocess

DEDICATED = {"spark_conf": {"spark.executor.memory": "600m"}}


class FakeControlClient:
    calls: list[tuple[str, str]] = []

    def __init__(self, remote: str) -> None:
        self.remote = remote

    def interrupt_all(self) -> None:
        self.calls.append(("interrupt", self.remote))

    def release_session(self) -> None:
        self.calls.append(("release", self.remote))

    def close(self) -> None:
        pass


class SleepLauncher:
    """Servers are `sleep` processes; `fail` makes the next start fail."""

    def __init__(self) -> None:
        self.fail = False
        self.started = 0

    def start(self, server: Server) -> None:
        server.port = 1
        server.process = subprocess.Popen(["sleep", "600"], start_new_session=True)
        self.started += 1

    def wait_ready(self, server: Server, closed: threading.Event) -> None:
        if self.fail:
            self.fail = False
            raise ClusterStartError("server did not come up")

    def control_client(self, remote: str) -> FakeControlClient:
        return FakeControlClient(remote)

    def session_released(self, server: Server, server_session_id: str) -> None:
        pass


@pytest.fixture
def fake_jvm() -> SleepLauncher:
    FakeControlClient.calls = []
    return SleepLauncher()


@pytest.fixture
def pool(tmp_path: Path, fake_jvm: SleepLauncher) -> Iterator[ClusterPool]:
    made = ClusterPool(tmp_path, idle_timeout_s=600, max_servers=1, launcher=fake_jvm)
    yield made
    made.close()


def test_leases_share_a_server_and_release_once(pool: ClusterPool, fake_jvm: SleepLauncher) -> None:
    first, second = pool.acquire({}, 1), pool.acquire({"num_workers": 3}, 2)
    assert first.cluster_id == second.cluster_id == "local" and fake_jvm.started == 1
    assert first.session_id != second.session_id
    first.release()
    first.release()
    assert [call for call, _ in FakeControlClient.calls] == ["release"]
    first.interrupt()
    assert FakeControlClient.calls[-1] == ("interrupt", first.remote)
    second.release()


def test_an_idle_server_is_stopped_by_the_reaper(tmp_path: Path, fake_jvm: SleepLauncher) -> None:
    pool = ClusterPool(tmp_path, idle_timeout_s=0.3, launcher=fake_jvm)
    try:
        lease = pool.acquire({}, 1)
        [pid] = pool.server_pids()
        time.sleep(0.8)
        assert pool.server_pids() == [pid]  # a held lease keeps it
        lease.release()
        deadline = time.monotonic() + 10
        while pool.server_pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pool.server_pids() == []
        assert pool.snapshot()[0].state == "TERMINATED"
    finally:
        pool.close()


def test_a_new_kind_of_server_evicts_an_idle_one(pool: ClusterPool, fake_jvm: SleepLauncher) -> None:
    pool.acquire({}, 1).release()
    [shared] = pool.server_pids()
    dedicated = pool.acquire(DEDICATED, 2)
    assert dedicated.cluster_id.startswith("local-") and pool.server_pids() != [shared]
    assert [status.cluster_id for status in pool.snapshot()] == ["local", dedicated.cluster_id]
    dedicated.release()


def test_a_full_pool_waits_for_a_server_to_become_idle(pool: ClusterPool) -> None:
    held = pool.acquire({}, 1)
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(DEDICATED, 2)))
    waiter.start()
    time.sleep(0.5)
    assert got == []
    held.release()
    waiter.join(timeout=10)
    assert got and got[0].cluster_id.startswith("local-")
    got[0].release()


def test_a_failed_start_is_an_error_and_the_next_acquire_tries_again(
    pool: ClusterPool, fake_jvm: SleepLauncher
) -> None:
    fake_jvm.fail = True
    with pytest.raises(ClusterStartError, match="did not come up"):
        pool.acquire({}, 1)
    assert pool.server_pids() == []
    pool.acquire({}, 2).release()
    assert fake_jvm.started == 2


def test_a_dead_server_is_started_again(pool: ClusterPool, fake_jvm: SleepLauncher) -> None:
    pool.acquire({}, 1).release()
    [pid] = pool.server_pids()
    subprocess.run(["kill", "-9", str(pid)], check=True)
    time.sleep(0.2)
    pool.acquire({}, 2).release()
    assert pool.server_pids() != [pid] and fake_jvm.started == 2


def test_existing_cluster_ids_must_be_known(pool: ClusterPool) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        pool.acquire({"existing_cluster_id": "0923-164208-meows279"}, 1)
    pool.acquire({"existing_cluster_id": "local"}, 2).release()


def test_bad_specs_are_refused_before_anything_starts(pool: ClusterPool, fake_jvm: SleepLauncher) -> None:
    with pytest.raises(ValueError, match="spark_version"):
        pool.acquire({"spark_version": "banana"}, 1)
    assert fake_jvm.started == 0


def test_close_stops_everything_and_refuses_new_leases(pool: ClusterPool) -> None:
    lease = pool.acquire({}, 1)
    [pid] = pool.server_pids()
    pool.close()
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    with pytest.raises(ClusterStartError, match="closed"):
        pool.acquire({}, 2)
    lease.release()
    pool.close()


def test_bad_pool_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="driver_memory"):
        ClusterPool(tmp_path, driver_memory="lots")


def test_one_cluster_can_be_stopped(pool: ClusterPool) -> None:
    pool.acquire({}, 1).release()
    assert pool.stop("local") and pool.server_pids() == []
    assert not pool.stop("local")


def test_an_outside_client_starts_the_server_and_its_traffic_keeps_it(tmp_path: Path,
                                                                       fake_jvm: SleepLauncher) -> None:
    pool = ClusterPool(tmp_path, idle_timeout_s=0.3, launcher=fake_jvm)
    try:
        server = pool.outside_server()  # what databricks-connect's first connection does
        [pid] = pool.server_pids()
        assert server.state == "RUNNING" and server.leases == 0
        until = time.monotonic() + 1.0
        while time.monotonic() < until:  # a client busy for three idle timeouts
            pool.touch(server)
            time.sleep(0.05)
        assert pool.server_pids() == [pid]
        deadline = time.monotonic() + 10  # then silent: stopped like any idle cluster
        while pool.server_pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pool.server_pids() == []
        assert pool.outside_server().pid != pid  # the next connection starts it again
    finally:
        pool.close()


def test_clusters_start_starts_a_stopped_cluster_and_leaves_a_running_one(pool: ClusterPool,
                                                                          fake_jvm: SleepLauncher) -> None:
    pool.start_in_background("local")
    assert pool.snapshot()[0].state in ("PENDING", "RUNNING")  # never TERMINATED once it was asked to start
    deadline = time.monotonic() + 10
    while pool.snapshot()[0].state != "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.snapshot()[0].state == "RUNNING"
    pool.start_in_background("local")
    assert fake_jvm.started == 1
    with pytest.raises(ValueError, match="does not exist"):
        pool.start_in_background("no-such-cluster")
