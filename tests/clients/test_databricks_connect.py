"""databricks-connect, unchanged, in its own venv, against a live local workspace with Spark: `sc://` mode on
the cluster's Spark Connect address, and host mode (`remote(host=, token=, cluster_id=)`) over TLS on the
workspace's own port, trusting the workspace's CA through GRPC_DEFAULT_SSL_ROOTS_FILE_PATH."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aml_databricks.workspace import LocalWorkspace
from tests.clients.requirements import DATABRICKS_CONNECT
from tests.clients.venvs import client_venv, run_client

pytestmark = [pytest.mark.clients, pytest.mark.subprocess, pytest.mark.spark, pytest.mark.server]

EXPECTED = {"count": 10, "sql": 42, "samples": 150, "table": [0, 1, 2, 3, 4], "pandas": [0, 1, 2],
            "udf": [0, 2, 4]}


@pytest.fixture(scope="module")
def venv() -> Path:
    return client_venv("databricks-connect", DATABRICKS_CONNECT)


@pytest.fixture(scope="module")
def tls_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalWorkspace]:
    with LocalWorkspace(tmp_path_factory.mktemp("dbconnect") / "data", tls=True) as workspace:
        yield workspace


def databricks_connect(venv: Path, env: dict[str, str], *args: str) -> dict[str, Any]:
    done = run_client(venv, "databricks_connect.py", env, *args)
    assert done.returncode == 0, done.stderr[-4000:]
    seen: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    print(args[0], "mode: range(10).count() first", seen["first_count_s"], "s, warm", seen["warm_count_s"], "s")
    return seen


def test_sc_mode_on_the_clusters_spark_connect_address(venv: Path, tls_workspace: LocalWorkspace) -> None:
    # where a client reads it (databricks-sdk's ClusterDetails drops fields it does not know: the raw API)
    local = tls_workspace.client.api_client.do("GET", "/api/2.1/clusters/get", query={"cluster_id": "local"})
    address = local["local_spark_connect"]
    assert address == tls_workspace.spark_connect
    seen = databricks_connect(venv, {}, "sc", address)
    assert {k: seen[k] for k in EXPECTED} == EXPECTED


def test_host_mode_over_tls_on_the_workspace_port(venv: Path, tls_workspace: LocalWorkspace) -> None:
    ca = str(tls_workspace.ca_file)
    seen = databricks_connect(venv, {"GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": ca, "REQUESTS_CA_BUNDLE": ca},
                              "host", tls_workspace.https_host, tls_workspace.token)
    assert {k: seen[k] for k in EXPECTED} == EXPECTED


def test_the_address_outlives_a_cluster_restart_and_clusters_start_waits_for_running(
    tls_workspace: LocalWorkspace,
) -> None:
    from datetime import timedelta

    from databricks.sdk.service.compute import State
    from pyspark.sql import SparkSession

    client = tls_workspace.client
    before = client.api_client.do("GET", "/api/2.1/clusters/get", query={"cluster_id": "local"})
    client.clusters.delete("local").result(timeout=timedelta(minutes=2))  # terminate
    assert client.clusters.get("local").state == State.TERMINATED
    running = client.clusters.start("local").result(timeout=timedelta(minutes=10))
    assert running.state == State.RUNNING and running.spark_version == before["spark_version"]
    after = client.api_client.do("GET", "/api/2.1/clusters/get", query={"cluster_id": "local"})
    assert after["local_spark_connect"] == before["local_spark_connect"]
    assert after["local_pid"] != before["local_pid"]  # a new JVM on a new port of its own, same address
    spark = SparkSession.builder.remote(after["local_spark_connect"]).create()
    try:
        assert spark.range(3).count() == 3
    finally:
        spark.stop()
