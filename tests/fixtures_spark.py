"""One Spark Connect cluster pool for the whole test session: a server start costs seconds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aml_databricks.compute.host.pool import ClusterPool, jvm_pids


@pytest.fixture(scope="session")
def spark_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("spark-data")


@pytest.fixture(scope="session")
def spark_pool(spark_data_dir: Path) -> Iterator[ClusterPool]:
    pool = ClusterPool(spark_data_dir, idle_timeout_s=600, driver_memory="1g", max_servers=2)
    try:
        yield pool
    finally:
        pool.close()
        assert jvm_pids(spark_data_dir) == [], "a Spark server outlived ClusterPool.close()"
