"""Many step runs (`aml-databricks run`) against a workspace injecting 30 % faults: all correct, none twice.

The workspace (`workspace serve --no-spark --faults 429=0.15,503=0.1,reset=0.05`) answers 30 % of API
calls with a 429, a 503 or a reset connection. Each step run submits a notebook that appends its own
number to a file and exits with it. Correct means: every step exits 0, every number was written exactly
once (no run executed twice), and the workspace holds exactly one run per step (no duplicate submit).

    python benchmarks/step_soak.py [--runs 500] [--parallel 10]

Prints a table and writes benchmarks/results/step_soak.json. The suite's short version is
tests/e2e/test_step_cli.py::test_twenty_of_twenty_under_30_percent_faults.
"""

from __future__ import annotations

import argparse
import base64
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, percentile, print_table, served_workspace, write_json

FAULTS = "429=0.15,503=0.1,reset=0.05"
NOTEBOOK = "/Users/soak/count"
SOURCE = (
    "# Databricks notebook source\n"
    'open(dbutils.widgets.get("counter"), "a").write(dbutils.widgets.get("i") + "\\n")\n'
    'dbutils.notebook.exit(dbutils.widgets.get("i"))\n'
)
_CLEARED = ("DATABRICKS_", "AZUREML_", "MLFLOW_", "ARM_", "AML_DATABRICKS_", "DEFAULT_IDENTITY_CLIENT_ID")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--parallel", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        counter = root / "executions"
        with served_workspace(root / "data", "--no-spark", "--faults", FAULTS, "--faults-seed", "7") as (
            host, token, _pid,
        ):
            auth = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=host, headers=auth, timeout=30) as http:
                http.post("/api/2.0/local/admin/faults", json={"faults": "none"}).raise_for_status()
                http.post("/api/2.0/workspace/import", json={
                    "path": NOTEBOOK, "format": "SOURCE", "language": "PYTHON", "overwrite": True,
                    "content": base64.b64encode(SOURCE.encode()).decode()}).raise_for_status()
                http.post("/api/2.0/local/admin/faults", json={"faults": FAULTS, "seed": 7}).raise_for_status()
            names = [f"soak_{uuid.uuid4().hex[:12]}" for _ in range(args.runs)]

            def one(i: int) -> tuple[int, float]:
                env = {k: v for k, v in os.environ.items() if not k.startswith(_CLEARED)}
                env.update(DATABRICKS_HOST=host, DATABRICKS_TOKEN=token, AZUREML_RUN_ID=names[i],
                           AML_DATABRICKS_EXISTING_CLUSTER_ID="local", AML_DATABRICKS_PYPI="",
                           AML_DATABRICKS_CONNECT_TIMEOUT="2", AML_DATABRICKS_RETRY_BUDGET="120")
                started = time.monotonic()
                done = subprocess.run(
                    [sys.executable, "-m", "aml_databricks.cli", "run", "--notebook-path", NOTEBOOK,
                     "--param", f"counter={counter}", "--param", f"i={i}"],
                    env=env, capture_output=True, text=True, timeout=900,
                )
                return done.returncode, time.monotonic() - started

            started = time.monotonic()
            with ThreadPoolExecutor(args.parallel) as pool:
                results = list(pool.map(one, range(args.runs)))
            wall = time.monotonic() - started
            with httpx.Client(base_url=host, headers=auth, timeout=30) as http:
                http.post("/api/2.0/local/admin/faults", json={"faults": "none"}).raise_for_status()
                submitted: Counter[str] = Counter()
                page: dict[str, object] = {"limit": 25}
                while True:
                    listing = http.get("/api/2.1/jobs/runs/list", params=page).json()
                    submitted.update(r.get("run_name", "") for r in listing.get("runs", []))
                    if not listing.get("next_page_token"):
                        break
                    page = {"limit": 25, "page_token": listing["next_page_token"]}
        written = Counter(counter.read_text().split()) if counter.exists() else Counter()
    failed = sum(code != 0 for code, _ in results)
    executed_twice = sum(n > 1 for n in written.values())
    never_executed = args.runs - len(written)
    duplicates = sum(submitted[name] - 1 for name in names if submitted[name] > 1)
    missing = sum(submitted[name] == 0 for name in names)
    times = [t for _, t in results]
    rows = [["step runs", args.runs], ["exit 0", args.runs - failed], ["executed twice", executed_twice],
            ["never executed", never_executed], ["duplicate runs", duplicates], ["runs not found", missing],
            ["wall s", f"{wall:.0f}"], ["step p50 s", f"{median(times):.1f}"],
            ["step p95 s", f"{percentile(times, 0.95):.1f}"]]
    print_table(f"step soak under faults {FAULTS} ({args.parallel} at a time)", ["what", "value"], rows)
    print(write_json("step_soak", {
        "runs": args.runs, "parallel": args.parallel, "faults": FAULTS, "failed": failed,
        "executed_twice": executed_twice, "never_executed": never_executed, "duplicate_runs": duplicates,
        "runs_not_found": missing, "wall_s": wall, "step_p50_s": median(times),
        "step_p95_s": percentile(times, 0.95),
    }))
    return 0 if failed == executed_twice == never_executed == duplicates == missing == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
