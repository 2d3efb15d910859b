"""The Python file task behind `aml-databricks workspace load-table NAME FILE`.

It runs inside the workspace like any other task, so the table lands in the metastore of the
server that owns the data dir (a second JVM could not open its embedded Derby database).
"""

import sys

from pyspark.sql import SparkSession

from aml_databricks.compute.tables import load_table

if __name__ == "__main__":
    name, file = sys.argv[1], sys.argv[2]
    rows = load_table(SparkSession.builder.getOrCreate(), name, file)
    print(f"loaded {rows} rows into {name}")
