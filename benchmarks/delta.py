"""Delta tables (delta-rs behind the `delta` Python data source) vs plain parquet, on a warm server.

    python benchmarks/delta.py [--runs 3] [--sizes 1000,1000000]

On one warm Spark Connect server of a `ClusterPool` (fresh data dir), for each size: write the
same DataFrame (`id`, `x = id * 2`, `s = string(id)`) with `mode("overwrite")` as parquet and as
Delta, then read each back twice: one column (`sum(x)`: parquet reads only that column) and all
columns (`sum(x), max(s), max(id)`, the same work for both). Delta is read as a notebook's
`format("delta").load(p)` reads it: through the catalog as ``delta.`p` ``, where Spark's parquet
scan reads the snapshot's files; and, side by side, through the Python data source alone (the
`source` rows: it gets no column pruning in PySpark 4.3, so it reads all three columns). Medians
of --runs, and the Delta/parquet ratio (goal: <= 1.5). Also the first Delta operation on the warm
server (the Python data source's first worker start and lookup) against the second, and the first
write in a second session (each run has a session of its own). Prints a table, the load average,
and writes benchmarks/results/delta.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import median, print_table, write_json

from aml_databricks.compute.host.pool import ClusterPool

EVERY_COLUMN = ("sum(x)", "max(s)", "max(id)")


def timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="1000,1000000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(scratch)
        pool = ClusterPool(data_dir, install_samples=False)
        try:
            lease = pool.acquire({}, 1)
            from pyspark.sql import SparkSession

            spark = SparkSession.builder.remote(lease.remote).getOrCreate()
            base = (data_dir / "tables").as_uri()
            spark.range(10).write.mode("overwrite").parquet(f"{base}/warmup")  # the server is warm for parquet
            first = timed(lambda: spark.range(10).write.format("delta").mode("overwrite").save(f"{base}/first"))
            second = timed(lambda: spark.range(10).write.format("delta").mode("overwrite").save(f"{base}/first"))
            first_read = timed(lambda: spark.read.format("delta").load(f"{base}/first").collect())
            # A run gets a session of its own: does the first Delta write in a new session pay again?
            other = SparkSession.builder.remote(lease.remote.replace(lease.session_id, str(uuid.uuid4()))).create()
            new_session = timed(lambda: other.range(10).write.format("delta").mode("overwrite").save(f"{base}/first"))
            other.stop()
            results: dict[str, Any] = {
                "first_delta_write_s": round(first, 3),
                "second_delta_write_s": round(second, 3),
                "first_delta_read_s": round(first_read, 3),
                "first_delta_write_in_a_new_session_s": round(new_session, 3),
                "sizes": {},
            }
            rows = []
            for size in sizes:
                frame = spark.range(size).selectExpr("id", "id * 2 AS x", "cast(id AS string) AS s")
                kinds = ("parquet_write", "delta_write", "parquet_read", "delta_read", "parquet_all", "delta_all",
                         "source_read", "source_all")
                measured: dict[str, list[float]] = {k: [] for k in kinds}
                for _ in range(args.runs):
                    parquet, delta = f"{base}/parquet_{size}", f"{base}/delta_{size}"
                    measured["parquet_write"].append(
                        timed(lambda p=parquet, f=frame: f.write.mode("overwrite").parquet(p))
                    )
                    measured["delta_write"].append(
                        timed(lambda p=delta, f=frame: f.write.format("delta").mode("overwrite").save(p))
                    )
                    measured["parquet_read"].append(
                        timed(lambda p=parquet: spark.read.parquet(p).selectExpr("sum(x)").collect())
                    )
                    measured["delta_read"].append(
                        timed(lambda p=delta: spark.read.table(f"delta.`{p}`").selectExpr("sum(x)").collect())
                    )
                    measured["source_read"].append(
                        timed(lambda p=delta: spark.read.format("delta").load(p).selectExpr("sum(x)").collect())
                    )
                    measured["parquet_all"].append(
                        timed(lambda p=parquet: spark.read.parquet(p).selectExpr(*EVERY_COLUMN).collect())
                    )
                    measured["delta_all"].append(
                        timed(lambda p=delta: spark.read.table(f"delta.`{p}`").selectExpr(*EVERY_COLUMN).collect())
                    )
                    measured["source_all"].append(
                        timed(lambda p=delta: spark.read.format("delta").load(p).selectExpr(*EVERY_COLUMN).collect())
                    )
                medians = {k: round(median(v), 3) for k, v in measured.items()}
                ratios = {
                    "write": round(medians["delta_write"] / medians["parquet_write"], 2),
                    "read": round(medians["delta_read"] / medians["parquet_read"], 2),
                    "read_all": round(medians["delta_all"] / medians["parquet_all"], 2),
                    "source_read": round(medians["source_read"] / medians["parquet_read"], 2),
                    "source_read_all": round(medians["source_all"] / medians["parquet_all"], 2),
                }
                results["sizes"][str(size)] = {"median_s": medians, "delta_over_parquet": ratios}
                rows.append([f"{size:,}", "write", medians["parquet_write"], medians["delta_write"], ratios["write"]])
                one_column = [medians["parquet_read"], medians["delta_read"], ratios["read"]]
                rows.append([f"{size:,}", "read 1 column", *one_column])
                rows.append([f"{size:,}", "read all", medians["parquet_all"], medians["delta_all"], ratios["read_all"]])
                source_one = [medians["parquet_read"], medians["source_read"], ratios["source_read"]]
                rows.append([f"{size:,}", "read 1 column, source", *source_one])
                source_all = [medians["parquet_all"], medians["source_all"], ratios["source_read_all"]]
                rows.append([f"{size:,}", "read all, source", *source_all])
            spark.stop()
            lease.release()
        finally:
            pool.close()
    print_table(
        f"Delta vs parquet on a warm server (medians of {args.runs}, seconds)",
        ["rows", "op", "parquet", "delta", "delta/parquet"],
        rows,
    )
    print(
        f"\nfirst Delta write on the warm server: {results['first_delta_write_s']} s "
        f"(second: {results['second_delta_write_s']} s); first Delta read: {results['first_delta_read_s']} s; "
        f"first Delta write in a new session: {results['first_delta_write_in_a_new_session_s']} s"
    )
    results["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(f"load average (1, 5, 15 min): {results['load_average']}")
    print(f"wrote {write_json('delta', results)}")


if __name__ == "__main__":
    main()
