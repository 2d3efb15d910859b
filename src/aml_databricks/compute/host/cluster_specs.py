"""Cluster specs: which Spark confs need a JVM of their own, validation, and the cluster id a spec gets.

A cluster spec whose `spark_conf` holds only runtime confs shares the default server (cluster id
`local`); the driver applies those confs to its own session (`session_confs`). Static confs
(`static_confs`) can only be set when a JVM starts, so they get a dedicated server keyed by them.
`num_workers`/`autoscale` are honoured as `local[N]` (capped at the CPU count) only on a dedicated
server; `spark.driver.memory` from a spec is ignored: memory is the pool's setting.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from typing import Any

from aml_databricks.compute.host.cluster_logs import log_destination
from aml_databricks.compute.host.runtime_version import runtime_spark_version

DEFAULT_CLUSTER_ID = "local"

# Confs Spark reads only when the JVM (or its SparkContext/SharedState) starts. Prefix match.
# Core confs: `spark.conf.set` refuses them at run time, so they force a dedicated server.
STATIC_CONF_PREFIXES = (
    "spark.driver.",
    "spark.executor.",
    "spark.jars",
    "spark.files",
    "spark.archives",
    "spark.submit.",
    "spark.memory.",
    "spark.local.dir",
    "spark.ui.",
    "spark.eventLog.",
    "spark.serializer",
    "spark.kryo",
    "spark.network.",
    "spark.rpc.",
    "spark.shuffle.",
    "spark.scheduler.",
    "spark.default.parallelism",
    "spark.cores.max",
    "spark.task.",
    "spark.dynamicAllocation.",
    "spark.plugins",
    "spark.extraListeners",
    "spark.python.",
    "spark.connect.",
    "spark.sql.hive.metastore",
)
# Spark 4.3's StaticSQLConf keys (read off the class with javap): fixed once per JVM. Exact match:
# `spark.sql.debug` is static, `spark.sql.debug.maxToStringFields` is not.
STATIC_SQL_CONFS = frozenset(
    {
        "spark.sql.artifact.copyFromLocalToFs.allowDestLocal",
        "spark.sql.avro.schemaUrlAllowedSchemes",
        "spark.sql.broadcastExchange.maxThreadThreshold",
        "spark.sql.cache.serializer",
        "spark.sql.catalogImplementation",
        "spark.sql.codegen.cache.maxEntries",
        "spark.sql.codegen.comments",
        "spark.sql.debug",
        "spark.sql.defaultUrlStreamHandlerFactory.enabled",
        "spark.sql.event.truncate.length",
        "spark.sql.extensions",
        "spark.sql.extensions.test.loadFromCp",
        "spark.sql.filesourceTableRelationCacheSize",
        "spark.sql.globalTempDatabase",
        "spark.sql.hive.thriftServer.http.sniHostCheckEnabled",
        "spark.sql.hive.thriftServer.singleSession",
        "spark.sql.kafka.disallowedOptions",
        "spark.sql.legacy.hive.thriftServer.allowSettingSystemProperties",
        "spark.sql.legacy.sessionInitWithConfigDefaults",
        "spark.sql.metadataCacheTTLSeconds",
        "spark.sql.queryExecutionListeners",
        "spark.sql.reflect.allowList",
        "spark.sql.restrictedMode.enabled",
        "spark.sql.resultQueryStage.maxThreadThreshold",
        "spark.sql.shuffleExchange.maxThreadThreshold",
        "spark.sql.sources.disabledJdbcConnProviderList",
        "spark.sql.sources.schemaStringLengthThreshold",
        "spark.sql.streaming.streamingQueryListeners",
        "spark.sql.streaming.ui.enabled",
        "spark.sql.streaming.ui.enabledCustomMetricList",
        "spark.sql.streaming.ui.retainedProgressUpdates",
        "spark.sql.streaming.ui.retainedQueries",
        "spark.sql.subquery.maxThreadThreshold",
        "spark.sql.ui.retainedExecutions",
        "spark.sql.warehouse.dir",
    }
)
# Machine resources and topology: recorded in the cluster description, not emulated.
IGNORED_CONFS = ("spark.master", "spark.driver.memory")
HADOOP_PREFIX = "spark.hadoop."

# "15.4.x-scala2.12", "19.x-scala2.13" (one runtime line per major from 18 on), "15.4", "apache-spark-3.5.x"
_SPARK_VERSION = re.compile(
    r"^(\d+(\.\d+)?\.x|\d+\.\d+(\.\d+)?|apache-spark-\d+\.\d+\.x)(-[A-Za-z0-9][A-Za-z0-9._]*)*$"
)
_NODE_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{1,63}$")
MEMORY_SIZE = re.compile(r"^\d+[kmgtKMGT]?$")


def validate_cluster_spec(spec: Mapping[str, Any]) -> None:
    """Check a `new_cluster` spec for shape; raise ValueError with a one-line message."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"new_cluster must be an object, got {type(spec).__name__}")
    version = spec.get("spark_version")
    if version is not None and not (isinstance(version, str) and _SPARK_VERSION.match(version)):
        raise ValueError(
            f"new_cluster.spark_version {version!r} is not a Databricks runtime version like '13.3.x-scala2.12'"
        )
    for key in ("node_type_id", "driver_node_type_id"):
        node = spec.get(key)
        if node is not None and not (isinstance(node, str) and _NODE_TYPE.match(node)):
            raise ValueError(f"new_cluster.{key} {node!r} is not a node type like 'Standard_DS3_v2'")
    if spec.get("num_workers") is not None:
        _count(spec["num_workers"], "new_cluster.num_workers")
    autoscale = spec.get("autoscale")
    if autoscale is not None:
        if not isinstance(autoscale, Mapping):
            raise ValueError("new_cluster.autoscale must be an object with min_workers and max_workers")
        low = _count(autoscale.get("min_workers", 0), "new_cluster.autoscale.min_workers")
        high = _count(autoscale.get("max_workers"), "new_cluster.autoscale.max_workers")
        if high < max(low, 1):
            raise ValueError(f"new_cluster.autoscale.max_workers ({high}) must be >= max(1, min_workers)")
    for key in ("spark_conf", "spark_env_vars", "custom_tags"):
        value = spec.get(key)
        if value is not None and not (isinstance(value, Mapping) and all(isinstance(k, str) and k for k in value)):
            raise ValueError(f"new_cluster.{key} must be an object with string keys")
    for key, value in (spec.get("spark_conf") or {}).items():
        if isinstance(value, (dict, list)):
            raise ValueError(f"new_cluster.spark_conf[{key!r}] must be a string, number or boolean")


def _count(value: Any, what: str) -> int:
    """A worker count; Airflow sends numbers as strings, so digits are accepted too."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise ValueError(f"{what} must be a whole number >= 0, got {value!r}")
    return int(value)


def _conf_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _is_static(key: str) -> bool:
    return key in STATIC_SQL_CONFS or key.startswith(STATIC_CONF_PREFIXES)


def static_confs(cluster: Mapping[str, Any]) -> dict[str, str]:
    """The spec's confs that need a JVM of their own (they force a dedicated server)."""
    confs = cluster.get("spark_conf") or {}
    return {k: _conf_value(v) for k, v in sorted(confs.items()) if k not in IGNORED_CONFS and _is_static(k)}


def session_confs(cluster: Mapping[str, Any]) -> dict[str, str]:
    """The spec's runtime confs, ready for `spark.conf.set` in the run's own session.

    `spark.hadoop.X` becomes `X`: a session conf is copied into the Hadoop configuration of that
    session's file system calls as is, so the prefix would hide it.
    """
    confs = cluster.get("spark_conf") or {}
    result: dict[str, str] = {}
    for key, value in sorted(confs.items()):
        if key in IGNORED_CONFS or _is_static(key):
            continue
        name = key.removeprefix(HADOOP_PREFIX) if key.startswith(HADOOP_PREFIX) else key
        result[name] = _conf_value(value)
    return result


USAGE_TAGS = "spark.databricks.clusterUsageTags."
DEFAULT_CLUSTER_NAME = "Local shared cluster"


def local_spark_version() -> str:
    """The runtime version a cluster reports when its spec names none: the Databricks Runtime the local
    Spark stands in for (runtime_version.py), e.g. "20.x-scala2.13" for pyspark 4.3."""
    import pyspark

    return runtime_spark_version(pyspark.__version__)


def cluster_name(cluster_id: str) -> str:
    return DEFAULT_CLUSTER_NAME if cluster_id == DEFAULT_CLUSTER_ID else cluster_id


def usage_tag_confs(cluster: Mapping[str, Any]) -> dict[str, str]:
    """The `spark.databricks.clusterUsageTags.*` confs a Databricks cluster sets in every session:
    libraries read them with `spark.conf.get` (Dagster Pipes reads the log delivery ones)."""
    cluster_id = cluster_id_for(cluster)
    autoscale = cluster.get("autoscale")
    workers = (autoscale or {}).get("max_workers") if isinstance(autoscale, Mapping) else cluster.get("num_workers")
    node_type = str(cluster.get("node_type_id") or "local")
    custom = {str(k): str(v) for k, v in (cluster.get("custom_tags") or {}).items()}
    tags = {"ClusterId": cluster_id, "ClusterName": cluster_name(cluster_id), "Vendor": "Databricks",
            "Creator": "local-user@localhost", **custom}
    confs = {
        "clusterId": cluster_id,
        "clusterName": cluster_name(cluster_id),
        "sparkVersion": str(cluster.get("spark_version") or local_spark_version()),
        "clusterLogDeliveryEnabled": "true" if log_destination(cluster) else "false",  # cluster_logs.py
        "clusterLogDestination": log_destination(cluster) or "",
        "clusterNodeType": node_type,
        "driverNodeType": str(cluster.get("driver_node_type_id") or node_type),
        "clusterWorkers": str(int(workers or 0)),
        "clusterScalingType": "autoscaling" if autoscale else "fixed_size",
        "clusterSource": "UI" if cluster_id == DEFAULT_CLUSTER_ID else "JOB",
        "clusterAllTags": json.dumps([{"key": k, "value": v} for k, v in tags.items()]),
    }
    return {USAGE_TAGS + name: value for name, value in confs.items()}


def local_cores(cluster: Mapping[str, Any]) -> int:
    """`num_workers` / `autoscale.max_workers` as local cores: 0 (single node) means all of them."""
    cpus = os.cpu_count() or 1
    autoscale = cluster.get("autoscale")
    if isinstance(autoscale, Mapping) and autoscale.get("max_workers") is not None:
        workers = _count(autoscale["max_workers"], "autoscale.max_workers")
    elif cluster.get("num_workers") is not None:
        workers = _count(cluster["num_workers"], "num_workers")
    else:
        workers = 0
    return cpus if workers <= 0 else min(workers, cpus)


def cluster_id_for(cluster: Mapping[str, Any]) -> str:
    """`local` for specs the shared server can run, else a stable id derived from the static confs."""
    existing = cluster.get("existing_cluster_id") or cluster.get("cluster_id")
    if existing:
        return str(existing)
    static = static_confs(cluster)
    if not static:
        return DEFAULT_CLUSTER_ID
    key = json.dumps({"static": static, "cores": local_cores(cluster)}, sort_keys=True)
    return "local-" + hashlib.sha256(key.encode()).hexdigest()[:10]
