"""The example pipeline end to end: `aml-databricks pipeline run`, cold and warm, against doing the
same work directly in one process.

    python benchmarks/pipeline_e2e.py [--runs 3]

Measured (wall time of whole processes, medians of --runs):
- cold: `pipeline run examples/pipeline/pipeline.yml` on a fresh data dir: it starts the embedded
  workspace and a Spark Connect server, creates the sample tables, runs both nodes;
- warm: the same pipeline with `--workspace` against a served workspace whose Spark server is up
  and whose sample tables exist (after one priming run), same data dir;
  with the per-node durations the runner prints, and the rest: the runner's own time (loading the
  YAML with azure-ai-ml, MLflow, the notebook upload, the table; goal <= 2 s);
- direct: one fresh Python process doing the notebook's cells and the train script's work:
  local Spark session, the iris table, parquet out, pandas in, the same model.
Prints a table and writes benchmarks/results/pipeline_e2e.json.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import median, print_table, served_workspace, write_json

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "examples" / "pipeline" / "pipeline.yml"
CLI = [sys.executable, "-m", "aml_databricks.cli", "pipeline", "run", str(PIPELINE)]

DIRECT = """
import sys, tempfile
from pathlib import Path
from pyspark.sql import SparkSession
from sklearn import datasets
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

out = Path(tempfile.mkdtemp()) / "output_path"
spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
iris = datasets.load_iris(as_frame=True).frame
iris.columns = [c.replace(" (cm)", "_cm").replace(" ", "_") for c in iris.columns]
spark.createDataFrame(iris).createOrReplaceTempView("iris")
df = spark.table("iris")
rows = df.count()
df.write.mode("overwrite").parquet(str(out))
frame = pd.concat([pd.read_parquet(p) for p in sorted(out.glob("*.parquet"))], ignore_index=True)
features = [c for c in frame.columns if c != "target"]
x_train, x_test, y_train, y_test = train_test_split(
    frame[features], frame["target"], test_size=0.25, random_state=0, stratify=frame["target"])
model = RandomForestClassifier(n_estimators=50, max_depth=3, random_state=0).fit(x_train, y_train)
print("accuracy", accuracy_score(y_test, model.predict(x_test)), "rows", rows)
spark.stop()
"""

NODE_DONE = re.compile(r"^\[(\w+)\] completed after ([\d.]+) s$", re.MULTILINE)


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return elapsed, result.stdout


def node_seconds(output: str) -> dict[str, float]:
    return {name: float(seconds) for name, seconds in NODE_DONE.findall(output)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    load_at_start = os.getloadavg()[0]

    cold = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as data_dir:
            cold.append(timed([*CLI, "--data-dir", data_dir])[0])

    warm, databricks_node, train_node = [], [], []
    with tempfile.TemporaryDirectory() as data_dir:
        mount = f"/mnt/azuremlblobstore={Path(data_dir) / 'datastore'}"
        with served_workspace(Path(data_dir), "--mount", mount) as (host, token, _pid):
            env = {**os.environ, "DATABRICKS_TOKEN": token}
            notebooks = str(ROOT / "examples" / "notebooks")
            command = [*CLI, "--data-dir", data_dir, "--workspace", host, "--notebooks", notebooks]
            timed(command, env)  # priming: Spark server up, sample tables created
            for _ in range(runs):
                seconds, output = timed(command, env)
                nodes = node_seconds(output)
                warm.append(seconds)
                databricks_node.append(nodes["databricks"])
                train_node.append(nodes["train"])

    direct = [timed([sys.executable, "-c", DIRECT])[0] for _ in range(runs)]

    results = {
        "runs": runs,
        "cold_s": median(cold),
        "warm_s": median(warm),
        "warm_databricks_node_s": median(databricks_node),
        "warm_train_node_s": median(train_node),
        "warm_runner_own_s": median([w - d - t for w, d, t in zip(warm, databricks_node, train_node, strict=True)]),
        "direct_s": median(direct),
        "warm_over_direct": median(warm) / median(direct),
        "cold_over_direct": median(cold) / median(direct),
    }
    print_table(
        f"example pipeline, medians of {runs} runs",
        ["what", "wall time (s)", "x direct"],
        [
            ["cold: pipeline run, fresh data dir (workspace + Spark start)", f"{results['cold_s']:.1f}",
             f"{results['cold_over_direct']:.1f}"],
            ["warm: pipeline run --workspace (served, Spark up)", f"{results['warm_s']:.1f}",
             f"{results['warm_over_direct']:.1f}"],
            ["  of which the databricks node", f"{results['warm_databricks_node_s']:.1f}", ""],
            ["  of which the train node", f"{results['warm_train_node_s']:.1f}", ""],
            ["  of which the runner's own (goal <= 2 s)", f"{results['warm_runner_own_s']:.1f}", ""],
            ["direct: notebook cells + train in one process (local Spark)", f"{results['direct_s']:.1f}", "1.0"],
        ],
    )
    results["load_average_1min"] = [load_at_start, os.getloadavg()[0]]
    print(f"\nload average (1 min): {load_at_start:.2f} at start, {os.getloadavg()[0]:.2f} at the end")
    print(f"wrote {write_json('pipeline_e2e', results)}")


if __name__ == "__main__":
    main()
