"""The Clusters API view of the local cluster pool (`clusters/list`, `clusters/get`)."""

from __future__ import annotations

from typing import Any

from aml_databricks.compute.host.cluster_specs import DEFAULT_CLUSTER_ID, cluster_name, local_spark_version
from aml_databricks.compute.host.pool import ClusterPool, ClusterStatus


def describe(pool: ClusterPool, spark_connect: str = "") -> list[dict[str, Any]]:
    """The permanent default cluster first, then the dedicated ones, as Clusters API objects.

    `spark_connect`: the default cluster's stable Spark Connect address (workspace/gateway.py), shown
    as `local_spark_connect` whether the cluster runs or not (connecting starts it). A dedicated
    cluster shows its server's own address while it runs.
    """
    version = local_spark_version()
    return [_row(status, pool.driver_memory, version, spark_connect) for status in pool.snapshot()]


def _row(status: ClusterStatus, driver_memory: str, spark_version: str, spark_connect: str) -> dict[str, Any]:
    spec, default = status.spec, status.cluster_id == DEFAULT_CLUSTER_ID
    row: dict[str, Any] = {
        "cluster_id": status.cluster_id,
        "cluster_name": cluster_name(status.cluster_id),
        "state": status.state,
        "state_message": "" if status.state != "TERMINATED" else "Starts on the next run that uses it",
        "spark_version": spec.get("spark_version", spark_version),
        "node_type_id": spec.get("node_type_id", "local"),
        "driver_node_type_id": spec.get("driver_node_type_id", spec.get("node_type_id", "local")),
        "num_workers": int(spec.get("num_workers") or 0),
        "spark_conf": dict(spec.get("spark_conf") or {}),
        "spark_env_vars": dict(spec.get("spark_env_vars") or {}),
        "cluster_source": "UI" if default else "JOB",
        "driver_memory": driver_memory,
        "local_cores": status.local_cores,
    }
    if default and spark_connect:
        row["local_spark_connect"] = spark_connect
    elif status.port and status.state == "RUNNING":
        row["local_spark_connect"] = f"sc://127.0.0.1:{status.port}"
    if spec.get("autoscale"):
        row["autoscale"] = dict(spec["autoscale"])
    if status.start_time_ms:
        row["start_time"] = status.start_time_ms
        row["local_startup_s"] = {k: round(v, 3) for k, v in status.startup_s.items()}
        row["local_pid"] = status.pid
    return row
