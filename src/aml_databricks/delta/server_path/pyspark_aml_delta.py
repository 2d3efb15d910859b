"""Registers the `delta` data source on a Spark server: Spark imports every top-level `pyspark_*`
module on its Python workers' path and registers its `DefaultSource` under `DefaultSource.name()`."""

from aml_databricks.delta.source import DeltaDataSource as DefaultSource

__all__ = ["DefaultSource"]
