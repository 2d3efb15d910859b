"""The cluster pool on real Spark: sessions, DBFS and mounts, tables, interrupt, restart, stop.

All tests share the session's pool (`spark_pool`): one server start for the module, plus one for
the dedicated-server test and one for the restart test.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aml_databricks.compute.host.cluster_specs import session_confs
from aml_databricks.compute.host.pool import ClusterPool, Lease, jvm_pids
from aml_databricks.compute.tables import load_table, local_table_name
from aml_databricks.workspace.clusters import describe

pytestmark = pytest.mark.spark


@pytest.fixture
def lease(spark_pool: ClusterPool) -> Iterator[Lease]:
    held = spark_pool.acquire({}, run_id=1)
    yield held
    held.release()


@pytest.fixture
def spark(lease: Lease) -> Iterator[Any]:
    from pyspark.sql import SparkSession

    session = SparkSession.builder.remote(lease.remote).create()
    yield session
    session.stop()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_client_runs_a_query_on_its_lease(lease: Lease, spark: Any) -> None:
    assert lease.remote.startswith("sc://127.0.0.1:") and f"session_id={lease.session_id}" in lease.remote
    assert lease.cluster_id == "local"
    assert spark.range(10).selectExpr("sum(id) AS s").collect()[0].s == 45
    assert spark.conf.get("spark.sql.catalogImplementation") == "hive"


def test_the_default_cluster_is_described_as_running(spark_pool: ClusterPool, lease: Lease) -> None:
    [default, *_] = describe(spark_pool)
    assert default["cluster_id"] == "local" and default["state"] == "RUNNING"
    assert default["spark_version"].endswith("-scala2.13")


def test_absolute_paths_land_in_dbfs_and_session_mounts_in_their_folder(
    spark: Any, spark_data_dir: Path, tmp_path: Path
) -> None:
    datastore = tmp_path / "datastore"
    datastore.mkdir()
    # The way a cluster spec's spark.hadoop.* confs reach the run's session.
    mount = {"spark.hadoop.fs.viewfs.mounttable.dbfs.link./mnt/azuremlblobstore": datastore.as_uri()}
    for key, value in session_confs({"spark_conf": mount}).items():
        spark.conf.set(key, value)

    spark.range(5).write.mode("overwrite").parquet("/mnt/azuremlblobstore/run1/output")
    spark.range(3).write.mode("overwrite").parquet("/scratch/e2e/out")

    assert list((datastore / "run1" / "output").glob("*.parquet"))
    assert list((spark_data_dir / "dbfs" / "scratch" / "e2e" / "out").glob("*.parquet"))
    assert not Path("/mnt/azuremlblobstore").exists()
    assert spark.read.parquet("/mnt/azuremlblobstore/run1/output").count() == 5


def test_a_mount_of_one_session_is_not_seen_by_another(
    spark_pool: ClusterPool, spark_data_dir: Path, tmp_path: Path
) -> None:
    from pyspark.sql import SparkSession

    mine = tmp_path / "mine"
    first, second = spark_pool.acquire({}, 2), spark_pool.acquire({}, 3)
    a = SparkSession.builder.remote(first.remote).create()
    b = SparkSession.builder.remote(second.remote).create()
    try:
        a.conf.set("fs.viewfs.mounttable.dbfs.link./mnt/private", mine.as_uri())
        b.range(2).write.mode("overwrite").parquet("/mnt/private/x")
        assert not mine.exists()
        assert (spark_data_dir / "dbfs" / "mnt" / "private" / "x").is_dir()
    finally:
        a.stop()
        b.stop()
        first.release()
        second.release()


def test_sample_tables_are_installed(spark_pool: ClusterPool, spark: Any) -> None:
    assert spark_pool.samples is not None
    spark_pool.samples.want()  # this test's own lease keeps the server busy: install now
    assert spark_pool.samples.wait(600)
    assert spark.table("samples.iris").count() == 150
    assert {"species", "sepal_length_cm"} <= set(spark.table("samples.iris").columns)
    assert spark.table("samples.wine").count() == 178
    assert spark.table("samples.diabetes").count() == 442


def test_a_loaded_table_is_readable_from_another_session(spark_pool: ClusterPool, spark: Any, tmp_path: Path) -> None:
    from pyspark.sql import SparkSession

    csv = tmp_path / "people.csv"
    csv.write_text("name,age\nada,36\ngrace,45\n")
    assert load_table(spark, "hive_metastore.e2e.people", csv) == 2

    other = spark_pool.acquire({}, 4)
    session = SparkSession.builder.remote(other.remote).create()
    try:
        rows = session.table("e2e.people").orderBy("name").collect()
        assert [(r.name, r.age) for r in rows] == [("ada", 36), ("grace", 45)]
    finally:
        session.stop()
        other.release()


def test_a_parquet_file_loads_through_the_pool(spark_pool: ClusterPool, spark: Any, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    file = tmp_path / "numbers.parquet"
    pq.write_table(pa.table({"n": [1, 2, 3]}), file)
    from pyspark.sql.connect.session import SparkSession

    loader = spark_pool.acquire({}, run_id=0)  # a session of its own, as `workspace load-table`'s task has
    session = SparkSession(connection=loader.remote)
    try:
        assert load_table(session, "main.e2e.numbers", file) == 3
    finally:
        session.stop()
        loader.release()
    assert spark.table("e2e.numbers").selectExpr("sum(n) AS s").collect()[0].s == 6


def test_interrupt_ends_a_long_job_and_frees_the_cpu(spark_pool: ClusterPool, lease: Lease, spark: Any) -> None:
    errors: list[BaseException] = []

    def long_job() -> None:
        try:
            spark.range(10**12).selectExpr("sum(id % 7)").collect()  # minutes of work
        except BaseException as error:
            errors.append(error)

    job = threading.Thread(target=long_job)
    job.start()
    [pid] = spark_pool.server_pids()
    time.sleep(3)  # let the job reach the executors
    assert job.is_alive()
    lease.interrupt()
    job.join(timeout=60)
    assert not job.is_alive()
    assert errors and any(word in str(errors[0]).lower() for word in ("interrupt", "cancel"))
    before = cpu_seconds(pid)
    time.sleep(1)
    assert cpu_seconds(pid) - before < 0.5  # busy cores would burn ~1 s per core


def test_static_confs_get_a_dedicated_server(spark_pool: ClusterPool) -> None:
    from pyspark.sql import SparkSession

    spec = {
        "spark_version": "13.3.x-scala2.12",
        "num_workers": 1,
        "spark_conf": {"spark.executor.memory": "600m"},
    }
    dedicated = spark_pool.acquire(spec, 5)
    session = SparkSession.builder.remote(dedicated.remote).create()
    try:
        assert dedicated.cluster_id.startswith("local-")
        assert session.conf.get("spark.executor.memory") == "600m"
        assert session.range(4).count() == 4
        assert "local_clusters" in session.conf.get("spark.sql.warehouse.dir")
        again = spark_pool.acquire({"existing_cluster_id": dedicated.cluster_id}, 6)
        assert again.cluster_id == dedicated.cluster_id and again.remote != dedicated.remote
        again.release()
        described = {row["cluster_id"]: row for row in describe(spark_pool)}
        assert described[dedicated.cluster_id]["state"] == "RUNNING"
        assert described[dedicated.cluster_id]["local_cores"] == 1
    finally:
        session.stop()
        dedicated.release()
    assert spark_pool.stop(dedicated.cluster_id)
    assert {row["cluster_id"]: row["state"] for row in describe(spark_pool)}[dedicated.cluster_id] == "TERMINATED"


def test_tables_survive_a_server_restart_and_stopping_leaves_no_jvm(
    spark_pool: ClusterPool, spark_data_dir: Path
) -> None:
    from pyspark.sql import SparkSession

    before = spark_pool.acquire({}, 7)
    session = SparkSession.builder.remote(before.remote).create()
    session.sql("CREATE DATABASE IF NOT EXISTS e2e")
    session.range(7).write.mode("overwrite").saveAsTable("e2e.kept")
    session.stop()
    before.release()

    spark_pool.stop_servers()
    assert jvm_pids(spark_data_dir) == []

    after = spark_pool.acquire({}, 8)
    session = SparkSession.builder.remote(after.remote).create()
    try:
        assert session.table("e2e.kept").count() == 7
        assert session.table(local_table_name("main.e2e.kept")).count() == 7
    finally:
        session.stop()
        after.release()
