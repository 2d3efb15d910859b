"""databricks-connect, unchanged, against a local workspace: `sc` mode or `host` mode.

    python databricks_connect.py sc sc://127.0.0.1:15002
    python databricks_connect.py host https://127.0.0.1:8080 TOKEN     # GRPC_DEFAULT_SSL_ROOTS_FILE_PATH set

Prints one JSON line: what each call returned, and the seconds the first and a warm
`range(10).count()` took.
"""

import json
import sys
import time

from databricks.connect import DatabricksSession
from pyspark.sql.functions import udf


def main(mode: str, *args: str) -> None:
    if mode == "sc":
        spark = DatabricksSession.builder.remote(args[0]).getOrCreate()
    else:
        host, token = args
        spark = DatabricksSession.builder.remote(host=host, token=token, cluster_id="local").getOrCreate()
    seen: dict[str, object] = {}
    started = time.monotonic()
    seen["count"] = spark.range(10).count()
    seen["first_count_s"] = round(time.monotonic() - started, 3)
    started = time.monotonic()
    spark.range(10).count()
    seen["warm_count_s"] = round(time.monotonic() - started, 3)
    seen["sql"] = spark.sql("SELECT 6 * 7 AS answer").collect()[0].answer
    seen["samples"] = spark.table("samples.iris").count()
    table = f"default.dbconnect_{mode}"
    spark.range(5).withColumnRenamed("id", "n").write.mode("overwrite").saveAsTable(table)
    seen["table"] = sorted(row.n for row in spark.table(table).collect())
    seen["pandas"] = spark.range(3).toPandas()["id"].tolist()

    @udf("long")
    def twice(value: int) -> int:
        return value * 2

    seen["udf"] = [row.d for row in spark.range(3).select(twice("id").alias("d")).collect()]
    spark.stop()
    print(json.dumps(seen))


if __name__ == "__main__":
    main(*sys.argv[1:])
