"""API load on the local workspace, side by side with a bare endpoint of the same framework.

    python benchmarks/api_load.py [--seconds 5] [--pollers 20] [--burst 200]

1. runs/get throughput and p50/p99 latency with N concurrent pollers, against a bare Starlette
   JSON endpoint on uvicorn serving a document of the same size (goal: ratio >= 0.5).
2. A burst of runs submitted at once: all must reach a terminal state without an error.
3. Server RSS when idle and after the load (goal idle <= 150 MB).
Prints tables and writes benchmarks/results/api_load.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, percentile, print_table, rss_mb, served_workspace, write_json

# The baseline gets the same HTTP stack as the workspace: uvicorn (httptools when installed), TCP_NODELAY.
BARE_APP = '''
import json, sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
doc = json.loads(sys.argv[2])
async def get(request):
    return JSONResponse(doc)
import socket
sock = socket.socket()
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
sock.bind(("127.0.0.1", int(sys.argv[1])))
config = uvicorn.Config(Starlette(routes=[Route("/api/2.2/jobs/runs/get", get)]), log_level="warning",
                        access_log=False, lifespan="off")
uvicorn.Server(config).run(sockets=[sock])
'''
NOTEBOOK = b"# Databricks notebook source\ndbutils.notebook.exit('ok')\n"
TERMINAL = {"TERMINATED", "SKIPPED", "INTERNAL_ERROR"}


def poll(url: str, params: dict[str, str], headers: dict[str, str], pollers: int, seconds: float
         ) -> dict[str, float]:
    latencies: list[list[float]] = [[] for _ in range(pollers)]
    errors = [0] * pollers
    stop_at = time.perf_counter() + seconds

    def worker(i: int) -> None:
        session = requests.Session()
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            response = session.get(url, params=params, headers=headers)
            latencies[i].append(time.perf_counter() - started)
            errors[i] += response.status_code != 200

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(pollers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    flat = [x for per in latencies for x in per]
    return {"requests": len(flat), "rps": len(flat) / seconds, "p50_ms": 1000 * median(flat),
            "p99_ms": 1000 * percentile(flat, 0.99), "errors": sum(errors)}


def poll_with_wrk(url: str, params: dict[str, str], headers: dict[str, str], pollers: int, seconds: float
                  ) -> dict[str, float]:
    """The same load from wrk (C, epoll), so the client is not what is measured."""
    query = "&".join(f"{k}={v}" for k, v in params.items())
    header_args = [arg for k, v in headers.items() for arg in ("-H", f"{k}: {v}")]
    out = subprocess.run(["wrk", "-t2", f"-c{pollers}", f"-d{seconds:g}s", "--latency", *header_args,
                          f"{url}?{query}"], capture_output=True, text=True, check=True).stdout

    def ms(text: str) -> float:  # wrk prints 850.00us, 2.31ms or 1.02s
        for unit, scale in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
            if text.endswith(unit):
                return float(text[: -len(unit)]) * scale
        return float(text)

    fields = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.strip().startswith(("50%", "99%"))}
    rps = float(next(line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec")))
    errors = sum(int(n) for line in out.splitlines() if "Non-2xx" in line for n in line.split()[-1:])
    return {"rps": rps, "p50_ms": ms(fields["50%"]), "p99_ms": ms(fields["99%"]), "errors": errors,
            "requests": rps * seconds}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--pollers", type=int, default=20)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--python-client", action="store_true", help="poll with python threads even if wrk exists")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, served_workspace(Path(tmp), "--no-spark",
                                                                "--max-concurrent-tasks", "4") as (host, token, pid):
        time.sleep(0.5)
        idle_rss = rss_mb(pid)
        auth = {"Authorization": f"Bearer {token}"}
        requests.post(f"{host}/api/2.0/workspace/import", headers=auth, files={"content": NOTEBOOK},
                      data={"path": "/Shared/bench", "format": "SOURCE", "language": "PYTHON", "overwrite": "true"})
        submit = {"run_name": "bench", "tasks": [{"task_key": "t", "existing_cluster_id": "local",
                                                  "notebook_task": {"notebook_path": "/Shared/bench"}}]}
        run_id = requests.post(f"{host}/api/2.2/jobs/runs/submit", json=submit, headers=auth).json()["run_id"]
        while requests.get(f"{host}/api/2.2/jobs/runs/get", params={"run_id": run_id},
                           headers=auth).json()["state"]["life_cycle_state"] not in TERMINAL:
            time.sleep(0.1)
        doc = requests.get(f"{host}/api/2.2/jobs/runs/get", params={"run_id": run_id}, headers=auth).text

        port = free_port()
        bare = subprocess.Popen([sys.executable, "-c", BARE_APP, str(port), doc], start_new_session=True)
        try:
            bare_url = f"http://127.0.0.1:{port}/api/2.2/jobs/runs/get"
            for _ in range(100):
                try:
                    requests.get(bare_url, timeout=1)
                    break
                except requests.ConnectionError:
                    time.sleep(0.1)
            load = poll_with_wrk if shutil.which("wrk") and not args.python_client else poll
            client = "wrk" if load is poll_with_wrk else "python requests"
            bare_stats = load(bare_url, {"run_id": str(run_id)}, auth, args.pollers, args.seconds)
            ours = load(f"{host}/api/2.2/jobs/runs/get", {"run_id": str(run_id)}, auth, args.pollers, args.seconds)
        finally:
            os.killpg(bare.pid, signal.SIGTERM)
            bare.wait()
        loaded_rss = rss_mb(pid)

        started = time.perf_counter()
        with ThreadPoolExecutor(20) as pool:
            submitted = list(pool.map(
                lambda i: requests.post(f"{host}/api/2.2/jobs/runs/submit", json={**submit, "run_name": f"b{i}"},
                                        headers=auth), range(args.burst)))
        ids = [r.json()["run_id"] for r in submitted if r.ok]
        pending, states = set(ids), {}
        while pending and time.perf_counter() - started < 600:
            for rid in list(pending):
                state = requests.get(f"{host}/api/2.2/jobs/runs/get", params={"run_id": rid},
                                     headers=auth).json()["state"]
                if state["life_cycle_state"] in TERMINAL:
                    states[rid] = state.get("result_state", state["life_cycle_state"])
                    pending.discard(rid)
            time.sleep(0.2)
        burst_seconds = time.perf_counter() - started
        after_burst_rss = rss_mb(pid)

    ratio = ours["rps"] / bare_stats["rps"]
    title = f"runs/get, {args.pollers} concurrent pollers ({client}), {args.seconds:g} s each"
    print_table(title, ["server", "req/s", "p50 ms", "p99 ms", "errors"], [
        ["bare Starlette JSON endpoint", f"{bare_stats['rps']:.0f}", f"{bare_stats['p50_ms']:.1f}",
         f"{bare_stats['p99_ms']:.1f}", bare_stats["errors"]],
        ["local workspace runs/get", f"{ours['rps']:.0f}", f"{ours['p50_ms']:.1f}", f"{ours['p99_ms']:.1f}",
         ours["errors"]],
        ["ratio (goal >= 0.5)", f"{ratio:.2f}", "", "", ""],
    ])
    successes = sum(1 for s in states.values() if s == "SUCCESS")
    print_table(f"{args.burst} runs submitted at once", ["submitted", "terminal", "SUCCESS", "errors", "seconds"], [
        [len(ids), len(states), successes, args.burst - len(ids) + len(pending), f"{burst_seconds:.1f}"]])
    print_table("server RSS", ["when", "MB"], [["idle (goal <= 150)", f"{idle_rss:.0f}"],
                                               ["after polling", f"{loaded_rss:.0f}"],
                                               ["after the burst", f"{after_burst_rss:.0f}"]])
    path = write_json("api_load", {
        "pollers": args.pollers, "seconds": args.seconds, "client": client, "bare": bare_stats, "runs_get": ours,
        "ratio": ratio,
        "burst": {"submitted": len(ids), "terminal": len(states), "success": successes,
                  "seconds": burst_seconds},
        "rss_mb": {"idle": idle_rss, "after_polling": loaded_rss, "after_burst": after_burst_rss},
    })
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
