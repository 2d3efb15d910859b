"""`configure_spark_with_delta_pip(builder)`: delta-spark adds Delta's Maven jars to a session builder.

On the local workspace Delta is already part of every cluster (delta-rs behind a data source, see
aml_databricks.delta), and Maven can't be reached offline: the builder is returned as it is, so
`configure_spark_with_delta_pip(builder).getOrCreate()` gives the notebook's session, as on Databricks
(where Delta is built in and the extra packages are not needed either).
"""

from __future__ import annotations

from typing import Any


def configure_spark_with_delta_pip(spark_session_builder: Any, extra_packages: list[str] | None = None) -> Any:
    """The builder, unchanged: Delta needs no jars on the local workspace; `extra_packages` can't be fetched."""
    if extra_packages:
        import warnings

        warnings.warn(
            f"configure_spark_with_delta_pip: extra_packages {extra_packages} are not fetched on the local "
            "workspace (no Maven access); install libraries through the task's `libraries`",
            stacklevel=2,
        )
    return spark_session_builder
