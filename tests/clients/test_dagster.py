"""dagster-databricks' Pipes clients, unchanged, in their own venv, materialising assets on a live local workspace.

The code that runs on "Databricks" is plain `dagster_pipes` user code (below), installed into the run
as a PyPI library the way Dagster's guide says; the asset's metadata, its data version and the log
lines come back to Dagster only through DBFS, the Files API on `/Volumes` and the Jobs API.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from databricks.sdk.service.workspace import ImportFormat

from aml_databricks.compute.host.libraries import LibraryInstaller
from aml_databricks.compute.host.pool import ClusterPool
from aml_databricks.compute.host.process import DriverExecutor
from aml_databricks.workspace import LocalWorkspace
from tests.clients.requirements import DAGSTER
from tests.clients.venvs import client_venv, run_client
from tests.fixtures_workspace import upload_notebook

pytestmark = [pytest.mark.clients, pytest.mark.subprocess, pytest.mark.spark]

REPORT = """
    value = pipes.get_extra("some_parameter")
    pipes.log.info(f"from databricks: some_parameter is {value}")
    print("printed on databricks")
    rows = SparkSession.builder.getOrCreate().range(value).count() if SparkSession else value
    pipes.report_asset_materialization(metadata={"rows": {"raw_value": rows, "type": "int"}}, data_version="v1")
"""
CLASSIC = """\
from dagster_pipes import PipesDbfsContextLoader, PipesDbfsMessageWriter, open_dagster_pipes
from pyspark.sql import SparkSession

with open_dagster_pipes(context_loader=PipesDbfsContextLoader(), message_writer=PipesDbfsMessageWriter()) as pipes:
""" + REPORT
NOTEBOOK = """\
from dagster_pipes import (PipesDatabricksNotebookWidgetsParamsLoader, PipesDbfsContextLoader,
                           PipesDbfsMessageWriter, open_dagster_pipes)
from pyspark.sql import SparkSession

with open_dagster_pipes(context_loader=PipesDbfsContextLoader(), message_writer=PipesDbfsMessageWriter(),
                        params_loader=PipesDatabricksNotebookWidgetsParamsLoader(dbutils.widgets)) as pipes:
    pipes.log.info("from databricks: greeting " + dbutils.widgets.get("greeting"))
""" + REPORT
SERVERLESS = """\
from dagster_pipes import (PipesCliArgsParamsLoader, PipesUnityCatalogVolumesContextLoader,
                           PipesUnityCatalogVolumesMessageWriter, open_dagster_pipes)
from pyspark.sql import SparkSession

with open_dagster_pipes(context_loader=PipesUnityCatalogVolumesContextLoader(),
                        message_writer=PipesUnityCatalogVolumesMessageWriter(),
                        params_loader=PipesCliArgsParamsLoader()) as pipes:
""" + REPORT


@pytest.fixture(scope="module")
def venv() -> Path:
    return client_venv("dagster", DAGSTER)


@pytest.fixture(scope="module")
def spark_workspace(spark_pool: ClusterPool, spark_data_dir: Path) -> Iterator[LocalWorkspace]:
    # as `workspace serve` has it: the task's `libraries` (dagster-pipes from PyPI) installed into a cached folder
    executor = DriverExecutor(spark_data_dir, spark=spark_pool, libraries=LibraryInstaller(spark_data_dir).install,
                              prefork=True)
    with LocalWorkspace(spark_data_dir, spark=False, executor=executor) as workspace:
        yield workspace


def materialise(venv: Path, workspace: LocalWorkspace, scenario: str, code: str) -> dict[str, Any]:
    done = run_client(venv, "dagster_pipes_asset.py",
                      {"DATABRICKS_HOST": workspace.host, "DATABRICKS_TOKEN": workspace.token}, scenario, code)
    assert done.returncode == 0, done.stderr[-4000:] + done.stdout[-2000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_classic_client_runs_a_python_file_from_dbfs_on_a_new_cluster(venv: Path,
                                                                       spark_workspace: LocalWorkspace) -> None:
    spark_workspace.client.dbfs.upload("/dagster/classic.py", io.BytesIO(CLASSIC.encode()), overwrite=True)
    seen = materialise(venv, spark_workspace, "classic", "dbfs:/dagster/classic.py")
    assert seen["metadata"]["rows"] == 41 and seen["data_version"] == "v1"
    assert seen["logged"] == ["from databricks: some_parameter is 41"]
    # stdout came back through the cluster log delivery folder the client reads on DBFS
    assert seen["forwarded_stdout"] == ["printed on databricks"]


def test_classic_client_runs_a_notebook_on_an_existing_cluster(venv: Path, spark_workspace: LocalWorkspace) -> None:
    notebook = upload_notebook(spark_workspace.client, "/Shared/dagster/notebook", NOTEBOOK)
    seen = materialise(venv, spark_workspace, "notebook", notebook)
    assert seen["metadata"]["rows"] == 41 and seen["data_version"] == "v1"
    assert seen["logged"] == ["from databricks: greeting hello", "from databricks: some_parameter is 41"]


def test_serverless_client_exchanges_through_volumes(venv: Path, spark_workspace: LocalWorkspace) -> None:
    spark_workspace.client.workspace.upload("/Shared/dagster/serverless.py", SERVERLESS.encode(),
                                            format=ImportFormat.AUTO, overwrite=True)
    seen = materialise(venv, spark_workspace, "serverless", "/Shared/dagster/serverless.py")
    assert seen["metadata"]["rows"] == 41 and seen["data_version"] == "v1"
    assert seen["logged"] == ["from databricks: some_parameter is 41"]
    assert seen["forwarded_stdout"] == ["printed on databricks"]  # as Pipes messages (include_stdio_in_messages)
