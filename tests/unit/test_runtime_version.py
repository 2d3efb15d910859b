"""The Databricks Runtime a local Spark stands in for, as clusters/get reports it."""

from __future__ import annotations

import re

import pytest

from aml_databricks.compute.executor import TaskSpec
from aml_databricks.compute.host.cluster_specs import local_spark_version, usage_tag_confs, validate_cluster_spec
from aml_databricks.compute.host.runtime_version import runtime_spark_version


@pytest.mark.parametrize(
    ("spark", "runtime"),
    [
        ("3.5.0", "16.4.x-scala2.12"),
        ("4.0.1", "17.3.x-scala2.13"),
        ("4.1.0", "18.x-scala2.13"),
        ("4.2.0", "19.x-scala2.13"),
        ("4.3.0", "20.x-scala2.13"),  # past Databricks' notes: one runtime major per Spark 4 minor
        ("4.5.0.dev1", "22.x-scala2.13"),
    ],
)
def test_a_spark_version_maps_to_the_runtime_built_on_it(spark: str, runtime: str) -> None:
    assert runtime_spark_version(spark) == runtime


@pytest.mark.parametrize("spark", ["banana", "", "2.4.8", "5.0.0"])
def test_a_spark_without_a_known_runtime_is_refused(spark: str) -> None:
    with pytest.raises(ValueError, match="Spark"):
        runtime_spark_version(spark)


def databricks_connect_reads(spark_version: str) -> tuple[int, ...]:
    """How databricks-connect's session validation reads a runtime: the first `N.M.x` or `N.x` anywhere."""
    match = re.search(r"(\d+(\.\d+)?\.x)", spark_version)
    assert match, spark_version
    return tuple(int(part) for part in match.group().split(".") if part.isnumeric())


def test_the_reported_version_is_a_runtime_databricks_connect_16_accepts() -> None:
    reported = local_spark_version()
    assert databricks_connect_reads(reported) >= (16, 1)
    assert usage_tag_confs({})["spark.databricks.clusterUsageTags.sparkVersion"] == reported
    validate_cluster_spec({"spark_version": reported})  # a client may send it back in a new_cluster


@pytest.mark.parametrize(("spark_version", "env"), [("15.4.x-scala2.12", "15.4"), ("19.x-scala2.13", "19"),
                                                    ("banana", None)])
def test_the_runtime_version_a_run_sees(spark_version: str, env: str | None) -> None:
    spec = TaskSpec(kind="notebook", task_key="t", path="/x", source="", new_cluster={"spark_version": spark_version})
    assert spec.runtime_version == env
