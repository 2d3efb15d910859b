"""The `samples` tables are installed in the background after a data dir's first start; a query that
comes first waits for them and succeeds."""

from __future__ import annotations

from pathlib import Path

import pytest

from aml_databricks.compute.host.pool import ClusterPool

pytestmark = pytest.mark.spark


def test_a_query_on_samples_made_before_they_are_installed_waits_for_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pyspark.sql.connect.client.core import SparkConnectClient
    from pyspark.sql.connect.session import SparkSession

    from aml_databricks.compute.driver import samples_wait

    for name in (*samples_wait._CALLS, *samples_wait._STREAMS):  # undone after the test, for other tests
        monkeypatch.setattr(SparkConnectClient, name, getattr(SparkConnectClient, name))
    pool = ClusterPool(tmp_path / "data", max_servers=1)
    try:
        lease = pool.acquire({}, run_id=1)  # held: the server is busy, so the install has not started
        try:
            assert lease.samples_pending is not None and Path(lease.samples_pending).exists()
            assert not (tmp_path / "data" / "metastore" / "samples-installed").exists()
            samples_wait.install(lease.samples_pending)  # what a run's driver does before its first query
            spark = SparkSession(connection=lease.remote)
            try:
                assert spark.table("samples.iris").count() == 150
                assert spark.sql("SELECT count(*) FROM samples.wine").first()[0] == 178
                assert pool.samples is not None and pool.samples.wait(60)
                assert (tmp_path / "data" / "metastore" / "samples-installed").exists()
                assert not Path(lease.samples_pending).exists()
                with pytest.raises(Exception, match="TABLE_OR_VIEW_NOT_FOUND"):  # a missing one still fails
                    spark.table("samples.no_such_table").count()
            finally:
                spark.stop()
        finally:
            lease.release()
    finally:
        pool.close()

