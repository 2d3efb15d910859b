"""Cluster specs: shape checks, static vs session confs, which server a spec runs on."""

from __future__ import annotations

import os
from typing import Any

import pytest

from aml_databricks.compute.host.cluster_specs import (
    DEFAULT_CLUSTER_ID,
    cluster_id_for,
    local_cores,
    session_confs,
    static_confs,
    usage_tag_confs,
    validate_cluster_spec,
)
from aml_databricks.compute.tables import local_table_name, split_table_name


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"spark_version": "13.3.x-scala2.12", "node_type_id": "Standard_DS3_v2", "num_workers": 2},
        {"spark_version": "14.3.x-cpu-ml-scala2.12", "node_type_id": "i3.xlarge", "num_workers": "2"},
        {"spark_version": "13.3.x-gpu-ml-scala2.12", "node_type_id": "Standard_NC6s_v3"},
        {"spark_version": "12.2.x-photon-scala2.12", "autoscale": {"min_workers": 1, "max_workers": 4}},
        {"spark_version": "7.3.x-scala2.12", "node_type_id": "n1-standard-4", "spark_conf": {"a": 1}},
        {"spark_version": "15.4", "spark_conf": {"spark.databricks.delta.preview.enabled": True}},
    ],
)
def test_real_world_specs_are_accepted(spec: dict[str, Any]) -> None:
    validate_cluster_spec(spec)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"spark_version": "banana"}, "spark_version 'banana' is not a Databricks runtime version"),
        ({"spark_version": ""}, "spark_version"),
        ({"spark_version": 13}, "spark_version"),
        ({"node_type_id": "Standard DS3"}, "node_type_id 'Standard DS3' is not a node type"),
        ({"node_type_id": "!!"}, "node_type_id"),
        ({"num_workers": -1}, "num_workers must be a whole number"),
        ({"num_workers": "two"}, "num_workers must be a whole number"),
        ({"autoscale": {"min_workers": 3, "max_workers": 2}}, "max_workers"),
        ({"autoscale": 4}, "autoscale must be an object"),
        ({"spark_conf": ["a"]}, "spark_conf must be an object"),
        ({"spark_conf": {"a": {"b": 1}}}, "must be a string, number or boolean"),
    ],
)
def test_garbage_is_refused_in_one_line(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        validate_cluster_spec(spec)
    assert "\n" not in str(caught.value)


def test_confs_split_into_static_and_session() -> None:
    spec = {
        "spark_conf": {
            "spark.sql.shuffle.partitions": 8,
            "spark.databricks.delta.preview.enabled": True,
            "spark.hadoop.fs.azure.account.key.acc.dfs.core.windows.net": "k",
            "spark.executor.memory": "4g",
            "spark.jars.packages": "a:b:1",
            "spark.sql.extensions": "x.Y",
            "spark.sql.globalTempDatabase": "gt",
            "spark.sql.hive.convertMetastoreParquet": "false",  # a HiveUtils conf, runtime
            "spark.sql.debug.maxToStringFields": "100",  # runtime, though spark.sql.debug is static
            "spark.master": "local[*, 4]",  # Databricks' single-node profile: parallelism, not honoured
            "spark.driver.memory": "32g",  # machine resources are the pool's
        }
    }
    assert static_confs(spec) == {
        "spark.executor.memory": "4g",
        "spark.jars.packages": "a:b:1",
        "spark.sql.extensions": "x.Y",
        "spark.sql.globalTempDatabase": "gt",
    }
    assert session_confs(spec) == {
        "fs.azure.account.key.acc.dfs.core.windows.net": "k",
        "spark.databricks.delta.preview.enabled": "true",
        "spark.sql.debug.maxToStringFields": "100",
        "spark.sql.hive.convertMetastoreParquet": "false",
        "spark.sql.shuffle.partitions": "8",
    }


def test_runtime_only_specs_share_the_default_server() -> None:
    assert cluster_id_for({}) == DEFAULT_CLUSTER_ID
    assert cluster_id_for({"num_workers": 1, "spark_conf": {"spark.sql.shuffle.partitions": "4"}}) == "local"
    assert cluster_id_for({"existing_cluster_id": "local"}) == "local"


def test_static_confs_get_a_stable_dedicated_server() -> None:
    spec = {"spark_conf": {"spark.sql.extensions": "x.Y"}, "num_workers": 1}
    dedicated = cluster_id_for(spec)
    assert dedicated.startswith("local-") and dedicated == cluster_id_for(dict(spec))
    assert cluster_id_for({"spark_conf": {"spark.sql.extensions": "x.Z"}, "num_workers": 1}) != dedicated


@pytest.mark.parametrize(("log_conf", "enabled", "destination"), [
    (None, "false", ""),
    ({"dbfs": {"destination": "dbfs:/cluster-logs/"}}, "true", "dbfs:/cluster-logs"),
    ({"volumes": {"destination": "/Volumes/main/default/logs"}}, "true", "/Volumes/main/default/logs"),
    ({"s3": {"destination": "s3://bucket/logs"}}, "false", ""),  # not deliverable here: said so, not faked
])
def test_usage_tags_say_where_cluster_logs_are_delivered(log_conf: Any, enabled: str, destination: str) -> None:
    spec = {"spark_version": "15.4.x-scala2.12", "node_type_id": "Standard_DS3_v2", "num_workers": 0,
            **({"cluster_log_conf": log_conf} if log_conf else {})}
    tags = usage_tag_confs(spec)
    assert tags["spark.databricks.clusterUsageTags.clusterLogDeliveryEnabled"] == enabled
    assert tags["spark.databricks.clusterUsageTags.clusterLogDestination"] == destination


def test_workers_map_to_local_cores_capped_at_the_machine() -> None:
    cpus = os.cpu_count() or 1
    assert local_cores({}) == cpus
    assert local_cores({"num_workers": 0}) == cpus
    assert local_cores({"num_workers": 1}) == 1
    assert local_cores({"num_workers": 10_000}) == cpus
    assert local_cores({"autoscale": {"min_workers": 1, "max_workers": 1}, "num_workers": 9}) == 1


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("t", ("default", "t")),
        ("db.t", ("db", "t")),
        ("hive_metastore.db.t", ("db", "t")),
        ("main.db.t", ("db", "t")),
        ("`my db`.`t`", ("my db", "t")),
    ],
)
def test_table_names_map_to_the_session_catalog(name: str, expected: tuple[str, str]) -> None:
    assert split_table_name(name) == expected


@pytest.mark.parametrize("name", ["dev.db.t", "a.b.c.d", "db..t", "db.t;drop", ""])
def test_bad_table_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        split_table_name(name)


def test_local_table_name_is_quoted() -> None:
    assert local_table_name("main.sales.orders") == "`sales`.`orders`"
