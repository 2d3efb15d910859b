"""Restart-to-answering of `workspace serve --no-spark`: as shipped, side by side with a baseline.

The time from starting the process to its first answered `runs/list`, on a data dir that holds runs
(what a restart after a crash meets). Starts alternate between the variants, so load on the machine
hits them alike; compare the ratio, not the seconds, on a busy machine.

Variants:
  shipped     `python -m aml_databricks.cli workspace serve ...`
  eager-sdk   the same, after `import databricks.sdk` (what every start paid before the SDK's package
              body was deferred, aml_databricks/sdk_import.py)
  before      with `--before-src DIR`: the same command with DIR (the `src` folder of another checkout,
              e.g. main) first on PYTHONPATH

    python benchmarks/serve_start.py [--starts 10] [--before-src ../main/src]

Prints a table and writes benchmarks/results/serve_start.json.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

TOKEN = "dapi-serve-start"
SERVE = ["workspace", "serve", "--no-spark", "--port", "0", "--token", TOKEN]
EAGER = "import databricks.sdk, sys; from aml_databricks.cli import console_main; sys.argv[0] = 'x'; console_main()"


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far: what a start costs whatever the load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_once(data_dir: Path, variant: str, before_src: str | None) -> tuple[float, float]:
    """Seconds from process start to the first answered request, and the CPU seconds the server had used
    by then; the server is then killed."""
    env = dict(os.environ)
    if variant == "eager-sdk":
        command = [sys.executable, "-c", EAGER, *SERVE]
    else:
        command = [sys.executable, "-m", "aml_databricks.cli", *SERVE]
        if variant == "before" and before_src:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [before_src, env.get("PYTHONPATH")]))
    started = time.monotonic()
    process = subprocess.Popen([*command, "--data-dir", str(data_dir)], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, env=env, start_new_session=True)
    try:
        assert process.stdout is not None
        host = ""
        for line in process.stdout:
            if "Local Databricks workspace at" in line:
                host = line.split(" at ")[1].strip()
                break
        if not host:
            raise RuntimeError(f"{variant}: the workspace did not start (exit {process.wait()})")
        with httpx.Client(base_url=host, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            while http.get("/api/2.1/jobs/runs/list").status_code != 200:
                time.sleep(0.01)
        return time.monotonic() - started, cpu_s(process.pid)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # as a crash ends it: the next start recovers
        process.wait()


def seed_runs(data_dir: Path) -> None:
    """A data dir with a few finished runs, as one that has been used."""
    process = subprocess.Popen([sys.executable, "-m", "aml_databricks.cli", *SERVE, "--data-dir", str(data_dir)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        assert process.stdout is not None
        host = next(line.split(" at ")[1].strip() for line in process.stdout if "workspace at" in line)
        with httpx.Client(base_url=host, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as http:
            for i in range(20):
                http.post("/api/2.1/jobs/runs/submit", json={"run_name": f"seed {i}", "tasks": [{
                    "task_key": "t", "existing_cluster_id": "local",
                    "spark_python_task": {"python_file": "/Workspace/none.py"}}]})
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def main() -> int:
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import median, print_table, write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=10, help="starts per variant")
    parser.add_argument("--before-src", help="the src folder of another checkout to compare with")
    args = parser.parse_args()
    variants = ["shipped", "eager-sdk"] + (["before"] if args.before_src else [])
    times: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder) / "data"
        seed_runs(data_dir)
        for _ in range(args.starts):
            for variant in variants:
                wall, used = start_once(data_dir, variant, args.before_src)
                times[variant].append(wall)
                cpu[variant].append(used)
    load = os.getloadavg()
    base = median(times["shipped"])
    rows: list[list[Any]] = [[v, f"{median(t):.2f}", f"{max(t):.2f}", f"{min(t):.2f}", f"{median(t) / base:.2f}",
                              f"{median(cpu[v]):.2f}"] for v, t in times.items()]
    print_table(f"workspace serve --no-spark: start to first answer ({args.starts} starts each, "
                f"load average {load[0]:.1f})",
                ["variant", "median s", "max s", "min s", "ratio to shipped", "server CPU s (median)"], rows)
    print(write_json("serve_start", {"starts": args.starts, "load_average": load[0], "seconds": times,
                                     "median_s": {v: median(t) for v, t in times.items()},
                                     "cpu_s": cpu, "median_cpu_s": {v: median(c) for v, c in cpu.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
