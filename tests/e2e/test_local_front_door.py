"""The README's local-workspace section, as a user types it, offline: serve in one terminal, then
import a notebook and run it with the step from another, with the step's default `--pypi azureml-mlflow`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "aml_databricks.cli"]
_CLEARED = ("DATABRICKS_", "AZUREML_", "MLFLOW_", "ARM_", "AML_DATABRICKS_", "DEFAULT_IDENTITY_CLIENT_ID")


def offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLEARED)}
    env["PIP_NO_INDEX"] = "1"  # no package index: what a laptop on a plane has
    return env


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """`aml-databricks workspace serve` in a folder of its own ("another terminal"): (folder, host)."""
    process = subprocess.Popen([*CLI, "workspace", "serve", "--no-spark", "--port", "0"], cwd=tmp_path,
                               env=offline_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               start_new_session=True)
    try:
        assert process.stdout is not None
        host = next(line.split(" at ")[1].strip() for line in process.stdout
                    if line.startswith("Local Databricks workspace at "))
        yield tmp_path, host
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_import_a_notebook_then_run_it_with_the_step_defaults_offline(served: tuple[Path, str]) -> None:
    folder, host = served
    (folder / "my_notebook.py").write_text('dbutils.notebook.exit("hello from " + dbutils.widgets.get("who"))\n')
    imported = subprocess.run([*CLI, "workspace", "import", "my_notebook.py", "/Shared/my_notebook"], cwd=folder,
                              env=offline_env(), capture_output=True, text=True, timeout=120)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout == "/Shared/my_notebook <- my_notebook.py (python notebook)\n"
    assert "using the local workspace already running" in imported.stderr  # through serve, not beside it

    env = offline_env()
    env.update(DATABRICKS_HOST=host, DATABRICKS_TOKEN=(folder / ".aml-databricks" / "token").read_text().strip())
    run = subprocess.run([*CLI, "run", "--notebook-path", "/Shared/my_notebook", "--existing-cluster-id", "local",
                          "--param", "who=the README", "--output-format", "json"], cwd=folder, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "hello from the README" in run.stdout
    assert "could not install" not in run.stdout + run.stderr


def test_a_missing_library_still_fails_the_run_offline(served: tuple[Path, str]) -> None:
    folder, host = served
    (folder / "nb.py").write_text("print(1)\n")
    subprocess.run([*CLI, "workspace", "import", "nb.py", "/Shared/nb"], cwd=folder, env=offline_env(),
                   check=True, capture_output=True, timeout=120)
    env = offline_env()
    env.update(DATABRICKS_HOST=host, DATABRICKS_TOKEN=(folder / ".aml-databricks" / "token").read_text().strip())
    run = subprocess.run([*CLI, "run", "--notebook-path", "/Shared/nb", "--existing-cluster-id", "local",
                          "--pypi", "aml-databricks-no-such-package-xyz"], cwd=folder, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "aml-databricks-no-such-package-xyz" in run.stdout + run.stderr


def test_import_a_folder_like_import_dir(tmp_path: Path) -> None:
    source = tmp_path / "project"
    (source / "sub").mkdir(parents=True)
    (source / "main.py").write_text("# Databricks notebook source\nprint(1)\n")
    (source / "helpers.py").write_text("VALUE = 1\n")  # a module: stays a file, importable
    (source / "sub" / "report.sql").write_text("-- Databricks notebook source\nSELECT 1\n")
    (source / "sub" / "data.csv").write_text("a\n1\n")
    data_dir = tmp_path / "data"
    imported = subprocess.run([*CLI, "workspace", "import", str(source), "/Shared/project", "--data-dir",
                               str(data_dir)], env=offline_env(), capture_output=True, text=True, timeout=120)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.splitlines() == [
        f"/Shared/project/helpers.py <- {source / 'helpers.py'} (file)",
        f"/Shared/project/main <- {source / 'main.py'} (python notebook)",
        f"/Shared/project/sub/data.csv <- {source / 'sub' / 'data.csv'} (file)",
        f"/Shared/project/sub/report <- {source / 'sub' / 'report.sql'} (sql notebook)",
    ]
    from aml_databricks.workspace import LocalWorkspace

    with LocalWorkspace(data_dir, spark=False) as ws:  # what was imported is kept in the data dir
        kinds = {o.path: o.object_type.value for o in ws.client.workspace.list("/Shared/project", recursive=True)
                 if o.object_type is not None and o.path is not None}
    assert kinds == {"/Shared/project/helpers.py": "FILE", "/Shared/project/main": "NOTEBOOK",
                     "/Shared/project/sub/data.csv": "FILE",
                     "/Shared/project/sub/report": "NOTEBOOK"}
