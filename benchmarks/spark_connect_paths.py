"""What the workspace's Spark Connect forwarders cost: `range(10).count()` over each path, side by side.

    python benchmarks/spark_connect_paths.py [--reps 30]

One workspace served with `--tls`; three pyspark Spark Connect clients in this process, taking turns:
- direct:  the cluster JVM's own port (what the workspace's drivers use);
- sc://:   the stable Spark Connect address (workspace/gateway.py forwards to the JVM);
- tls:     the workspace's own port over TLS (`sc://HOST:PORT/;use_ssl=true;token=…`, the path
           databricks-connect's host mode takes), trusting the workspace CA by GRPC_DEFAULT_SSL_ROOTS_FILE_PATH.
Prints medians, 90th percentiles and the ratio to direct; writes benchmarks/results/spark_connect_paths.json.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _common import median, percentile, print_table, write_json

from aml_databricks.workspace import LocalWorkspace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, LocalWorkspace(Path(folder) / "data", tls=True) as workspace:
        from pyspark.sql import SparkSession

        from aml_databricks.compute.host.pool import ClusterPool

        assert isinstance(workspace.spark, ClusterPool) and workspace.ca_file is not None
        os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(workspace.ca_file)
        started = time.perf_counter()
        server = workspace.spark.outside_server()
        cold_start_s = time.perf_counter() - started
        port = workspace.https_host.rsplit(":", 1)[1]
        remotes = {
            "direct": f"sc://127.0.0.1:{server.port}",
            "sc://": workspace.spark_connect,
            "tls": f"sc://127.0.0.1:{port}/;use_ssl=true;token={workspace.token}",
        }
        sessions = {name: SparkSession.builder.remote(url).create() for name, url in remotes.items()}
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for spark in sessions.values():  # a first query per session, not measured
            spark.range(10).count()
        for _ in range(args.reps):
            for name, spark in sessions.items():
                mark = time.perf_counter()
                assert spark.range(10).count() == 10
                times[name].append(time.perf_counter() - mark)
        for spark in sessions.values():
            spark.stop()
    base = median(times["direct"])
    rows = [[name, f"{median(t) * 1000:.1f}", f"{percentile(t, 0.9) * 1000:.1f}", f"{median(t) / base:.2f}"]
            for name, t in times.items()]
    load = os.getloadavg()
    print_table(f"range(10).count(), {args.reps} turns each, load average {load[0]:.1f}",
                ["path", "median ms", "p90 ms", "x direct"], rows)
    print(f"cluster cold start through the pool: {cold_start_s:.1f} s")
    path = write_json("spark_connect_paths", {"reps": args.reps, "load_average": load, "cold_start_s": cold_start_s,
                                              "seconds": times})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
