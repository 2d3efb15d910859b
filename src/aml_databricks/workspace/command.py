"""`aml-databricks workspace ...`: serve the local workspace, load tables into it."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from aml_databricks.errors import MissingExtraError, RunFailedError, UsageError


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
    serve.add_argument("--spark-connect-port", type=int, metavar="PORT",
                       help="the default cluster's Spark Connect address, sc://HOST:PORT, for databricks-connect "
                            "and pyspark (default: 15002, or a free port if that is taken; 0 picks a free one)")
    serve.add_argument("--tls", action="store_true",
                       help="also serve HTTPS and gRPC-over-TLS on --port, with a local CA in DATA_DIR/tls, for "
                            "databricks-connect's host mode (docs/local-workspace.md); http:// keeps working")
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

    imp = commands.add_parser(
        "import", help="put a local notebook or file, or a folder of them, into the local workspace",
        description="Import LOCAL_PATH into the local workspace at WORKSPACE_PATH, replacing what is there. "
                    "A file with a notebook suffix (.py .sql .scala .r .ipynb) becomes a notebook at "
                    "WORKSPACE_PATH, any other file a workspace file. A folder is imported recursively the way "
                    "`databricks workspace import-dir` does: files with a Databricks notebook header and .ipynb "
                    "files become notebooks named without their suffix, the rest workspace files. Goes through "
                    "the workspace serving DATA_DIR when one runs.",
    )
    imp.add_argument("local_path", type=Path, metavar="LOCAL_PATH", help="a file or a folder")
    imp.add_argument("workspace_path", metavar="WORKSPACE_PATH", help="e.g. /Shared/my_notebook")
    imp.add_argument("--data-dir", type=Path, default=Path(".aml-databricks"),
                     help="the workspace's data dir (default: %(default)s)")
    imp.set_defaults(func=import_command)


def serve_command(args: argparse.Namespace) -> int:
    from aml_databricks.workspace.lock import WorkspaceInUseError, running_workspace

    # Before the heavy imports: a second serve on a data dir answers at once, and the first line
    # comes within a fraction of a second.
    running = running_workspace(args.data_dir, wait_s=3)
    if running is not None:
        raise WorkspaceInUseError(f"{args.data_dir} is already served by the workspace at {running.describe()}; "
                                  "stop it first or use another --data-dir")
    for flag, port in (("--port", args.port), ("--spark-connect-port", args.spark_connect_port)):
        if port is not None and not 0 <= port <= 65535:
            raise UsageError(f"{flag} {port} is not a port: 0 to 65535 (0 picks a free one)")
    print(f"starting the local Databricks workspace on {args.data_dir} ...", file=sys.stderr, flush=True)
    from aml_databricks.sdk_import import defer_package_init

    defer_package_init()  # the server needs a few SDK service modules, not the whole SDK, to answer
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
        faults=args.faults, faults_seed=args.faults_seed, if_running="fail",
        spark_connect_port=args.spark_connect_port, tls=args.tls,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    _show_workspace_log()
    workspace.start()
    try:
        print(f"Local Databricks workspace at {workspace.host}", flush=True)
        print(f"  token: {workspace.token_source}", flush=True)
        print(f"  data:  {workspace.data_dir}", flush=True)
        for point, folder in workspace.mounts.items():
            print(f"  mount: {point} -> {folder}", flush=True)
        print(f"  export DATABRICKS_HOST={workspace.host}", flush=True)
        if workspace.https_host:
            print(f"  https: {workspace.https_host} (REST and databricks-connect's gRPC), trusting the CA:", flush=True)
            ca = workspace.ca_file
            print(f"  export REQUESTS_CA_BUNDLE={ca} GRPC_DEFAULT_SSL_ROOTS_FILE_PATH={ca}", flush=True)
        if workspace.spark_connect:
            print(f"  spark connect: {workspace.spark_connect} (cluster_id local)", flush=True)
        # opening it once signs the browser in to the run pages (a cookie; the token is not kept in it)
        print(f"  pages: {login_url(workspace.host, workspace.token)}", flush=True)
        if workspace.spark is not None:
            print("  Spark starts with the first run (about 15 s, 25 s on a new data dir); Ctrl-C stops",
                  flush=True)
        stop.wait()
    finally:
        print("stopping...", file=sys.stderr, flush=True)
        workspace.stop()
    # Stopped by a signal, everything closed: leave without exit handlers. pyspark's, for a Spark
    # Connect client cut off during a cold start, would retry the stopped server for minutes.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _show_workspace_log() -> None:
    """A server's own log on stderr: Spark servers starting and ready (with their timings), runs lost
    at a restart. Spark's and the JVM's output stays in DATA_DIR/clusters/<id>/server.log."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    for name, level in (("aml_databricks", logging.WARNING), ("aml_databricks.compute.host", logging.INFO)):
        logging.getLogger(name).setLevel(level)
    logging.getLogger("aml_databricks").addHandler(handler)


def load_table_command(args: argparse.Namespace) -> int:
    try:
        from aml_databricks.workspace.server import LocalWorkspace
    except ModuleNotFoundError as exc:
        raise MissingExtraError("local", "the local workspace") from exc
    from databricks.sdk.service.jobs import RunResultState, SparkPythonTask, SubmitTask

    from aml_databricks.compute.driver import load_table_task

    if not args.file.exists():
        raise UsageError(f"no such file or folder: {args.file}")
    task = SubmitTask(task_key="load_table", existing_cluster_id="local", spark_python_task=SparkPythonTask(
        python_file=str(Path(load_table_task.__file__).resolve()),
        parameters=[args.name, str(args.file.resolve())]))

    # Uses the workspace serving DATA_DIR when one runs, else starts one for the load.
    with LocalWorkspace(args.data_dir, spark=True) as workspace:
        client = workspace.client
        run = client.jobs.submit(run_name=f"load-table {args.name}", tasks=[task]).result()
        task_run_id = run.tasks[0].run_id if run.tasks else None
        output = client.jobs.get_run_output(task_run_id) if task_run_id is not None else None
    if run.state is None or run.state.result_state != RunResultState.SUCCESS:
        reason = (output.error if output is not None else None) or (run.state.state_message if run.state else "")
        raise RunFailedError(f"loading {args.name} failed: {reason}")
    print(((output.logs if output is not None else None) or "").strip().splitlines()[-1])
    return 0


NOTEBOOK_LANGUAGES = {".py": "PYTHON", ".sql": "SQL", ".scala": "SCALA", ".r": "R"}


def import_command(args: argparse.Namespace) -> int:
    source: Path = args.local_path
    if not source.exists():
        raise UsageError(f"no such file or folder: {source}")
    if not str(args.workspace_path).startswith("/"):
        raise UsageError(f"WORKSPACE_PATH must be absolute, like /Shared/{source.stem}: got {args.workspace_path!r}")
    target = "/" + str(args.workspace_path).strip("/")
    if source.is_dir():
        plan = [(path, *_placement(path, f"{target}/{path.relative_to(source).as_posix()}", by_header=True))
                for path in sorted(source.rglob("*")) if path.is_file() and not _hidden(path.relative_to(source))]
    else:
        plan = [(source, *_placement(source, target, by_header=False))]
    try:
        from aml_databricks.workspace.server import LocalWorkspace
    except ModuleNotFoundError as exc:
        raise MissingExtraError("local", "the local workspace") from exc
    import base64

    from databricks.sdk.errors.base import DatabricksError
    from databricks.sdk.service.workspace import ImportFormat, Language

    with LocalWorkspace(args.data_dir, spark=False) as workspace:
        client = workspace.client
        try:
            client.workspace.mkdirs(target if source.is_dir() else target.rsplit("/", 1)[0] or "/")
            for path, stored, fmt, language in plan:
                client.workspace.mkdirs(stored.rsplit("/", 1)[0] or "/")
                client.workspace.import_(stored, content=base64.b64encode(path.read_bytes()).decode(),
                                         format=ImportFormat(fmt), overwrite=True,
                                         language=Language(language) if language else None)
                kind = "file" if fmt == "RAW" else f"{(language or 'PYTHON').lower()} notebook"
                print(f"{stored} <- {path} ({kind})", flush=True)
        except DatabricksError as error:
            raise UsageError(f"import into {target} failed: {error}") from None
    return 0


def _placement(path: Path, stored: str, *, by_header: bool) -> tuple[str, str, str | None]:
    """(workspace path, import format, language) of one local file.

    A single file is a notebook by its suffix (the user named the target); in a folder, only files
    with a Databricks notebook header and .ipynb files are notebooks, named without their suffix, as
    `databricks workspace import-dir` does, so modules and data files stay files.
    """
    from aml_databricks.notebooks import is_databricks_source

    suffix = path.suffix.lower()
    strip = stored[: -len(path.suffix)] if by_header and path.suffix else stored
    if suffix == ".ipynb":
        return strip, "JUPYTER", None
    if suffix in NOTEBOOK_LANGUAGES:
        header = is_databricks_source(path.read_text(errors="replace")[:200])
        if header or not by_header:
            return strip, "SOURCE", NOTEBOOK_LANGUAGES[suffix]
    return stored, "RAW", None


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") or part == "__pycache__" for part in relative.parts)
