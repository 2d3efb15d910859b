"""`from delta.tables import DeltaTable`: the local workspace's delta-rs backed implementation."""

from aml_databricks.delta.deltatable import DeltaMergeBuilder, DeltaOptimizeBuilder, DeltaTable

__all__ = ["DeltaMergeBuilder", "DeltaOptimizeBuilder", "DeltaTable"]
