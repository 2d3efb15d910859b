"""Notebook runs on the local workspace, side by side with a bare PySpark start and with the same cells
run directly on the same warm Spark server.

    python benchmarks/local_run.py [--repeat 5] [--cold-repeat 3]

1. Cold: submit -> terminal state seen (own 20 ms `runs/get` loop, not the SDK's ~1 s waiter) for a
   trivial notebook (`spark.range(10).count()`, `dbutils.notebook.exit("ok")`) on a served workspace
   with no Spark server up: once on a fresh data dir (first start: also installs the sample tables),
   then --cold-repeat times after restarting the workspace on that data dir. Interleaved with a bare
   cold PySpark start in a fresh process (`master("local[2]")`, the same count). Goal: cold <= 1.3x bare.
2. Warm: the trivial notebook and the example notebook (examples/notebooks/export_table.py, writing
   parquet to the mounted datastore) --repeat times on the warm server, --pause seconds apart (as in an
   inner loop; the pause is not timed, and lets the standby driver warm up; 0 = back to back); and a
   notebook whose first Delta write and read would start its session's Delta workers.
3. Direct: the same notebooks' Python cells exec'd in this process, a fresh globals dict per repetition,
   with `spark` connected to the same warm server (one session) and a minimal `dbutils` shim. Goal: warm
   <= 1.5x direct. Also with a new server-side session per repetition (create, mount conf, cells, stop),
   which is what each driver pays for its isolation.
4. RSS of the workspace process, the Spark server JVM(s) and the driver fork server.
Each warm repetition also records the task run's queue/setup/execution durations from `runs/get`, so
the table shows where the warm time goes. Prints tables, writes benchmarks/results/local_run.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, print_table, rss_mb, served_workspace, write_json

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "notebooks" / "export_table.py"
TRIVIAL = (
    "# Databricks notebook source\n"
    "n = spark.range(10).count()\n\n"
    "# COMMAND ----------\n\n"
    "assert n == 10\n"
    'dbutils.notebook.exit("ok")\n'
)
# A run's first Delta write and read: on a session of its own, the server starts that session's Python
# workers for the `delta` data source (seconds) unless the standby driver already did.
DELTA = (
    "# Databricks notebook source\n"
    "import uuid\n"
    "path = f'/bench/delta/{uuid.uuid4()}'\n"
    "spark.range(10).write.format('delta').mode('overwrite').save(path)\n"
    "assert spark.read.format('delta').load(path).count() == 10\n"
    'dbutils.notebook.exit("ok")\n'
)
TERMINAL = {"TERMINATED", "SKIPPED", "INTERNAL_ERROR"}
POLL_S = 0.02
MOUNT = "/mnt/azuremlblobstore"

BARE = """
import time
t0 = time.perf_counter()
from pyspark.sql import SparkSession
spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
assert spark.range(10).count() == 10
print(time.perf_counter() - t0)
spark.stop()
"""


class Api:
    """The few REST calls the benchmark makes, on one keep-alive session."""

    def __init__(self, host: str, token: str) -> None:
        self.host = host
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def upload(self, path: str, source: str) -> None:
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.service.workspace import ImportFormat, Language

        client = WorkspaceClient(host=self.host, token=self.session.headers["Authorization"].split()[1])
        client.workspace.upload(path, source.encode(), format=ImportFormat.SOURCE, language=Language.PYTHON,
                                overwrite=True)

    def get(self, endpoint: str, **params: Any) -> dict[str, Any]:
        response = self.session.get(f"{self.host}{endpoint}", params=params)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def run(self, notebook: str, parameters: dict[str, str] | None = None) -> dict[str, Any]:
        """Submit one notebook task on the `local` cluster; seconds until a terminal state is seen."""
        task = {"task_key": "t", "existing_cluster_id": "local",
                "notebook_task": {"notebook_path": notebook, "base_parameters": parameters or {}}}
        started = time.perf_counter()
        response = self.session.post(f"{self.host}/api/2.2/jobs/runs/submit",
                                     json={"run_name": "bench", "tasks": [task]})
        response.raise_for_status()
        run_id = response.json()["run_id"]
        while True:
            doc = self.get("/api/2.2/jobs/runs/get", run_id=run_id)
            if doc["state"]["life_cycle_state"] in TERMINAL:
                seconds = time.perf_counter() - started
                break
            time.sleep(POLL_S)
        task_run = doc["tasks"][0]
        result = task_run["state"].get("result_state")
        if result != "SUCCESS":
            output = self.get("/api/2.2/jobs/runs/get-output", run_id=task_run["run_id"])
            raise SystemExit(f"run {run_id} of {notebook} ended {result}: {output.get('error')}\n"
                             f"{output.get('error_trace') or ''}\n{output.get('logs', '')[-2000:]}")
        return {
            "seconds": seconds,
            "queue_s": task_run["queue_duration"] / 1000,
            "setup_s": task_run["setup_duration"] / 1000,
            "execution_s": task_run["execution_duration"] / 1000,
            "cleanup_s": task_run["cleanup_duration"] / 1000,
            # the submit call, and run end -> terminal state seen by this poller
            "outside_run_s": seconds - (doc["end_time"] - doc["start_time"]) / 1000,
        }


def bare_cold() -> tuple[float, float]:
    """(wall seconds of a fresh interpreter starting a local[2] session + count, its in-process part)."""
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE")}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", BARE], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env, start_new_session=True)
    try:
        out, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        else:
            with contextlib.suppress(ProcessLookupError):  # nothing of it may outlive it
                os.killpg(process.pid, signal.SIGKILL)
    if process.returncode != 0:
        raise SystemExit(f"bare PySpark failed:\n{err[-3000:]}")
    return time.perf_counter() - started, float(out.strip().splitlines()[-1])


def processes() -> list[tuple[int, int, str]]:
    """(pid, ppid, command line) of every process."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        found.append((int(entry.name), ppid, args))
    return found


def java_pids(marker: str) -> list[int]:
    return sorted(pid for pid, _, args in processes() if "java" in args.split(" ", 1)[0] and marker in args)


def descendants(parents: list[int]) -> list[int]:
    """Every process below `parents` (a JVM's Python workers: per session, so the standbys' too)."""
    children: dict[int, list[int]] = {}
    for pid, ppid, _ in processes():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], list(parents)
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def rss_or_zero(pid: int) -> float:
    try:
        return rss_mb(pid)
    except OSError:  # it ended meanwhile
        return 0.0


def fork_server_pids(parent: int) -> list[int]:
    return [pid for pid, ppid, args in processes() if ppid == parent and "forkserver" in args]


def server_port(jvm: int) -> int:
    """The Connect server's port, as the pool passed it on the JVM's command line."""
    args = Path(f"/proc/{jvm}/cmdline").read_bytes().decode().split("\0")
    key = "spark.connect.grpc.binding.port="
    return int(next(a.split(key, 1)[1] for a in args if a.startswith(key)))


# --- direct: the same cells in this process -------------------------------------------------------


class _Exit(Exception):
    def __init__(self, value: str) -> None:
        self.value = value


class _Widgets:
    def __init__(self, parameters: dict[str, str]) -> None:
        self.values = dict(parameters)

    def text(self, name: str, default: str, label: str | None = None) -> None:
        self.values.setdefault(name, default)

    def get(self, name: str) -> str:
        return self.values[name]

    getArgument = get


class _Notebook:
    def exit(self, value: Any) -> None:
        raise _Exit(str(value))


class _DBUtils:
    def __init__(self, parameters: dict[str, str]) -> None:
        self.widgets = _Widgets(parameters)
        self.notebook = _Notebook()


def direct_run(spark: Any, cells: list[Any], parameters: dict[str, str]) -> tuple[float, str | None]:
    """Seconds to exec the Python cells in a fresh namespace, and the exit value."""
    namespace: dict[str, Any] = {"__name__": "__main__", "spark": spark, "dbutils": _DBUtils(parameters)}
    started = time.perf_counter()
    value = None
    # The driver's prints go to a pipe; here they go to a buffer (and stay off the tables).
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            for cell in cells:
                exec(compile(cell.source, f"<cell {cell.number}>", "exec"), namespace)
        except _Exit as exit_:
            value = exit_.value
    return time.perf_counter() - started, value


def python_cells(source: str) -> list[Any]:
    from aml_databricks.notebooks import parse

    return [cell for cell in parse(source).cells if cell.language == "python" and cell.source.strip()]


# --- the benchmark --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="warm and direct repetitions")
    parser.add_argument("--pause", type=float, default=1.0,
                        help="seconds between warm runs, as in an inner loop (not timed; 0 = back to back)")
    parser.add_argument("--cold-repeat", type=int, default=3,
                        help="cold restarts and bare cold starts (plus one first start of a data dir)")
    args = parser.parse_args()
    if args.cold_repeat < 1:
        parser.error("--cold-repeat must be at least 1: the cold rows compare with a bare PySpark start")
    load_before = os.getloadavg()[0]
    print(f"load average (1 min) at start: {load_before:.2f}", flush=True)

    with tempfile.TemporaryDirectory(prefix="local-run-") as tmp:
        data_dir, datastore = Path(tmp) / "ws", Path(tmp) / "datastore"
        datastore.mkdir()
        serve_args = ("--mount", f"{MOUNT}={datastore}")
        cold_first: dict[str, Any] = {}
        cold_restart: list[dict[str, Any]] = []
        bare: list[tuple[float, float]] = []
        result: dict[str, Any] = {}
        for attempt in range(args.cold_repeat + 1):
            if attempt > 0:
                bare.append(bare_cold())  # interleaved, so drift in load hits both sides
                print(f"bare cold {attempt}: {bare[-1][0]:.1f} s", flush=True)
            last = attempt == args.cold_repeat
            with served_workspace(data_dir, *serve_args) as (host, token, pid):
                api = Api(host, token)
                assert not java_pids(str(data_dir)), "a Spark server is up before the cold run"
                api.upload("/Shared/trivial", TRIVIAL)
                cold = api.run("/Shared/trivial")
                if attempt == 0:
                    cold_first = cold
                else:
                    cold_restart.append(cold)
                print(f"cold {'first start' if attempt == 0 else f'restart {attempt}'}: {cold['seconds']:.1f} s",
                      flush=True)
                if last:
                    result = warm_and_direct(api, pid, data_dir, datastore, args.repeat, args.pause)
            if not last:
                wait_for_no_java(str(data_dir))
        wait_for_no_java(str(data_dir))
        leftover = java_pids(tmp)
    load_after = os.getloadavg()[0]
    report(args, cold_first, cold_restart, bare, result, load_before, load_after, leftover)


def wait_for_no_java(marker: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while java_pids(marker) and time.monotonic() < deadline:
        time.sleep(0.2)


def warm_and_direct(api: Api, pid: int, data_dir: Path, datastore: Path, repeat: int, pause: float
                    ) -> dict[str, Any]:
    example_source = EXAMPLE.read_text()
    api.upload("/Shared/export_table", example_source)
    warm_trivial: list[dict[str, Any]] = []
    warm_example: list[dict[str, Any]] = []
    warm_delta: list[dict[str, Any]] = []
    api.upload("/Shared/delta", DELTA)
    api.run("/Shared/export_table", {"output_folder": "azureml/bench-warmup/output_path"})  # first table read
    api.run("/Shared/delta")  # the server's first Delta operation ever (worker code, catalog): not per run
    for i in range(repeat):
        time.sleep(pause)
        warm_trivial.append(api.run("/Shared/trivial"))
        time.sleep(pause)
        warm_example.append(api.run("/Shared/export_table", {"output_folder": f"azureml/bench-{i}/output_path"}))
        time.sleep(pause)
        warm_delta.append(api.run("/Shared/delta"))
        print(f"warm {i + 1}: trivial {warm_trivial[-1]['seconds']:.2f} s, "
              f"example {warm_example[-1]['seconds']:.2f} s, delta {warm_delta[-1]['seconds']:.2f} s", flush=True)
    assert list((datastore / "azureml" / "bench-0" / "output_path").glob("*.parquet")), "no parquet written"

    jvms = java_pids(str(data_dir))
    forks = fork_server_pids(pid)
    standbys = [child for pid_, ppid, _ in processes() for child in [pid_] if ppid in forks]
    rss = {"workspace": rss_mb(pid), "spark_jvms": {str(j): rss_mb(j) for j in jvms},
           "fork_server": {str(f): rss_mb(f) for f in forks},
           "standby_drivers": {str(d): rss_mb(d) for d in standbys},
           "spark_python_workers": {str(w): mb for w in descendants(jvms) if (mb := rss_or_zero(w))}}
    local = api.get("/api/2.0/clusters/get", cluster_id="local")
    port = server_port(int(local.get("local_pid") or jvms[0]))

    started = time.perf_counter()
    from pyspark.sql import SparkSession

    imported = time.perf_counter() - started
    spark = SparkSession.builder.remote(f"sc://127.0.0.1:{port}").getOrCreate()
    # What the driver sets for the run's mounts (compute/driver/spark_session.py, paths.viewfs_session_confs).
    spark.conf.set(f"fs.viewfs.mounttable.dbfs.link.{MOUNT}", datastore.resolve().as_uri())
    session_s = time.perf_counter() - started - imported
    trivial_cells, example_cells = python_cells(TRIVIAL), python_cells(example_source)
    delta_cells = python_cells(DELTA)
    direct_run(spark, example_cells, {"output_folder": "azureml/direct-warmup/output_path"})
    direct_run(spark, delta_cells, {})
    direct_trivial: list[float] = []
    direct_example: list[float] = []
    direct_delta: list[float] = []
    for i in range(repeat):
        time.sleep(pause)  # the same rhythm as the workspace runs
        seconds, value = direct_run(spark, trivial_cells, {})
        assert value == "ok", value
        direct_trivial.append(seconds)
        time.sleep(pause)
        seconds, value = direct_run(spark, example_cells, {"output_folder": f"azureml/direct-{i}/output_path"})
        assert value and '"rows": 150' in value, value
        direct_example.append(seconds)
        time.sleep(pause)
        seconds, value = direct_run(spark, delta_cells, {})
        assert value == "ok", value
        direct_delta.append(seconds)
    assert list((datastore / "azureml" / "direct-0" / "output_path").glob("*.parquet")), "direct wrote nothing"
    spark.stop()
    # What isolation costs: a new server-side session per run (as each driver has), same cells, then stop.
    fresh_trivial: list[float] = []
    fresh_example: list[float] = []
    fresh_delta: list[float] = []
    for i in range(repeat):
        for cells, params, into in ((trivial_cells, {}, fresh_trivial),
                                    (example_cells, {"output_folder": f"azureml/fresh-{i}/output_path"},
                                     fresh_example), (delta_cells, {}, fresh_delta)):
            time.sleep(pause)
            started = time.perf_counter()
            session = SparkSession.builder.remote(f"sc://127.0.0.1:{port}/;session_id={uuid.uuid4()}").create()
            session.conf.set(f"fs.viewfs.mounttable.dbfs.link.{MOUNT}", datastore.resolve().as_uri())
            direct_run(session, cells, params)
            session.stop()
            into.append(time.perf_counter() - started)
    return {"warm_trivial": warm_trivial, "warm_example": warm_example, "direct_trivial": direct_trivial,
            "direct_example": direct_example, "fresh_trivial": fresh_trivial, "fresh_example": fresh_example,
            "warm_delta": warm_delta, "direct_delta": direct_delta, "fresh_delta": fresh_delta,
            "direct_import_s": imported, "direct_session_s": session_s,
            "rss_mb": rss, "cluster_startup_s": local.get("local_startup_s", {}), "port": port}


def report(args: argparse.Namespace, cold_first: dict[str, Any], cold_restart: list[dict[str, Any]],
           bare: list[tuple[float, float]], result: dict[str, Any], load_before: float, load_after: float,
           leftover: list[int]) -> None:
    def med(runs: list[dict[str, Any]], key: str = "seconds") -> float:
        return median([r[key] for r in runs])

    bare_wall = median([w for w, _ in bare])
    bare_inside = median([i for _, i in bare])
    cold = med(cold_restart)
    rows = [
        ["bare PySpark: fresh process, local[2] session + count", f"{bare_wall:.1f}", ""],
        ["  (in-process part: import + getOrCreate + count)", f"{bare_inside:.1f}", ""],
        ["workspace, no server up (restart of a data dir)", f"{cold:.1f}", f"{cold / bare_wall:.2f}"],
        ["workspace, first start of a data dir (+ sample tables)", f"{cold_first['seconds']:.1f}",
         f"{cold_first['seconds'] / bare_wall:.2f}"],
    ]
    print_table(f"cold: submit -> terminal seen, trivial notebook (median of {args.cold_repeat}; "
                "goal ratio <= 1.3)", ["what", "seconds", "x bare"], rows)

    wt, we = result["warm_trivial"], result["warm_example"]
    dt, de = median(result["direct_trivial"]), median(result["direct_example"])
    ft, fe = median(result["fresh_trivial"]), median(result["fresh_example"])
    wd, dd, fd = result["warm_delta"], median(result["direct_delta"]), median(result["fresh_delta"])
    print_table(f"warm: submit -> terminal seen vs the same cells exec'd directly on the same server "
                f"(median of {args.repeat}, runs {args.pause:g} s apart; goal ratio <= 1.5)",
                ["notebook", "workspace s", "direct s", "ratio", "direct, new session per run s", "ratio"], [
        ["trivial (range(10).count, exit)", f"{med(wt):.2f}", f"{dt:.2f}", f"{med(wt) / dt:.1f}", f"{ft:.2f}",
         f"{med(wt) / ft:.1f}"],
        ["example export_table.py (iris -> parquet)", f"{med(we):.2f}", f"{de:.2f}", f"{med(we) / de:.1f}",
         f"{fe:.2f}", f"{med(we) / fe:.1f}"],
        ["a run's first Delta write + read", f"{med(wd):.2f}", f"{dd:.2f}", f"{med(wd) / dd:.1f}", f"{fd:.2f}",
         f"{med(wd) / fd:.1f}"],
    ])
    split = ["queue_s", "setup_s", "execution_s", "cleanup_s", "outside_run_s"]
    print_table("where the workspace's time goes (medians, seconds; setup = lease + driver start, "
                "execution = driver connects Spark + cells)", ["run", *split], [
        ["cold restart", *(f"{med(cold_restart, k):.2f}" for k in split)],
        ["cold first start", *(f"{cold_first[k]:.2f}" for k in split)],
        ["warm trivial", *(f"{med(wt, k):.2f}" for k in split)],
        ["warm example", *(f"{med(we, k):.2f}" for k in split)],
        ["warm Delta", *(f"{med(wd, k):.2f}" for k in split)],
    ])
    print_table("direct, one-time costs in this process", ["what", "seconds"], [
        ["import pyspark.sql", f"{result['direct_import_s']:.2f}"],
        ["SparkSession.builder.remote(...).getOrCreate() + mount conf", f"{result['direct_session_s']:.2f}"],
    ])
    rss = result["rss_mb"]
    rss_rows = [["workspace process", f"{rss['workspace']:.0f}"]]
    rss_rows += [[f"Spark Connect server JVM (pid {p})", f"{v:.0f}"] for p, v in rss["spark_jvms"].items()]
    rss_rows += [[f"driver fork server (pid {p})", f"{v:.0f}"] for p, v in rss["fork_server"].items()]
    rss_rows += [[f"standby driver (pid {p}; shares most pages with the fork server)", f"{v:.0f}"]
                 for p, v in rss["standby_drivers"].items()]
    workers = rss["spark_python_workers"]
    rss_rows += [[f"Spark's Python workers ({len(workers)} processes, sharing pages)", f"{sum(workers.values()):.0f}"]]
    print_table("RSS after the warm runs", ["process", "MB"], rss_rows)
    print(f"\nload average (1 min): {load_before:.2f} at start, {load_after:.2f} at the end; "
          f"Java processes of this benchmark left: {leftover or 'none'}")

    path = write_json("local_run", {
        "repeat": args.repeat, "cold_repeat": args.cold_repeat, "pause_s": args.pause,
        "load_average_1m": {"start": load_before, "end": load_after},
        "bare_cold": {"wall_s": bare_wall, "in_process_s": bare_inside, "runs": bare},
        "cold_restart": {"median_s": cold, "ratio_to_bare": cold / bare_wall, "runs": cold_restart},
        "cold_first_start": {**cold_first, "ratio_to_bare": cold_first["seconds"] / bare_wall},
        "warm_trivial": {"median_s": med(wt), "runs": wt, "direct_median_s": dt, "ratio": med(wt) / dt,
                         "direct_runs": result["direct_trivial"], "new_session_median_s": ft,
                         "new_session_runs": result["fresh_trivial"]},
        "warm_example": {"median_s": med(we), "runs": we, "direct_median_s": de, "ratio": med(we) / de,
                         "direct_runs": result["direct_example"], "new_session_median_s": fe,
                         "new_session_runs": result["fresh_example"]},
        "warm_delta": {"median_s": med(wd), "runs": wd, "direct_median_s": dd, "ratio": med(wd) / dd,
                       "direct_runs": result["direct_delta"], "new_session_median_s": fd,
                       "new_session_runs": result["fresh_delta"]},
        "direct_import_s": result["direct_import_s"], "direct_session_s": result["direct_session_s"],
        "cluster_startup_s": result["cluster_startup_s"], "rss_mb": rss, "java_left": leftover,
    })
    print(f"written to {path}")


if __name__ == "__main__":
    main()
