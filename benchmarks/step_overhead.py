"""The step's own overhead, side by side with a bare databricks-sdk script, process start to exit.

    python benchmarks/step_overhead.py [--reps 5] [--seconds 2] [--long 120] [--no-long]

Against a served local workspace without Spark (`workspace serve --no-spark`: the run's own time is
a short, steady notebook), through a loopback proxy that notes when each runs/submit is answered and
counts runs/get calls. Each client is a fresh process, started alternately:
  ours   `aml-databricks run` (the console script), notebook task, --output to a temporary folder
         (so run.json is written), as an Azure ML job would start it
  sdk    `python -c` importing databricks-sdk, `jobs.submit(...)` then `.result()` (its waiter)
Rows, medians over --reps runs of a --seconds notebook:
  start → submitted   process start to the runs/submit answer
  end → exit          the run's end_time to the process having exited
  whole               process start to exit (and its ratio to the SDK script)
  runs/get calls      per run
then one --long run of each (120 s by default) side by side: runs/get calls and end → exit.
Prints the load average, writes benchmarks/results/step_overhead.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import CountingProxy, median, print_table, served_workspace, write_json

NOTEBOOK_PATH = "/Users/bench/sleep"
NOTEBOOK = b"# Databricks notebook source\nimport time\ntime.sleep(float(dbutils.widgets.get('seconds')))\n"

SDK_SCRIPT = """
import sys
from datetime import timedelta
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.jobs import NotebookTask, SubmitTask
host, token, path, seconds, name = sys.argv[1:6]
w = WorkspaceClient(host=host, token=token, auth_type="pat")
task = SubmitTask(task_key="t", existing_cluster_id="local",
                  notebook_task=NotebookTask(notebook_path=path, base_parameters={"seconds": seconds}))
run = w.jobs.submit(run_name=name, tasks=[task]).result(timeout=timedelta(hours=1))
sys.exit(0 if run.state.result_state.value == "SUCCESS" else 1)
"""


def _step_command() -> list[str]:
    script = Path(sys.executable).parent / "aml-databricks"
    return [str(script)] if script.exists() else [sys.executable, "-m", "aml_databricks.cli"]


def ours(host: str, token: str, seconds: float, workdir: Path, name: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "AZUREML_", "AML_DATABRICKS_"))}
    env.update(DATABRICKS_TOKEN=token, AZUREML_RUN_ID=name)  # the run's name, by default
    out = workdir / uuid.uuid4().hex[:8]
    args = ["run", "--databricks-host", host, "--notebook_path", NOTEBOOK_PATH, "--existing-cluster-id", "local",
            "--pypi", "", "--param", f"seconds={seconds}", "--output", str(out), "--no-require-output"]
    return subprocess.Popen([*_step_command(), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def sdk(host: str, token: str, seconds: float, workdir: Path, name: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABRICKS_")}
    return subprocess.Popen([sys.executable, "-c", SDK_SCRIPT, host, token, NOTEBOOK_PATH, str(seconds), name],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


CLIENTS: dict[str, Callable[[str, str, float, Path, str], subprocess.Popen[bytes]]] = {"ours": ours, "sdk": sdk}


def one(name: str, proxy: CountingProxy, direct: Any, token: str, seconds: float, workdir: Path) -> dict[str, Any]:
    """Start one client process and follow its run: start → submitted, end_time → exit, calls."""
    run_name = f"bench_{name}_{uuid.uuid4().hex[:12]}"  # finds this client's submit among concurrent ones
    started = time.time()
    process = CLIENTS[name](proxy.host, token, seconds, workdir, run_name)
    code = process.wait()
    exited = time.time()
    submits = [(at, run_id) for at, run_id, named in list(proxy.submitted) if named == run_name]
    if code != 0 or not submits:
        raise RuntimeError(f"{name} exited {code} (submits seen: {len(submits)})")
    submitted_at, run_id = submits[0]
    run = direct.jobs.get_run(run_id)
    return {
        "client": name,
        "run_id": run_id,
        "start_to_submitted_s": submitted_at - started,
        "end_to_exit_s": exited - run.end_time / 1000,
        "whole_s": exited - started,
        "run_length_s": (run.end_time - run.start_time) / 1000,
        "runs_get_calls": len(proxy.polls.get(run_id, [])),
    }


def _bare_python() -> float:
    times = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - start)
    return median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5, help="runs of each client (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=2.0, help="the short notebook's sleep")
    parser.add_argument("--long", type=float, default=120.0, help="the long run's sleep (default %(default)s)")
    parser.add_argument("--no-long", action="store_true", help="skip the long run")
    args = parser.parse_args()
    load_before = os.getloadavg()

    with (
        tempfile.TemporaryDirectory() as tmp,
        served_workspace(Path(tmp) / "ws", "--no-spark", "--max-concurrent-tasks", "8") as (host, token, _pid),
    ):
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.service.workspace import ImportFormat, Language

        direct = WorkspaceClient(host=host, token=token, auth_type="pat")
        direct.workspace.upload(
            NOTEBOOK_PATH, NOTEBOOK, format=ImportFormat.SOURCE, language=Language.PYTHON, overwrite=True
        )
        proxy = CountingProxy(host)
        workdir = Path(tmp) / "outputs"
        workdir.mkdir()
        try:
            one("ours", proxy, direct, token, args.seconds, workdir)  # warm the OS file cache for both
            one("sdk", proxy, direct, token, args.seconds, workdir)
            short = [one(name, proxy, direct, token, args.seconds, workdir)
                     for _ in range(args.reps) for name in CLIENTS]
            long: list[dict[str, Any]] = []
            if not args.no_long:
                with ThreadPoolExecutor(len(CLIENTS)) as pool:
                    futures = [pool.submit(one, name, proxy, direct, token, args.long, workdir) for name in CLIENTS]
                    long = [f.result() for f in futures]
        finally:
            proxy.close()
            shutil.rmtree(workdir, ignore_errors=True)
    bare = _bare_python()
    load_after = os.getloadavg()

    def med(name: str, key: str) -> float:
        return round(median([r[key] for r in short if r["client"] == name]), 3)

    summary = {name: {key: med(name, key) for key in
                      ("start_to_submitted_s", "end_to_exit_s", "whole_s", "run_length_s", "runs_get_calls")}
               for name in CLIENTS}
    ratio = {key: round(summary["ours"][key] / summary["sdk"][key], 2)
             for key in ("start_to_submitted_s", "end_to_exit_s", "whole_s")}
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}; python -c pass {bare:.3f} s")
    print_table(
        f"The step against a bare databricks-sdk script, a {args.seconds:g} s notebook (medians of {args.reps})",
        ["measure", "ours (s)", "sdk script (s)", "ours / sdk"],
        [
            ["process start → run submitted", summary["ours"]["start_to_submitted_s"],
             summary["sdk"]["start_to_submitted_s"], ratio["start_to_submitted_s"]],
            ["run's end_time → process exit", summary["ours"]["end_to_exit_s"],
             summary["sdk"]["end_to_exit_s"], ratio["end_to_exit_s"]],
            ["whole: start → exit", summary["ours"]["whole_s"], summary["sdk"]["whole_s"], ratio["whole_s"]],
            ["runs/get calls", summary["ours"]["runs_get_calls"], summary["sdk"]["runs_get_calls"], ""],
            ["(the run itself)", summary["ours"]["run_length_s"], summary["sdk"]["run_length_s"], ""],
        ],
    )
    if long:
        print_table(
            f"A {args.long:g} s notebook, one run each, side by side",
            ["client", "run length (s)", "runs/get calls", "end_time → exit (s)"],
            [[r["client"], round(r["run_length_s"], 2), r["runs_get_calls"], round(r["end_to_exit_s"], 3)]
             for r in long],
        )
    path = write_json("step_overhead", {
        "load_average_before": load_before, "load_average_after": load_after, "python_c_pass_s": round(bare, 3),
        "seconds": args.seconds, "reps": args.reps, "summary": summary, "ours_over_sdk": ratio,
        "short_runs": short, "long_runs": long,
    })
    print(f"\nwritten {path}")


if __name__ == "__main__":
    main()
