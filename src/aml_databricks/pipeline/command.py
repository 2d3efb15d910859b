"""`aml-databricks pipeline run`: an Azure ML pipeline on this machine, Databricks included."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aml_databricks.errors import RunFailedError, StoppedError, UsageError

if TYPE_CHECKING:
    from aml_databricks.pipeline.console import Console
    from aml_databricks.pipeline.stopping import Stopper

DEFAULT_DATA_DIR = Path(".aml-databricks")
BLOB_STORE_MOUNT = "/mnt/azuremlblobstore"  # where the demo mounts the Azure ML blob store in Databricks

EXIT_CODES = """exit codes:
  0    every node completed
  1    a node failed (the pipeline stops there; later nodes do not run)
  2    bad input: pipeline file, component reference, unbound input, cycle, --set, missing extra
  130  stopped by Ctrl-C, 143 by SIGTERM (the running node is stopped and its Databricks run cancelled)
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("pipeline", help="run an Azure ML pipeline locally")
    commands = parser.add_subparsers(dest="pipeline_command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="run an Azure ML pipeline (YAML or DSL) node by node on this machine",
        description="Run an Azure ML pipeline locally: each command node runs as a process with the "
        "environment Azure ML gives a job (AZUREML_RUN_ID, MLflow into DATA_DIR/mlruns), outputs in "
        "DATA_DIR/datastore/azureml/<run id>/<output>. Nodes running the Databricks component talk "
        "to a local workspace started for the run, with the datastore mounted at /mnt/azuremlblobstore.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "pipeline",
        metavar="PIPELINE",
        help="pipeline YAML, or a DSL function: FILE.py[:FUNCTION] or package.module:FUNCTION "
        "(default FUNCTION: build_pipeline)",
    )
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="INPUT=VALUE",
        dest="overrides",
        help="set a pipeline input (repeatable)",
    )
    run.add_argument(
        "--workspace",
        metavar="URL",
        help="use this Databricks workspace instead of starting a local one "
        "(token from DATABRICKS_TOKEN, else the step's own credentials)",
    )
    run.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="local datastore, MLflow store and workspace state (default: %(default)s)",
    )
    run.add_argument(
        "--components",
        type=Path,
        metavar="DIR",
        help="component YAML files that resolve azureml:NAME:VERSION references "
        "(the packaged execute_databricks_notebook is always known)",
    )
    run.add_argument(
        "--notebooks",
        type=Path,
        metavar="DIR",
        help="notebooks to upload: DIR/NAME.py (.sql, .ipynb) becomes the notebook_path ending in /NAME "
        "(default for the local workspace: a notebooks/ folder beside or above the pipeline; "
        "with --workspace, nothing is uploaded unless this is given)",
    )
    # Everything the run owns (nodes, the workspace, Spark, MLflow records) is closed before the command
    # returns: the process leaves without running third-party exit handlers, which can block (cli.py).
    run.set_defaults(func=run_command, exit_fast=True)


def run_command(args: argparse.Namespace) -> int:
    from aml_databricks.pipeline.console import Console
    from aml_databricks.pipeline.stopping import Stopper

    console = Console()
    stopper = Stopper()
    with stopper.installed():
        try:
            return _run(args, console, stopper)
        except StoppedError as stopped:
            message = str(stopped)  # everything above has unwound: nodes stopped, workspace closed
        finally:
            console.close()
    stopper.hard_exit(message)
    return stopper.exit_code


def _run(args: argparse.Namespace, console: Console, stopper: Stopper) -> int:
    with console.phase(f"loading {args.pipeline} with azure-ai-ml"):
        from aml_databricks.pipeline.background_load import BackgroundLoad

        overrides = dict(_key_value(item) for item in args.overrides)
        loading = BackgroundLoad(args.pipeline, overrides, args.components)
        try:
            # imported here while the child process loads the pipeline: about 2 s each
            from aml_databricks.pipeline import tracking
            from aml_databricks.pipeline.graph import topological_order
            from aml_databricks.pipeline.report import summary_table
            from aml_databricks.pipeline.runner import PipelineRunner

            tracking.import_mlflow()
            graph = loading.result()
        finally:
            loading.cancel()
        topological_order(graph.nodes)  # a cycle is reported before anything starts
        data_dir: Path = args.data_dir.resolve()
        local_tracking = tracking.LocalTracking(data_dir / "mlruns", graph.experiment_name)
    databricks_nodes = [node for node in graph.nodes.values() if node.runs_databricks]

    with _databricks(args, graph, databricks_nodes, data_dir, console, stopper) as target:
        runner = PipelineRunner(graph, data_dir, databricks=target, tracking=local_tracking, console=console)
        stopper.on_last_resort(runner.kill_running)
        result = runner.run()
    console.say("")
    console.say(summary_table(result, relative_to=Path.cwd()))
    console.say(f"MLflow: {local_tracking.tracking_uri} (experiment {graph.experiment_name}, run {result.run_id})")
    failed = result.failed
    if failed is not None:
        not_run = [n.node for n in result.nodes if n.status == "NotStarted"]
        skipped = f"; not run: {', '.join(not_run)}" if not_run else ""
        raise RunFailedError(
            f"node '{failed.node}' failed with exit code {failed.exit_code}{skipped} (log: {failed.log})"
        )
    return 0


@contextmanager
def _databricks(args: argparse.Namespace, graph: Any, nodes: Sequence[Any], data_dir: Path, console: Console,
                stopper: Stopper) -> Iterator[Any]:
    """The workspace the Databricks nodes use: --workspace, or a local one for the run's duration."""
    from aml_databricks.pipeline.runner import DATASTORE, DatabricksTarget

    if not nodes:
        yield None
        return
    if args.workspace:
        token = os.environ.get("DATABRICKS_TOKEN")
        if args.notebooks:  # only when asked: never write into someone's workspace by default
            from aml_databricks.pipeline.notebooks import upload_notebooks, workspace_api

            upload_notebooks(workspace_api(args.workspace, token), graph, nodes, args.notebooks)
        yield DatabricksTarget(args.workspace, token)
        return
    try:
        from aml_databricks.workspace import LocalWorkspace
        from aml_databricks.workspace.pages.auth import login_url
    except ModuleNotFoundError as exc:
        from aml_databricks.errors import MissingExtraError

        raise MissingExtraError("local", "running Databricks nodes on the local workspace") from exc
    from aml_databricks.pipeline.notebooks import upload_notebooks, workspace_api

    mounts: dict[str, str | Path] = {BLOB_STORE_MOUNT: data_dir / DATASTORE}
    # A workspace already serving this data dir (`workspace serve`) is used, warm, rather than
    # opened twice; the blob store mount it gets for the run is put back afterwards.
    owned = False
    try:
        with LocalWorkspace(data_dir, mounts=mounts, spark=True, say=console.say) as workspace:
            owned = workspace.borrowed is None
            if owned:
                console.say(f"started a local Databricks workspace at {workspace.host} on {data_dir}")
                pool = workspace.spark
                if pool is not None:
                    servers = getattr(pool, "server_pids", list)
                    stopper.on_last_resort(lambda: _kill(servers()))  # empty once the pool has closed
                    _warm_up_spark(pool, data_dir, console, stopper)
            console.say(f"  mount: {BLOB_STORE_MOUNT} -> {data_dir / DATASTORE}")
            # each node's step prints its run's page; this link signs a browser in to them
            console.say(f"  run pages: {login_url(workspace.host, workspace.token)}")
            upload_notebooks(workspace_api(workspace.host, workspace.token), graph, nodes, args.notebooks)
            # No cluster libraries by default (the demo's azureml-mlflow is provided by the local
            # workspace anyway); a pipeline that sets the pypi input still gets its packages.
            yield DatabricksTarget(workspace.host, workspace.token, environment={"AML_DATABRICKS_PYPI": ""})
    finally:
        if owned:
            _end_spark_left_behind(data_dir)


def _warm_up_spark(pool: Any, data_dir: Path, console: Console, stopper: Stopper) -> None:
    """Start the default Spark server now, in the background, and say what is happening: the
    Databricks node would otherwise wait in PENDING, silent, for the whole cold start."""
    first = not (data_dir / "metastore" / "samples-installed").exists()
    text = "starting local Spark (" + ("first start of this data dir, ~15 s" if first else "~12 s") + ")"

    def warm() -> None:
        started = time.monotonic()
        try:
            with console.phase(text):
                pool.acquire({}, 0).release()
        except Exception as error:  # the node's run reports the failure in full
            if stopper.signum is None:  # a stop closes the pool under the start: nothing to say
                console.say(f"local Spark did not start: {str(error).splitlines()[0]}")
            return
        console.say(f"local Spark ready after {time.monotonic() - started:.0f} s")

    threading.Thread(target=warm, name="spark-warm-up", daemon=True).start()


def _end_spark_left_behind(data_dir: Path) -> None:
    """SIGKILL any Spark server of our data dir still alive after the workspace closed.

    A stop that comes while the server is starting closes the pool under the starting thread,
    which then terminates the JVM itself, gracefully and in its own time; the command leaves
    before that, so nothing of the data dir we owned may be left running.
    """
    from aml_databricks.compute.host.jvm import jvm_pids

    deadline = time.monotonic() + 2
    while (left := jvm_pids(data_dir)) and time.monotonic() < deadline:
        _kill(left)
        time.sleep(0.1)


def _kill(pids: Sequence[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--set {item!r} is not INPUT=VALUE")
    return key.strip(), value
