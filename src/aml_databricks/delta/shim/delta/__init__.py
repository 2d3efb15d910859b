"""The `delta` package notebooks import (`from delta.tables import DeltaTable`), as delta-spark names it.

The local workspace's driver puts this folder first on `sys.path`; the code is in
`aml_databricks.delta.deltatable`, backed by delta-rs.
"""
