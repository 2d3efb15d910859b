"""The runner on tiny pipelines of plain python components: real subprocesses, a real MLflow file store."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from aml_databricks.cli import main
from aml_databricks.errors import StoppedError
from aml_databricks.pipeline.load import load_pipeline
from aml_databricks.pipeline.runner import DatabricksTarget, PipelineResult, PipelineRunner
from aml_databricks.pipeline.tracking import LocalTracking
from tests.unit.pipeline_files import PIPELINE_YML, tiny_pipeline, write

pytestmark = pytest.mark.subprocess  # each node is a real process

pytest.importorskip("azure.ai.ml")
pytest.importorskip("mlflow")


@pytest.fixture(autouse=True)
def _restore_mlflow_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    # LocalTracking turns the file store on process-wide; undo it after each test.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")


def failing_pipeline() -> str:
    """The tiny pipeline with its first node told to fail."""
    bound = "      n: ${{parent.inputs.n}}\n"
    return PIPELINE_YML.replace(bound, bound + "      fail: true\n")


def run(pipeline: Path, data_dir: Path, **overrides: str) -> tuple[PipelineResult, str, LocalTracking]:
    graph = load_pipeline(str(pipeline), overrides, components_dir=pipeline.parent / "components")
    tracking = LocalTracking(data_dir / "mlruns", graph.experiment_name)
    out = io.StringIO()
    result = PipelineRunner(graph, data_dir, tracking=tracking, out=out).run()
    return result, out.getvalue(), tracking


def test_nodes_run_in_order_with_outputs_in_the_datastore_layout(tmp_path: Path) -> None:
    result, log, _ = run(tiny_pipeline(tmp_path), tmp_path / "data", n="4")
    make, count = result.nodes
    assert [make.status, count.status] == ["Completed", "Completed"]
    rows = make.outputs["rows"]
    assert rows == tmp_path / "data" / "datastore" / "azureml" / str(make.run_id) / "rows"
    assert (rows / "rows.txt").read_text().split() == ["0", "1", "2", "3"]
    assert (count.outputs["count"] / "count.txt").read_text() == "4"
    assert "[count] counted 4" in log
    assert f"[make] run {make.run_id} mlflow {make.run_id}" in log  # AZUREML_RUN_ID is the MLflow run
    assert f"[make] cwd {tmp_path / 'components'}" in log  # the component's code folder
    assert "[make] label none" in log  # unset optional input: its $[[...]] part was dropped


def test_each_node_logs_into_its_own_mlflow_run_under_the_pipeline_run(tmp_path: Path) -> None:
    result, _, tracking = run(tiny_pipeline(tmp_path), tmp_path / "data", n="6")
    node_run = tracking.run(str(result.nodes[0].run_id))
    assert node_run.data.metrics == {"rows": 6.0}
    assert node_run.info.status == "FINISHED"
    assert node_run.data.tags["mlflow.parentRunId"] == result.run_id
    assert tracking.run(result.run_id).info.status == "FINISHED"
    assert (tmp_path / "data" / "mlruns").is_dir()


def test_a_second_run_gets_fresh_run_ids(tmp_path: Path) -> None:
    pipeline = tiny_pipeline(tmp_path)
    first, _, _ = run(pipeline, tmp_path / "data")
    second, _, _ = run(pipeline, tmp_path / "data")
    assert first.run_id != second.run_id
    assert {n.run_id for n in first.nodes}.isdisjoint({n.run_id for n in second.nodes})
    assert all(n.status == "Completed" for n in second.nodes)


def test_a_failing_node_stops_the_pipeline(tmp_path: Path) -> None:
    failing = failing_pipeline()
    result, log, tracking = run(tiny_pipeline(tmp_path, failing), tmp_path / "data")
    make, count = result.nodes
    assert (make.status, make.exit_code, count.status) == ("Failed", 3, "NotStarted")
    assert result.failed is make
    assert "[make] Traceback: something broke" in log  # stderr streams too
    assert make.log is not None and "something broke" in make.log.read_text()
    assert tracking.run(str(make.run_id)).info.status == "FAILED"
    assert tracking.run(result.run_id).info.status == "FAILED"


def test_databricks_nodes_are_pointed_at_the_runners_workspace(tmp_path: Path) -> None:
    # Any component named execute_databricks_notebook is run as the step: it gets host and token.
    write(tmp_path, "components/fake_step.yml", """
        type: command
        name: execute_databricks_notebook
        environment: azureml:python:1
        command: >-
          python -c "import os, sys; print('host', sys.argv[1], os.environ['DATABRICKS_HOST'],
          os.environ['DATABRICKS_TOKEN'], repr(os.environ['AML_DATABRICKS_PYPI']))" ${{inputs.databricks_host}}
        inputs:
          databricks_host: {type: string, optional: true}
    """)
    pipeline = write(tmp_path, "pipeline.yml", """
        type: pipeline
        jobs:
          adb:
            type: command
            component: ./components/fake_step.yml
            inputs: {databricks_host: "https://adb-1.2.azuredatabricks.net"}
    """)
    graph = load_pipeline(str(pipeline))
    target = DatabricksTarget("http://127.0.0.1:1", "dapi-local", environment={"AML_DATABRICKS_PYPI": ""})
    out = io.StringIO()
    result = PipelineRunner(graph, tmp_path / "data", databricks=target, out=out).run()
    assert result.nodes[0].status == "Completed", out.getvalue()
    assert "[adb] host http://127.0.0.1:1 http://127.0.0.1:1 dapi-local ''" in out.getvalue()


def test_the_command_prints_a_summary_table_and_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipeline = tiny_pipeline(tmp_path)
    code = main(["pipeline", "run", str(pipeline), "--data-dir", str(tmp_path / "data"),
                 "--components", str(tmp_path / "components"), "--set", "n=3"])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    header, make_row, count_row = lines[lines.index("") + 1 :][:3]
    assert header.split() == ["node", "status", "duration", "outputs"]
    assert make_row.split()[:2] == ["make", "Completed"] and "rows=" in make_row
    assert count_row.split()[:2] == ["count", "Completed"]


def test_the_command_exits_1_on_a_failing_node_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    failing = failing_pipeline()
    pipeline = tiny_pipeline(tmp_path, failing)
    code = main(["pipeline", "run", str(pipeline), "--data-dir", str(tmp_path / "data"),
                 "--components", str(tmp_path / "components")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("aml-databricks: error: node 'make' failed with exit code 3; not run: count (log: ")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["missing.yml"], "pipeline file not found: missing.yml"),
        (["{pipeline}"], "unknown component azureml:count_rows:2"),
        (["{pipeline}", "--components", "{components}", "--set", "n"], "--set 'n' is not INPUT=VALUE"),
        (["{pipeline}", "--components", "{components}", "--set", "x=1"], "--set x: the pipeline has no input 'x'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    arguments: list[str],
    message: str,
) -> None:
    pipeline = tiny_pipeline(tmp_path)
    monkeypatch.chdir(tmp_path)
    filled = [a.format(pipeline=pipeline, components=tmp_path / "components") for a in arguments]
    code = main(["pipeline", "run", *filled, "--data-dir", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"aml-databricks: error: {message}")
    assert len(err.strip().splitlines()) == 1


def test_sigterm_stops_the_running_node_and_exits_143(tmp_path: Path) -> None:
    write(tmp_path, "components/sleep.yml", """
        type: command
        name: sleeper
        environment: azureml:python:1
        command: echo sleeping; sleep 60 & echo "child $!"; wait
    """)
    pipeline = write(tmp_path, "pipeline.yml", """
        type: pipeline
        jobs:
          nap: {type: command, component: ./components/sleep.yml}
          after: {type: command, component: ./components/sleep.yml}
    """)
    command = [sys.executable, "-m", "aml_databricks.cli", "pipeline", "run", str(pipeline)]
    command += ["--data-dir", str(tmp_path / "d")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("[nap] child "):
            break
    child = int(lines[-1].split()[-1])
    process.send_signal(signal.SIGTERM)
    out = "".join(lines) + process.stdout.read()
    assert process.wait(timeout=60) == 143, out
    assert "[nap] canceled after" in out and "[after]" not in out
    assert "aml-databricks: error: stopped by SIGTERM" in out
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{child}").exists(), "the node's child process outlived the pipeline run"


def test_a_stop_signal_taken_by_another_thread_still_stops_a_quiet_node(tmp_path: Path) -> None:
    # Python runs a signal's handler in the main thread only. With SIGTERM blocked there, the kernel
    # hands it to another thread, and a main thread blocked reading a quiet node's output would not
    # run the handler until the node printed again (here: after its 20 s sleep, having finished).
    started, finished = tmp_path / "started", tmp_path / "finished"
    write(tmp_path, "components/quiet.yml", f"""
        type: command
        name: quiet
        environment: azureml:python:1
        command: touch {started}; sleep 20; touch {finished}
    """)
    pipeline = write(tmp_path, "pipeline.yml", """
        type: pipeline
        jobs:
          quiet: {type: command, component: ./components/quiet.yml}
    """)
    graph = load_pipeline(str(pipeline), {}, components_dir=tmp_path / "components")
    runner = PipelineRunner(graph, tmp_path / "d", tracking=LocalTracking(tmp_path / "d" / "mlruns", "x"),
                            out=io.StringIO())

    def stop(signum: int, frame: object) -> None:
        raise StoppedError("stopped by SIGTERM", 143)

    def signal_once_started() -> None:
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)  # process-directed: any thread not blocking it takes it

    previous = signal.signal(signal.SIGTERM, stop)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        threading.Thread(target=signal_once_started, daemon=True).start()
        with pytest.raises(StoppedError):
            runner.run()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        signal.signal(signal.SIGTERM, previous)
    time.sleep(0.5)
    assert started.exists() and not finished.exists(), "the node ran to its end instead of being stopped"
