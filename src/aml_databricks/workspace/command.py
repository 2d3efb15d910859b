"""`aml-databricks workspace ...`: serve the local workspace, load tables into it."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from aml_databricks.errors import MissingExtraError, RunFailedError, UsageError

SERVER_MARKER = "server.json"  # written while `workspace serve` runs: where it listens, its pid


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("workspace", help="the local Azure Databricks workspace")
    commands = parser.add_subparsers(dest="workspace_command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="serve the Jobs, Workspace and Secrets APIs on loopback",
        description="Serve a local Azure Databricks workspace. Point databricks-sdk, the Databricks CLI or "
                    "Airflow at the printed host with the printed token.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8080, help="port (default: %(default)s; 0 picks a free one)")
    serve.add_argument("--data-dir", type=Path, default=Path(".aml-databricks"),
                       help="where state lives (default: %(default)s)")
    serve.add_argument("--token", help="API token (default: $AML_DATABRICKS_LOCAL_TOKEN, else generated once "
                                        "into DATA_DIR/token)")
    serve.add_argument("--mount", action="append", metavar="/mnt/NAME=FOLDER",
                       help="a DBFS mount backed by a local folder (repeatable)")
    serve.add_argument("--storage", action="append", metavar="abfss://C@A.dfs.core.windows.net=FOLDER",
                       help="a storage URI prefix backed by a local folder (repeatable)")
    serve.add_argument("--no-spark", action="store_true", help="run notebooks without Spark (no `spark` global)")
    serve.add_argument("--max-concurrent-tasks", type=int, default=4, metavar="N",
                       help="task runs executing at once; more wait in QUEUED (default: %(default)s)")
    serve.add_argument("--faults", help='inject faults into API calls, e.g. "429=0.2,503=0.1,reset=0.05,'
                                        'latency=0-200ms"')
    serve.add_argument("--faults-seed", type=int, help="seed for the fault draws (repeatable runs)")
    serve.set_defaults(func=serve_command)

    load = commands.add_parser(
        "load-table", help="load a parquet or CSV file (or folder) into a table of the local workspace",
        description="Save a local parquet or CSV file or folder as a table, e.g. `samples.sales`. Uses the "
                    "workspace serving DATA_DIR when one runs, else starts one for the load.",
    )
    load.add_argument("name", help="table name: table, schema.table or catalog.schema.table")
    load.add_argument("file", type=Path, help="parquet or CSV file, or a folder of them")
    load.add_argument("--data-dir", type=Path, default=Path(".aml-databricks"),
                      help="the workspace's data dir (default: %(default)s)")
    load.set_defaults(func=load_table_command)


def serve_command(args: argparse.Namespace) -> int:
    try:
        from aml_databricks.workspace.pages.auth import login_url
        from aml_databricks.workspace.server import LocalWorkspace, parse_mapping
    except ModuleNotFoundError as exc:
        raise MissingExtraError("local", "the local workspace") from exc
    from aml_databricks.workspace.faults import parse_faults

    parse_faults(args.faults)  # a bad --faults is a usage error before anything starts
    workspace = LocalWorkspace(
        args.data_dir, host=args.host, port=args.port, token=args.token,
        mounts=dict(parse_mapping(args.mount, "--mount")), storage=dict(parse_mapping(args.storage, "--storage")),
        spark=not args.no_spark, max_concurrent_tasks=args.max_concurrent_tasks,
        faults=args.faults, faults_seed=args.faults_seed,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    workspace.start()
    marker = workspace.data_dir / SERVER_MARKER
    marker.write_text(json.dumps({"host": workspace.host, "pid": os.getpid()}))
    try:
        print(f"Local Databricks workspace at {workspace.host}", flush=True)
        print(f"  token: {workspace.token_source}", flush=True)
        print(f"  data:  {workspace.data_dir}", flush=True)
        for point, folder in workspace.mounts.items():
            print(f"  mount: {point} -> {folder}", flush=True)
        print(f"  export DATABRICKS_HOST={workspace.host}", flush=True)
        # opening it once signs the browser in to the run pages (a cookie; the token is not kept in it)
        print(f"  pages: {login_url(workspace.host, workspace.token)}", flush=True)
        stop.wait()
    finally:
        print("stopping...", file=sys.stderr, flush=True)
        marker.unlink(missing_ok=True)
        workspace.stop()
    return 0


def load_table_command(args: argparse.Namespace) -> int:
    try:
        from aml_databricks.workspace.server import LocalWorkspace, resolve_token
    except ModuleNotFoundError as exc:
        raise MissingExtraError("local", "the local workspace") from exc
    from databricks.sdk.service.jobs import RunResultState, SparkPythonTask, SubmitTask

    from aml_databricks.compute.driver import load_table_task

    if not args.file.exists():
        raise UsageError(f"no such file or folder: {args.file}")
    task = SubmitTask(task_key="load_table", existing_cluster_id="local", spark_python_task=SparkPythonTask(
        python_file=str(Path(load_table_task.__file__).resolve()),
        parameters=[args.name, str(args.file.resolve())]))

    with contextlib.ExitStack() as stack:
        running = _running_server(args.data_dir)
        if running is not None:
            from databricks.sdk import WorkspaceClient

            client = WorkspaceClient(host=running, token=resolve_token(args.data_dir, None)[0], auth_type="pat")
        else:
            client = stack.enter_context(LocalWorkspace(args.data_dir, spark=True)).client
        run = client.jobs.submit(run_name=f"load-table {args.name}", tasks=[task]).result()
        task_run_id = run.tasks[0].run_id if run.tasks else None
        output = client.jobs.get_run_output(task_run_id) if task_run_id is not None else None
    if run.state is None or run.state.result_state != RunResultState.SUCCESS:
        reason = (output.error if output is not None else None) or (run.state.state_message if run.state else "")
        raise RunFailedError(f"loading {args.name} failed: {reason}")
    print(((output.logs if output is not None else None) or "").strip().splitlines()[-1])
    return 0


def _running_server(data_dir: Path) -> str | None:
    """The URL of the workspace serving this data dir, when one runs."""
    try:
        marker = json.loads((data_dir / SERVER_MARKER).read_text())
        os.kill(int(marker["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return str(marker["host"])
