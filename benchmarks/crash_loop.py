"""kill -9 the workspace again and again under load: nothing finished lost, nothing in flight left hanging.

Each round starts `aml-databricks workspace serve --no-spark` on one data dir, lets 50 submitters and
5 pollers work against it for a moment, then SIGKILLs it mid-load. After every restart it checks what a
user would: every run seen finished before the kill is still finished with the same result; every run
accepted (a run_id answered) still exists; every run that was in flight is INTERNAL_ERROR with a
message. At the end: `PRAGMA integrity_check` of the database. Measured: restart-to-answering.

    python benchmarks/crash_loop.py [--kills 20] [--submitters 50]

Prints a table and writes benchmarks/results/crash_loop.json. `crash_loop()` is also what
tests/contract/test_crash_loop.py runs with 3 kills (asserting the properties, not the times).
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

TOKEN = "dapi-crash-loop"
NOTEBOOK = "/Users/me/short"
SOURCE = "# Databricks notebook source\nimport time\ntime.sleep(0.3)\ndbutils.notebook.exit('done')\n"
TERMINAL = {"TERMINATED", "SKIPPED", "INTERNAL_ERROR"}


@dataclass
class Round:
    restart_s: float
    accepted: int
    finished_before_kill: int
    in_flight_at_kill: int


@dataclass
class Report:
    rounds: list[Round] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    integrity: str = ""
    runs_total: int = 0


def start(data_dir: Path) -> tuple[subprocess.Popen[str], str, float]:
    """The served workspace, its host, and seconds from process start to its first answered request."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "aml_databricks.cli", "workspace", "serve", "--no-spark", "--port", "0",
         "--data-dir", str(data_dir), "--token", TOKEN],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "Local Databricks workspace at" in line:
            host = line.split(" at ")[1].strip()
            break
    else:
        raise RuntimeError(f"the workspace did not start: exit {process.wait()}")
    threading.Thread(target=lambda: [None for _ in process.stdout or []], daemon=True).start()  # drain
    with httpx.Client(base_url=host, headers=_auth()) as http:
        while http.get("/api/2.1/jobs/runs/list").status_code != 200:
            time.sleep(0.01)
    return process, host, time.monotonic() - started


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def _load(host: str, stop: threading.Event, submitters: int, accepted: set[int], seen: dict[int, str]) -> None:
    lock = threading.Lock()

    def submit() -> None:
        with httpx.Client(base_url=host, headers=_auth(), timeout=10) as http:
            while not stop.is_set():
                try:
                    reply = http.post("/api/2.1/jobs/runs/submit", json={"run_name": "loop", "tasks": [
                        {"task_key": "t", "existing_cluster_id": "local",
                         "notebook_task": {"notebook_path": NOTEBOOK}}]})
                except httpx.HTTPError:
                    return  # the server died under us
                if reply.status_code == 200:
                    with lock:
                        accepted.add(int(reply.json()["run_id"]))

    def poll() -> None:
        with httpx.Client(base_url=host, headers=_auth(), timeout=10) as http:
            while not stop.is_set():
                with lock:
                    ids = list(accepted)
                if not ids:
                    time.sleep(0.01)
                    continue
                try:
                    reply = http.get("/api/2.1/jobs/runs/get", params={"run_id": random.choice(ids)})
                except httpx.HTTPError:
                    return
                if reply.status_code == 200:
                    run = reply.json()
                    state = run["state"]
                    if state["life_cycle_state"] == "TERMINATED":
                        with lock:
                            seen[int(run["run_id"])] = state.get("result_state", "")

    threads = [threading.Thread(target=submit, daemon=True) for _ in range(submitters)]
    threads += [threading.Thread(target=poll, daemon=True) for _ in range(5)]
    for thread in threads:
        thread.start()
    stop.wait()
    for thread in threads:
        thread.join(15)


def _check(host: str, accepted: set[int], finished: dict[int, str], lost: set[int], report: Report) -> int:
    """After a restart: the properties; returns how many runs were in flight at this kill."""
    in_flight = 0
    with httpx.Client(base_url=host, headers=_auth(), timeout=30) as http:
        for run_id in sorted(accepted):
            reply = http.get("/api/2.1/jobs/runs/get", params={"run_id": run_id})
            if reply.status_code != 200:
                report.problems.append(f"run {run_id} accepted before a kill is gone: {reply.status_code}")
                continue
            state = reply.json()["state"]
            life = state["life_cycle_state"]
            if run_id in finished:
                if life != "TERMINATED" or state.get("result_state") != finished[run_id]:
                    report.problems.append(f"finished run {run_id} changed to {state}")
            elif life == "INTERNAL_ERROR":
                in_flight += run_id not in lost
                lost.add(run_id)
                if not state.get("state_message"):
                    report.problems.append(f"run {run_id} INTERNAL_ERROR without a message")
            elif life != "TERMINATED":
                report.problems.append(f"run {run_id} left {life} after the restart")
            if life == "TERMINATED":
                finished[run_id] = state.get("result_state", "")
    return in_flight


def crash_loop(data_dir: Path, kills: int, submitters: int, load_s: tuple[float, float] = (1.0, 2.5)) -> Report:
    report = Report()
    accepted: set[int] = set()
    finished: dict[int, str] = {}
    lost: set[int] = set()  # runs in flight at some kill, INTERNAL_ERROR since
    process, host, restart_s = start(data_dir)
    with httpx.Client(base_url=host, headers=_auth()) as http:
        http.post("/api/2.0/workspace/import", json={
            "path": NOTEBOOK, "format": "SOURCE", "language": "PYTHON", "overwrite": True,
            "content": base64.b64encode(SOURCE.encode()).decode()}).raise_for_status()
    try:
        for _ in range(kills):
            before = len(accepted)
            seen: dict[int, str] = {}
            stop = threading.Event()
            load = threading.Thread(target=_load, args=(host, stop, submitters, accepted, seen))
            load.start()
            time.sleep(random.uniform(*load_s))
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            stop.set()
            load.join()
            finished.update(seen)
            finished_before = len(finished)
            process, host, restart_s = start(data_dir)
            in_flight = _check(host, accepted, finished, lost, report)
            report.rounds.append(Round(restart_s, len(accepted) - before, finished_before, in_flight))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    with sqlite3.connect(data_dir / "workspace.db") as db:
        report.integrity = str(db.execute("PRAGMA integrity_check").fetchone()[0])
    report.runs_total = len(accepted)
    return report


def main() -> int:
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import print_table, write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--submitters", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        report = crash_loop(Path(folder) / "data", args.kills, args.submitters)
    rows: list[list[Any]] = [
        [i + 1, f"{r.restart_s:.2f}", r.accepted, r.finished_before_kill, r.in_flight_at_kill]
        for i, r in enumerate(report.rounds)
    ]
    print_table("crash loop (kill -9 under load, --no-spark)",
                ["kill", "restart-to-answering s", "accepted this round", "finished so far",
                 "in flight → INTERNAL_ERROR"],
                rows)
    restarts = [r.restart_s for r in report.rounds]
    summary = {
        "kills": args.kills, "submitters": args.submitters, "runs_accepted": report.runs_total,
        "integrity_check": report.integrity, "problems": report.problems,
        "restart_to_answering_s": {"max": max(restarts), "median": sorted(restarts)[len(restarts) // 2]},
        "rounds": [r.__dict__ for r in report.rounds],
    }
    print(f"\nintegrity_check: {report.integrity}; problems: {len(report.problems)}; "
          f"restart max {max(restarts):.2f} s")
    for problem in report.problems[:20]:
        print("  " + problem)
    print(write_json("crash_loop", summary))
    return 0 if not report.problems and report.integrity == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
