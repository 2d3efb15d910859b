"""Spark start-up on this machine: the cluster pool's Connect server vs a bare local PySpark session.

    python benchmarks/spark_startup.py [--runs 3]

Measured, medians of --runs (each cold run on a fresh data dir, so nothing is cached):
- pool cold acquire: `ClusterPool.acquire` with no server up (JVM start + port + `SELECT 1`),
  split into its phases (port open, first query), samples not installed;
- first table query on that server: `spark.table(...)` after a `saveAsTable` (metastore start);
- warm new client: a new Python process connects to the warm server and runs a query
  (wall time of the process, and the connect+query part inside it);
- JVM RSS of the warm server after those queries;
- baseline: `SparkSession.builder.master('local[2]').getOrCreate()` + the same query in a fresh
  process (wall time, and the in-process part).
Prints a table and writes benchmarks/results/spark_startup.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from aml_databricks.compute.host.pool import ClusterPool

RESULTS = Path(__file__).parent / "results" / "spark_startup.json"

CLIENT = """
import sys, time
t0 = time.perf_counter()
from pyspark.sql import SparkSession
spark = SparkSession.builder.remote(sys.argv[1]).create()
assert spark.range(1000).selectExpr("sum(id)").collect()[0][0] == 499500
print(time.perf_counter() - t0)
spark.stop()
"""

BARE = """
import time
t0 = time.perf_counter()
from pyspark.sql import SparkSession
spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
assert spark.range(1000).selectExpr("sum(id)").collect()[0][0] == 499500
print(time.perf_counter() - t0)
spark.stop()
"""


def timed_process(code: str, *args: str) -> tuple[float, float]:
    """(wall seconds of a fresh interpreter running `code`, the seconds it printed itself)."""
    # pyspark's `builder.remote()` sets SPARK_CONNECT_MODE_ENABLED in its process; keep it from the child.
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE")}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"benchmark process failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - start, float(out.stdout.strip().splitlines()[-1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_percent(pid: int, seconds: float = 1.0) -> float:
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return 100 * (cpu_seconds(pid) - before) / seconds


def measure_interrupt(pool: ClusterPool, pid: int) -> dict[str, float]:
    """A long job on one session, `Lease.interrupt()`: how fast it ends and what the JVM burns after."""
    from pyspark.sql.connect.session import SparkSession

    lease = pool.acquire({}, 3)
    spark = SparkSession(connection=lease.remote)
    job = threading.Thread(target=lambda: _ignore_errors(spark.range(10**12).selectExpr("sum(id % 7)").collect))
    job.start()
    time.sleep(2)
    during = cpu_percent(pid)
    start = time.perf_counter()
    lease.interrupt()
    job.join(timeout=120)
    ended = time.perf_counter() - start
    after = cpu_percent(pid)
    spark.stop()
    lease.release()
    return {"interrupt_to_job_end_s": ended, "jvm_cpu_pct_during_job": during, "jvm_cpu_pct_after_interrupt": after}


def _ignore_errors(call: Any) -> None:
    with contextlib.suppress(Exception):  # the interrupted job raises; that is the point
        call()


def pool_run() -> dict[str, float]:
    from pyspark.sql.connect.session import SparkSession

    with tempfile.TemporaryDirectory() as data_dir:
        pool = ClusterPool(Path(data_dir), install_samples=False)
        try:
            start = time.perf_counter()
            lease = pool.acquire({}, 1)
            cold = time.perf_counter() - start
            phases = {k: round(v, 3) for k, v in pool.snapshot()[0].startup_s.items()}

            spark = SparkSession(connection=lease.remote)
            spark.range(10).write.saveAsTable("bench_t")
            start = time.perf_counter()
            spark.table("bench_t").count()
            table_query = time.perf_counter() - start
            spark.stop()
            lease.release()

            warm_wall, warm_inside = [], []
            for _ in range(3):
                other = pool.acquire({}, 2)
                wall, inside = timed_process(CLIENT, other.remote)
                other.release()
                warm_wall.append(wall)
                warm_inside.append(inside)
            [pid] = pool.server_pids()
            interrupt = measure_interrupt(pool, pid)
            return {
                **interrupt,
                "pool_cold_acquire_s": cold,
                "pool_port_open_s": phases["port_open"],
                "pool_first_query_s": phases["first_query"],
                "pool_first_table_query_s": table_query,
                "warm_client_process_wall_s": statistics.median(warm_wall),
                "warm_client_connect_query_s": statistics.median(warm_inside),
                "server_rss_mb": rss_mb(pid),
            }
        finally:
            pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs

    pool_runs = [pool_run() for _ in range(runs)]
    bare_runs = [timed_process(BARE) for _ in range(runs)]
    result: dict[str, Any] = {k: statistics.median(r[k] for r in pool_runs) for k in pool_runs[0]}
    result["bare_cold_process_wall_s"] = statistics.median(w for w, _ in bare_runs)
    result["bare_cold_session_query_s"] = statistics.median(i for _, i in bare_runs)
    result["ratio_pool_cold_to_bare_cold"] = result["pool_cold_acquire_s"] / result["bare_cold_session_query_s"]
    result["ratio_warm_client_to_bare_cold"] = result["warm_client_process_wall_s"] / result["bare_cold_process_wall_s"]
    result["runs"] = runs
    result["load_average_1m"] = os.getloadavg()[0]  # other work on the machine skews every number

    header = f"measure (median of {runs})"
    print(f"{header:<40} {'value':>10}")
    for key, value in result.items():
        if key not in ("runs", "load_average_1m"):
            print(f"{key:<40} {value:>10.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({k: round(v, 3) for k, v in result.items()}, indent=2) + "\n")
    print(f"load average {result['load_average_1m']:.1f}; written to {RESULTS}")


if __name__ == "__main__":
    main()
