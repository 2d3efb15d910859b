"""The `delta` package notebooks import, as delta-spark names it: `import delta`, `from delta import DeltaTable,
configure_spark_with_delta_pip`, `from delta.tables import DeltaTable`.

The local workspace's driver puts this folder first on `sys.path`; the code is in
`aml_databricks.delta.deltatable`, backed by delta-rs.
"""

from delta.pip_utils import configure_spark_with_delta_pip
from delta.tables import DeltaTable

__all__ = ["DeltaTable", "configure_spark_with_delta_pip"]
