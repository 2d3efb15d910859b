"""The example pipeline end to end, offline: `aml-databricks pipeline run` as a subprocess, from an
empty data dir, with the embedded local workspace, Spark, the step and the train script."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.spark, pytest.mark.server, pytest.mark.subprocess]
pytest.importorskip("azure.ai.ml")
pytest.importorskip("mlflow")

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "examples" / "pipeline" / "pipeline.yml"
TIMEOUT_S = 600


def pipeline_run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "aml-databricks"), "pipeline", "run", *args]
    process = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"pipeline run timed out\n{out}\n{err}")
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def output_folders(data_dir: Path, name: str) -> set[Path]:
    return set((data_dir / "datastore" / "azureml").glob(f"*/{name}"))


def parquet_rows(folder: Path) -> int:
    import pyarrow.parquet as pq

    parts = [p for p in folder.glob("*.parquet") if not p.name.startswith(("_", "."))]
    return sum(pq.read_metadata(p).num_rows for p in parts)


def mlflow_run(data_dir: Path, run_id: str) -> Any:
    from mlflow.tracking import MlflowClient

    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    return MlflowClient(tracking_uri=(data_dir / "mlruns").as_uri()).get_run(run_id)


def assert_no_process_left(data_dir: Path) -> None:
    from aml_databricks.compute.host.pool import jvm_pids

    assert jvm_pids(data_dir) == [], "a Spark server outlived the pipeline run"


def check_successful_run(result: subprocess.CompletedProcess[str], data_dir: Path, before: set[Path]) -> str:
    """Checks one run's data hand-over and tracking; its Databricks node's run id."""
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[train] accuracy: " in result.stdout

    (exported,) = output_folders(data_dir, "output_path") - before
    node_run_id = exported.parent.name
    record = json.loads((exported / "_databricks" / "run.json").read_text())
    assert record["result_state"] == "SUCCESS"
    summary = json.loads(record["exit_value"])  # the notebook's dbutils.notebook.exit value
    assert summary["table"] == "samples.iris"
    assert summary["location"] == f"/mnt/azuremlblobstore/azureml/{node_run_id}/output_path"

    # The train node read exactly the rows the notebook wrote.
    assert parquet_rows(exported) == summary["rows"] == 150
    assert f"[train] $ python train.py --data {exported} " in result.stdout
    (model,) = [folder for folder in output_folders(data_dir, "model") if f"--model {folder} " in result.stdout]
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["rows"] == summary["rows"]
    assert (model / "model.pkl").is_file()

    # The notebook logged into the databricks node's own MLflow run (the MLFLOW_* pass-through).
    databricks_run = mlflow_run(data_dir, node_run_id)
    assert databricks_run.data.metrics["exported_rows"] == summary["rows"]
    assert databricks_run.data.tags["databricks.result_state"] == "SUCCESS"
    assert databricks_run.info.status == "FINISHED"
    train_run = mlflow_run(data_dir, model.parent.name)
    assert train_run.data.metrics["accuracy"] == pytest.approx(metrics["accuracy"])
    return node_run_id


def test_the_example_pipeline_runs_offline_twice_with_fresh_run_ids(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"  # does not exist yet
    first = pipeline_run(str(PIPELINE), "--data-dir", str(data_dir), cwd=tmp_path)
    first_id = check_successful_run(first, data_dir, before=set())
    assert_no_process_left(data_dir)

    before = output_folders(data_dir, "output_path")
    second = pipeline_run(str(PIPELINE), "--data-dir", str(data_dir), cwd=tmp_path)
    second_id = check_successful_run(second, data_dir, before=before)
    assert second_id != first_id
    assert "reattached" not in second.stdout  # a fresh Azure ML run id means a fresh Databricks run
    assert_no_process_left(data_dir)


def test_a_failing_notebook_stops_the_pipeline(tmp_path: Path) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "broken.py").write_text(
        "# Databricks notebook source\n"
        "df = spark.table('samples.iris')\n"
        "# COMMAND ----------\n"
        "raise ValueError('broken on purpose')\n"
    )
    data_dir = tmp_path / "data"
    result = pipeline_run(
        str(PIPELINE),
        "--data-dir",
        str(data_dir),
        "--notebooks",
        str(notebooks),
        "--set",
        "notebook_path=/Shared/aml-databricks/broken",
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ValueError: broken on purpose" in result.stdout  # the notebook's trace, through the step
    assert result.stderr.startswith("aml-databricks: error: node 'databricks' failed with exit code 1; not run: train")
    assert "[train]" not in result.stdout
    assert output_folders(data_dir, "model") == set()
    assert_no_process_left(data_dir)


def test_sigterm_cancels_the_databricks_run_and_exits_143(tmp_path: Path) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "slow.py").write_text("# Databricks notebook source\nimport time\ntime.sleep(300)\n")
    data_dir = tmp_path / "data"
    command = [str(Path(sys.executable).parent / "aml-databricks"), "pipeline", "run", str(PIPELINE)]
    command += ["--data-dir", str(data_dir), "--notebooks", str(notebooks)]
    command += ["--set", "notebook_path=/Shared/aml-databricks/slow"]
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        assert process.stdout is not None
        seen = []
        for line in process.stdout:
            seen.append(line)
            if line.startswith("[databricks] [") and line.rstrip().endswith("RUNNING"):
                break
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    out = "".join(seen) + out
    assert process.returncode == 143, out
    assert "[train]" not in out
    assert "aml-databricks: error: stopped by SIGTERM" in out
    assert "[databricks] stopping: SIGTERM to the node's processes" in out
    assert_no_process_left(data_dir)

    from aml_databricks.workspace import LocalWorkspace

    with LocalWorkspace(data_dir, spark=False) as workspace:  # the run's state survived in the data dir
        (run,) = list(workspace.client.jobs.list_runs())
        assert run.state is not None and run.state.result_state is not None, out
        assert run.state is not None and run.state.result_state is not None
        assert run.state.result_state.value == "CANCELED"
