"""1,000 runs submitted at once to one local workspace: do they all end, and does the API stay quick?

    python benchmarks/queue_burst.py [--runs 1000] [--max-concurrent-tasks 4] [--spark]

A workspace (`--no-spark` unless `--spark`: this measures the workspace, not Spark) gets N one-time
runs of a trivial notebook from 20 submitting threads at once. While they queue and run, one client
polls `runs/get` of a finished run back to back; the same poller first runs for a few seconds on the
idle workspace, so the table compares its latency under the burst with its latency idle, side by side.
Reported: every run terminal (and how), the life-cycle states seen, submit and runs/get p50/p99 (goal:
p99 <= 100 ms under the burst), the workspace's peak RSS (goal <= 300 MB) and its children's (drivers),
the load average. Writes benchmarks/results/queue_burst.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, percentile, print_table, rss_mb, served_workspace, write_json

NOTEBOOK = b"# Databricks notebook source\ndbutils.notebook.exit('ok')\n"
TERMINAL = {"TERMINATED", "SKIPPED", "INTERNAL_ERROR"}
IDLE_POLL_S = 3.0


def children_rss_mb(pid: int) -> float:
    """RSS of every descendant of `pid` (drivers, fork server), summed, in MB."""
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0.0, list(kids.get(pid, []))
    while todo:
        child = todo.pop()
        try:
            total += rss_mb(child)
        except OSError:
            continue
        todo += kids.get(child, [])
    return total


class Poller:
    """One client calling runs/get back to back until stopped; latencies in ms."""

    def __init__(self, url: str, run_id: int, auth: dict[str, str]) -> None:
        self._url, self._params, self._auth = url, {"run_id": str(run_id)}, auth
        self.latencies: list[float] = []
        self.at: list[float] = []  # when each call began (perf_counter), to split by phase
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            began = time.perf_counter()
            response = session.get(self._url, params=self._params, headers=self._auth, timeout=30)
            self.latencies.append((time.perf_counter() - began) * 1000)
            self.at.append(began)
            self.errors += response.status_code != 200
            time.sleep(0.005)  # a busy client, not a flood: the burst is the load

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def stats(latencies: list[float]) -> list[str]:
    if not latencies:
        return ["0", "-", "-", "-"]
    return [str(len(latencies)), f"{median(latencies):.1f}", f"{percentile(latencies, 0.99):.1f}",
            f"{max(latencies):.1f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--max-concurrent-tasks", type=int, default=4)
    parser.add_argument("--spark", action="store_true", help="a workspace with Spark (the drivers then use it)")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()

    flags = ["--max-concurrent-tasks", str(args.max_concurrent_tasks)] + ([] if args.spark else ["--no-spark"])
    with tempfile.TemporaryDirectory() as tmp, served_workspace(Path(tmp), *flags) as (host, token, pid):
        auth = {"Authorization": f"Bearer {token}"}
        api = f"{host}/api/2.2/jobs"
        requests.post(f"{host}/api/2.0/workspace/import", headers=auth, files={"content": NOTEBOOK},
                      data={"path": "/Shared/bench", "format": "SOURCE", "language": "PYTHON", "overwrite": "true"})
        submit = {"run_name": "bench", "tasks": [{"task_key": "t", "existing_cluster_id": "local",
                                                  "notebook_task": {"notebook_path": "/Shared/bench"}}]}
        first = requests.post(f"{api}/runs/submit", json=submit, headers=auth).json()["run_id"]
        while requests.get(f"{api}/runs/get", params={"run_id": first},
                           headers=auth).json()["state"]["life_cycle_state"] not in TERMINAL:
            time.sleep(0.1)
        idle_rss = rss_mb(pid)
        with Poller(f"{api}/runs/get", first, auth) as idle:
            time.sleep(IDLE_POLL_S)

        peak = {"rss": idle_rss, "children": 0.0}
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(0.5):
                peak["rss"] = max(peak["rss"], rss_mb(pid))
                peak["children"] = max(peak["children"], children_rss_mb(pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        submit_ms: list[float] = []

        def submit_one(i: int) -> int | None:
            began = time.perf_counter()
            response = requests.post(f"{api}/runs/submit", json={**submit, "run_name": f"b{i}"}, headers=auth)
            submit_ms.append((time.perf_counter() - began) * 1000)
            return int(response.json()["run_id"]) if response.ok else None

        states_seen: Counter[str] = Counter()
        with Poller(f"{api}/runs/get", first, auth) as busy:
            started = time.perf_counter()
            with ThreadPoolExecutor(20) as pool:
                ids = [r for r in pool.map(submit_one, range(args.runs)) if r is not None]
            submitted_s = time.perf_counter() - started
            submit_end = time.perf_counter()
            # runs/list with active_only pages through the runs still going; 0 left = all terminal
            active = len(ids)
            while active and time.perf_counter() - started < args.timeout:
                time.sleep(1.0)
                page = requests.get(f"{api}/runs/list", params={"active_only": "true", "limit": "25"},
                                    headers=auth).json()
                for run in page.get("runs", []):
                    states_seen[run["state"]["life_cycle_state"]] += 1
                active = len(page.get("runs", []))
            burst_s = time.perf_counter() - started
        sampling.set()
        sampler.join()
        after_rss = rss_mb(pid)

        results: Counter[str] = Counter()
        for run_id in ids:
            state = requests.get(f"{api}/runs/get", params={"run_id": run_id}, headers=auth).json()["state"]
            results[state.get("result_state") or state["life_cycle_state"]] += 1
    load = os.getloadavg()

    print_table(f"{args.runs} runs submitted at once (--max-concurrent-tasks {args.max_concurrent_tasks}, "
                f"{'Spark' if args.spark else '--no-spark'})",
                ["submitted", "terminal", "results", "submit s", "all terminal s"],
                [[len(ids), sum(results.values()), dict(results), f"{submitted_s:.1f}", f"{burst_s:.1f}"]])
    print(f"life-cycle states seen in runs/list?active_only while they ran: {dict(states_seen)}")
    while_submitting = [ms for ms, at in zip(busy.latencies, busy.at, strict=True) if at < submit_end]
    while_queued = [ms for ms, at in zip(busy.latencies, busy.at, strict=True) if at >= submit_end]
    print_table("API latency, ms", ["calls", "n", "p50", "p99", "max"], [
        ["runs/get, idle workspace", *stats(idle.latencies)],
        ["runs/get, during the burst (goal p99 <= 100)", *stats(busy.latencies)],
        [f"  while the {args.runs} submits arrive", *stats(while_submitting)],
        ["  after: while they queue and run", *stats(while_queued)],
        ["runs/submit, during the burst", *stats(submit_ms)],
    ])
    ratio = percentile(busy.latencies, 0.99) / percentile(idle.latencies, 0.99) if idle.latencies else 0.0
    print(f"runs/get p99 during the burst / idle: {ratio:.1f}x; errors idle {idle.errors}, busy {busy.errors}")
    print_table("RSS, MB", ["process", "MB"], [
        ["workspace idle", f"{idle_rss:.0f}"], ["workspace peak (goal <= 300)", f"{peak['rss']:.0f}"],
        ["workspace after", f"{after_rss:.0f}"], ["its children at their peak (drivers)", f"{peak['children']:.0f}"]])
    print(f"load average: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores")
    path = write_json("queue_burst", {
        "runs": args.runs, "max_concurrent_tasks": args.max_concurrent_tasks, "spark": args.spark,
        "submitted": len(ids), "results": dict(results), "states_seen": dict(states_seen),
        "submit_seconds": submitted_s, "all_terminal_seconds": burst_s,
        "runs_get_ms": {"idle": {"p50": median(idle.latencies), "p99": percentile(idle.latencies, 0.99)},
                        "burst": {"p50": median(busy.latencies), "p99": percentile(busy.latencies, 0.99),
                                  "max": max(busy.latencies)},
                        "while_submitting_p99": percentile(while_submitting, 0.99) if while_submitting else None,
                        "while_queued_p99": percentile(while_queued, 0.99) if while_queued else None},
        "submit_ms": {"p50": median(submit_ms), "p99": percentile(submit_ms, 0.99)},
        "rss_mb": {"idle": idle_rss, "peak": peak["rss"], "after": after_rss, "children_peak": peak["children"]},
        "load_average": load,
    })
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
