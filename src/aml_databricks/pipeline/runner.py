"""Run a pipeline graph locally, node after node, with the environment Azure ML would give each job.

For every node: a run id (its MLflow run's id, as in Azure ML where AZUREML_RUN_ID is the job's
MLflow run), output folders in the local datastore at `azureml/<run id>/<output>` (the layout of
Azure ML's default datastore, so the Databricks notebook finds them through the blob store mount),
the command rendered, and a subprocess in the component's code folder whose output is streamed
line by line with the node's name in front. The first failure stops the pipeline.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from aml_databricks.errors import StoppedError, UsageError
from aml_databricks.pipeline.console import Console
from aml_databricks.pipeline.graph import (
    Literal,
    Node,
    NodeOutput,
    ParentInput,
    PipelineGraph,
    topological_order,
)
from aml_databricks.pipeline.render import render_command
from aml_databricks.pipeline.tracking import FILE_STORE_SWITCH, LocalTracking

DATASTORE = "datastore"  # <data-dir>/datastore is the local "workspaceblobstore"
SPARK_ENV_SETTING = "AML_DATABRICKS_SPARK_ENV"  # the step's --spark-env, as a variable
LINE_WAIT_S = 0.25  # the main thread gets back to its bytecode (and a pending signal's handler) this often
STOP_GRACE_SECONDS = 90.0  # the step cancels its Databricks run on SIGTERM and waits for it


@dataclass(frozen=True)
class DatabricksTarget:
    """The workspace that nodes running `aml-databricks run` talk to."""

    host: str
    token: str | None  # None: the nodes find their own credential (DATABRICKS_TOKEN, Key Vault ...)
    environment: Mapping[str, str] = field(default_factory=dict)  # more settings for the step


@dataclass
class NodeResult:
    node: str
    status: str = "NotStarted"  # Running | Completed | Failed | Canceled | NotStarted
    run_id: str | None = None
    duration: float = 0.0
    outputs: dict[str, Path] = field(default_factory=dict)
    exit_code: int | None = None
    log: Path | None = None


@dataclass
class PipelineResult:
    run_id: str
    nodes: list[NodeResult]

    @property
    def failed(self) -> NodeResult | None:
        return next((n for n in self.nodes if n.status in {"Failed", "Canceled"}), None)


def input_values(
    node: Node,
    pipeline_inputs: Mapping[str, Any],
    upstream_outputs: Mapping[str, Mapping[str, Path]],
) -> dict[str, Any]:
    """The node's inputs that have a value: bound ones, else declared defaults."""
    values: dict[str, Any] = {}
    for key, spec in node.declared_inputs.items():
        binding = node.bindings.get(key)
        value: Any = None
        if isinstance(binding, Literal):
            value = binding.value
        elif isinstance(binding, ParentInput):
            value = pipeline_inputs.get(binding.name)
        elif isinstance(binding, NodeOutput):
            value = str(upstream_outputs[binding.node][binding.output])
        if value is None:
            value = spec.default
        if value is not None:
            values[key] = value
    return values


class PipelineRunner:
    def __init__(
        self,
        graph: PipelineGraph,
        data_dir: Path,
        *,
        databricks: DatabricksTarget | None = None,
        tracking: LocalTracking | None = None,
        out: TextIO = sys.stdout,
        console: Console | None = None,
    ) -> None:
        """Lines go to `console` when given (a live line on a terminal), else plainly to `out`."""
        self.graph = graph
        self.data_dir = data_dir.resolve()
        self.databricks = databricks
        self.tracking = tracking or LocalTracking(self.data_dir / "mlruns", graph.experiment_name)
        self.out = out
        self.console = console or Console(out, live=False)
        self._process: subprocess.Popen[str] | None = None

    def run(self) -> PipelineResult:
        order = topological_order(self.graph.nodes)  # a cycle fails before anything runs
        pipeline_run_id = self.tracking.start_pipeline(self.graph.name)
        result = PipelineResult(pipeline_run_id, [NodeResult(node.name) for node in order])
        self._say(f"pipeline {self.graph.name}: run {pipeline_run_id}, {len(order)} nodes")
        status = "Failed"
        try:
            for node, node_result in zip(order, result.nodes, strict=True):
                self._run_node(node, node_result, result)
                if node_result.status != "Completed":
                    break
            else:
                status = "Completed"
        except BaseException as exc:
            status = _status_after(exc)
            raise
        finally:
            self.tracking.end(pipeline_run_id, status)
        return result

    def _run_node(self, node: Node, node_result: NodeResult, pipeline: PipelineResult) -> None:
        run_id = self.tracking.start_node(pipeline.run_id, node.name)
        node_result.run_id = run_id
        node_result.status = "Running"
        started = time.monotonic()
        try:
            node_result.outputs = self._output_folders(node, run_id)
            upstream = {n.node: n.outputs for n in pipeline.nodes if n.status == "Completed"}
            values = input_values(node, self.graph.inputs, upstream)
            if node.runs_databricks and self.databricks and "databricks_host" in node.declared_inputs:
                values["databricks_host"] = self.databricks.host  # point the step at our workspace
            command = render_command(node.command, values, {k: str(v) for k, v in node_result.outputs.items()})
            work_dir = node.code_dir or self._scratch_dir(pipeline.run_id, node.name)
            if not work_dir.is_dir():
                raise UsageError(f"node '{node.name}': code folder not found: {work_dir}")
            node_result.log = self._logs_dir(pipeline.run_id) / f"{node.name}.log"
            self._say(f"[{node.name}] started: run {run_id}, component {node.component}")
            self._say(f"[{node.name}] $ {command}")
            node_result.exit_code = self._run_process(
                node.name, command, work_dir, self._environment(node, run_id), node_result.log
            )
            node_result.status = "Completed" if node_result.exit_code == 0 else "Failed"
        except BaseException as exc:
            node_result.status = _status_after(exc)
            raise
        finally:
            node_result.duration = time.monotonic() - started
            self.tracking.end(run_id, node_result.status)
            self._say(f"[{node.name}] {node_result.status.lower()} after {node_result.duration:.1f} s")

    def _output_folders(self, node: Node, run_id: str) -> dict[str, Path]:
        folders: dict[str, Path] = {}
        for name in node.outputs:
            folder = self.data_dir / DATASTORE / "azureml" / run_id / name
            folder.mkdir(parents=True, exist_ok=True)
            folders[name] = folder
        return folders

    def _logs_dir(self, pipeline_run_id: str) -> Path:
        folder = self.data_dir / "pipelines" / pipeline_run_id
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _scratch_dir(self, pipeline_run_id: str, node: str) -> Path:
        """The working folder of a node whose component has no code (Azure ML's empty snapshot)."""
        folder = self._logs_dir(pipeline_run_id) / node
        folder.mkdir(exist_ok=True)
        return folder

    def _environment(self, node: Node, run_id: str) -> dict[str, str]:
        env = dict(os.environ)
        # `python` and `aml-databricks` in a command mean this installation, as the job's
        # environment would; PYTHONUNBUFFERED so that the log streams while the node runs.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env["PYTHONUNBUFFERED"] = "1"
        if node.runs_databricks and self.databricks:
            # The notebook logs into the local MLflow file store too, from the cluster's environment.
            env[SPARK_ENV_SETTING] = ",".join(f"{k}={v}" for k, v in FILE_STORE_SWITCH.items())
            env.update(self.databricks.environment)
            env["DATABRICKS_HOST"] = self.databricks.host
            if self.databricks.token:
                env["DATABRICKS_TOKEN"] = self.databricks.token
        env.update(node.environment_variables)
        env["AZUREML_RUN_ID"] = run_id
        env.update(self.tracking.environment(run_id))
        return env

    def _run_process(self, node: str, command: str, cwd: Path, env: dict[str, str], log: Path) -> int:
        # A session of its own, so that stopping the node reaches everything it started.
        process = subprocess.Popen(
            ["/bin/sh", "-c", command],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,
        )
        self._process = process
        lines = _lines_of(process)
        try:
            with log.open("w", encoding="utf-8") as log_file, self.console.phase(f"[{node}] running", announce=False):
                try:
                    self._stream(node, lines, log_file)
                except BaseException:
                    self._say(f"[{node}] stopping: SIGTERM to the node's processes")
                    self._stop(node, process, lines, log_file)
                    raise
            return process.wait()
        finally:
            # The reader thread closes the pipe at its end: closing it here could wait on its read.
            _signal_group(process, signal.SIGKILL)  # nothing a node started outlives it, as in Azure ML
            self._process = None

    def kill_running(self) -> None:
        """The last resort of a stop whose cleanup overran: SIGKILL the running node's processes."""
        process = self._process
        if process is not None:
            _signal_group(process, signal.SIGKILL)

    def _stream(self, node: str, lines: queue.SimpleQueue[str | None], log_file: TextIO) -> None:
        """Copy the node's output to the log and the console until every writer has closed it.

        The lines come through a queue, read at most LINE_WAIT_S apart: Python runs a signal's handler
        in the main thread only, at its next bytecode, and a main thread blocked in read() on a quiet
        node's pipe would not get there until the node printed again if another thread took the signal.
        """
        while True:
            try:
                line = lines.get(timeout=LINE_WAIT_S)
            except queue.Empty:
                continue
            if line is None:
                return
            log_file.write(line)
            self._say(f"[{node}] {line.rstrip()}")

    def _stop(self, node: str, process: subprocess.Popen[str], lines: queue.SimpleQueue[str | None],
              log_file: TextIO) -> None:
        """SIGTERM the node's process group and keep streaming while it winds down (the step
        cancels its Databricks run and says so); SIGKILL whatever is left after the grace period.

        Waiting for the end of the output, not for the shell, matters: `sh -c` dies of SIGTERM at
        once, while the step it started is still cancelling its run.
        """
        _signal_group(process, signal.SIGTERM)
        killer = threading.Timer(STOP_GRACE_SECONDS, _signal_group, (process, signal.SIGKILL))
        killer.daemon = True
        killer.start()
        try:
            self._stream(node, lines, log_file)
            process.wait()
        finally:
            killer.cancel()

    def _say(self, line: str) -> None:
        self.console.say(line)


def _status_after(exc: BaseException) -> str:
    """An error is a failure; KeyboardInterrupt or a stop signal cancels."""
    return "Failed" if isinstance(exc, Exception) and not isinstance(exc, StoppedError) else "Canceled"


def _lines_of(process: subprocess.Popen[str]) -> queue.SimpleQueue[str | None]:
    """The process's output lines, read by a thread of their own; None once every writer has closed it."""
    lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()

    def read() -> None:
        assert process.stdout is not None
        try:
            for line in process.stdout:
                lines.put(line)
        except (OSError, ValueError):
            pass
        finally:
            lines.put(None)
            with contextlib.suppress(OSError):
                process.stdout.close()

    threading.Thread(target=read, name="node-output", daemon=True).start()
    return lines


def _signal_group(process: subprocess.Popen[str], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)
