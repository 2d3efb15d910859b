"""How fast each client notices that a run ended, and how many runs/get calls that costs.

    python benchmarks/wait_policy.py [--long] [--reps-short 5]

Against a served local workspace, through a loopback proxy that counts runs/get calls per run.
For every run length (2 s, 20 s, 120 s; 600 s with --long) all clients run side by side, several
repetitions at once:
  ours      aml-databricks run's library call (step.runner.run_step), default poll policy; it asks
            runs/get to hold (wait_seconds, which the local workspace honours)
  demo      the original demo's loop, as in shared/seed (databricks-cli RunsApi; it sleeps 10 s
            after seeing TERMINATED, so it returns 10-20 s late)
  sdk       databricks-sdk's `jobs.submit(...).result()` waiter
  fixed30   a fixed 30 s loop (Airflow's default poll interval)
Measured per run: detection latency (client returned - the run's end_time), runs/get calls, and
the longest pause between two polls. Efficiency = latency x calls / run length.
Also: `aml-databricks --help` against a bare `python -c pass`.
Prints tables and writes benchmarks/results/wait_policy.json.
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import CountingProxy, median, print_table, served_workspace, write_json

NOTEBOOK_PATH = "/Users/bench/sleep"
NOTEBOOK = b"# Databricks notebook source\nimport time\ntime.sleep(float(dbutils.widgets.get('seconds')))\n"
TERMINAL = {"TERMINATED", "SKIPPED", "INTERNAL_ERROR"}


# --- the clients: each submits one run of `seconds`, waits, returns (run_id, time it returned) ----


def ours(host: str, token: str, seconds: float) -> tuple[int, float]:
    from aml_databricks.step.report import Masker, Reporter
    from aml_databricks.step.runner import run_step
    from aml_databricks.step.settings import resolve

    values = {
        "databricks_host": host,
        "notebook_path": NOTEBOOK_PATH,
        "existing_cluster_id": "local",
        "pypi": [""],
        "param": [f"seconds={seconds}"],
        "require_output": False,
    }
    env = {"AZUREML_RUN_ID": f"bench_{uuid.uuid4().hex}", "DATABRICKS_TOKEN": token}
    result = run_step(resolve(values, env), env=env, reporter=Reporter(Masker(), log=io.StringIO()))
    returned = time.time()
    assert result.run_id is not None
    return result.run_id, returned


def demo(host: str, token: str, seconds: float) -> tuple[int, float]:
    """The seed's loop, verbatim in behaviour (single-task 2.0 payload, sleep(10) after each get)."""
    from databricks_cli.runs.api import RunsApi
    from databricks_cli.sdk import ApiClient

    api_client = ApiClient(host=host, token=token)
    api_client.url = f"{host}/api/"  # databricks-cli drops the port (issue #578)
    job_spec = {
        "run_name": "demo",
        "existing_cluster_id": "local",
        "notebook_task": {"notebook_path": NOTEBOOK_PATH, "base_parameters": {"seconds": str(seconds)}},
    }
    runs_api = RunsApi(api_client)
    run_id = runs_api.submit_run(job_spec)["run_id"]
    my_run = runs_api.get_run(run_id)
    while my_run["state"]["life_cycle_state"] != "TERMINATED":
        my_run = runs_api.get_run(run_id)
        time.sleep(10)
    return int(run_id), time.time()


def _sdk_client(host: str, token: str) -> Any:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config

    return WorkspaceClient(config=Config(host=host, token=token, auth_type="pat"))


def _task(seconds: float) -> Any:
    from databricks.sdk.service.jobs import NotebookTask, SubmitTask

    notebook = NotebookTask(notebook_path=NOTEBOOK_PATH, base_parameters={"seconds": str(seconds)})
    return SubmitTask(task_key="t", existing_cluster_id="local", notebook_task=notebook)


def sdk(host: str, token: str, seconds: float) -> tuple[int, float]:
    from datetime import timedelta

    run = (
        _sdk_client(host, token).jobs.submit(run_name="sdk", tasks=[_task(seconds)]).result(timeout=timedelta(hours=2))
    )
    return int(run.run_id), time.time()


def fixed30(host: str, token: str, seconds: float) -> tuple[int, float]:
    w = _sdk_client(host, token)
    run_id = int(w.jobs.submit(run_name="fixed30", tasks=[_task(seconds)]).run_id)
    while True:
        state = w.jobs.get_run(run_id).state
        if state is not None and state.life_cycle_state is not None and state.life_cycle_state.value in TERMINAL:
            return run_id, time.time()
        time.sleep(30)


CLIENTS: dict[str, Callable[[str, str, float], tuple[int, float]]] = {
    "ours": ours,
    "demo": demo,
    "sdk": sdk,
    "fixed30": fixed30,
}


def measure(
    proxy: CountingProxy, direct: Any, token: str, lengths: list[float], reps: dict[float, int]
) -> list[dict[str, Any]]:
    rows = []
    for length in lengths:
        jobs = [(name, rep) for rep in range(reps[length]) for name in CLIENTS]
        with ThreadPoolExecutor(len(jobs)) as pool:
            # Repetitions differ in length by a few percent: runs started together and equally long
            # would all end at the same phase of the poll schedule and measure one case, not a spread.
            futures = {
                job: pool.submit(CLIENTS[job[0]], proxy.host, token, length * (1 + 0.04 * job[1])) for job in jobs
            }
            done = {job: future.result() for job, future in futures.items()}
        for name in CLIENTS:
            latencies, calls, gaps, actual = [], [], [], []
            for (client, _), (run_id, returned) in done.items():
                if client != name:
                    continue
                run = direct.jobs.get_run(run_id)
                latencies.append(returned - run.end_time / 1000)
                # the notebook sleeps `length`; the run also includes starting its driver process
                actual.append((run.end_time - run.start_time) / 1000)
                polls = sorted(proxy.polls.get(run_id, []))
                calls.append(len(polls))
                gaps.append(max((b - a for a, b in itertools.pairwise(polls)), default=0.0))
            p50 = median(latencies)
            run_length = statistics.mean(actual)
            rows.append(
                {
                    "length_s": length,
                    "client": name,
                    "run_length_s": round(run_length, 2),
                    "latency_p50_s": round(p50, 3),
                    "calls_per_run": round(statistics.mean(calls), 1),
                    "efficiency": round(statistics.mean(latencies) * statistics.mean(calls) / run_length, 2),
                    "max_poll_gap_s": round(max(gaps), 2),
                    "runs": len(latencies),
                }
            )
    return rows


def help_overhead(repeats: int = 5) -> dict[str, float]:
    def best(cmd: list[str]) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True)
            times.append(time.perf_counter() - start)
        return median(times)

    bare = best([sys.executable, "-c", "pass"])
    helped = best([sys.executable, "-m", "aml_databricks.cli", "--help"])
    return {"python_c_pass_s": round(bare, 3), "help_s": round(helped, 3), "overhead_s": round(helped - bare, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--long", action="store_true", help="also 600 s runs")
    parser.add_argument("--reps-short", type=int, default=5, help="repetitions of the 2 s runs")
    parser.add_argument("--lengths", default="2,20,120", help="run lengths in seconds (default: %(default)s)")
    args = parser.parse_args()
    lengths = [float(x) for x in args.lengths.split(",")] + ([600.0] if args.long else [])
    reps = defaultdict(lambda: 1, {2.0: args.reps_short, 20.0: 5, 120.0: 2})
    load_at_start = os.getloadavg()[0]

    with (
        tempfile.TemporaryDirectory() as tmp,
        served_workspace(Path(tmp), "--no-spark", "--max-concurrent-tasks", "64") as (host, token, _pid),
    ):
        direct = _sdk_client(host, token)
        from databricks.sdk.service.workspace import ImportFormat, Language

        direct.workspace.upload(
            NOTEBOOK_PATH, NOTEBOOK, format=ImportFormat.SOURCE, language=Language.PYTHON, overwrite=True
        )
        proxy = CountingProxy(host)
        try:
            rows = measure(proxy, direct, token, lengths, reps)
        finally:
            proxy.close()

    print_table(
        "Detection latency and runs/get calls per run (through a counting proxy)",
        ["sleep", "client", "run length (s)", "latency p50 (s)", "calls/run", "efficiency", "max poll gap (s)", "runs"],
        [
            [
                r["length_s"],
                r["client"],
                r["run_length_s"],
                r["latency_p50_s"],
                r["calls_per_run"],
                r["efficiency"],
                r["max_poll_gap_s"],
                r["runs"],
            ]
            for r in rows
        ],
    )
    startup = help_overhead()
    print_table(
        "aml-databricks --help",
        ["python -c pass (s)", "--help (s)", "overhead (s)"],
        [[startup["python_c_pass_s"], startup["help_s"], startup["overhead_s"]]],
    )
    load = [load_at_start, os.getloadavg()[0]]
    path = write_json("wait_policy", {"runs": rows, "help": startup, "load_average_1min": load})
    print(f"\nload average (1 min): {load[0]:.2f} at start, {load[1]:.2f} at the end")
    print(f"written {path}")


if __name__ == "__main__":
    main()
