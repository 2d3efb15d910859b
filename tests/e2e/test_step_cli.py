"""`aml-databricks run` as Azure ML runs it: the real CLI in a subprocess, against the local workspace."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.jobs import RunLifeCycleState, RunResultState

from aml_databricks.workspace import LocalWorkspace
from tests.fixtures_workspace import upload_notebook

pytestmark = [pytest.mark.server, pytest.mark.subprocess]

NOTEBOOKS = {
    "/Users/step/ok": (
        'import os\nout = dbutils.widgets.get("out")\nos.makedirs(out, exist_ok=True)\n'
        'open(os.path.join(out, "part-0.txt"), "w").write("data")\n'
        "# COMMAND ----------\n"
        'dbutils.notebook.exit("wrote " + dbutils.widgets.get("output_folder"))\n'
    ),
    "/Users/step/fail": "def load():\n    raise ValueError('boom in the notebook')\n\nload()\n",
    "/Users/step/sleep": (
        'import time\nopen(dbutils.widgets.get("counter"), "a").write("ran\\n")\n'
        'time.sleep(float(dbutils.widgets.get("seconds")))\ndbutils.notebook.exit("slept")\n'
    ),
    "/Users/step/count": (
        'open(dbutils.widgets.get("counter"), "a").write(dbutils.widgets.get("i") + "\\n")\n'
        'dbutils.notebook.exit(dbutils.widgets.get("i"))\n'
    ),
}
_CLEARED = ("DATABRICKS_", "AZUREML_", "MLFLOW_", "ARM_", "AML_DATABRICKS_", "DEFAULT_IDENTITY_CLIENT_ID")


def cli_env(ws: LocalWorkspace, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLEARED)}
    env.update(
        DATABRICKS_HOST=ws.host,
        DATABRICKS_TOKEN=ws.token,
        AZUREML_RUN_ID=f"e2e_{uuid.uuid4().hex[:12]}",
        AML_DATABRICKS_EXISTING_CLUSTER_ID="local",
        AML_DATABRICKS_PYPI="",  # nothing to pip install offline
        AML_DATABRICKS_CONNECT_TIMEOUT="2",
        AML_DATABRICKS_RETRY_BUDGET="60",
    )
    env.update(extra)
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aml_databricks.cli", "run", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class LiveCli:
    """The CLI in the background, its output collected line by line so a test can wait for a line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aml_databricks.cli", "run", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        with self._changed:
            while True:
                for line in self.lines:
                    if match := regex.search(line):
                        return match
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(self.lines))
                self._changed.wait(min(left, 0.1))

    def finish(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def live() -> Iterator[list[LiveCli]]:
    started: list[LiveCli] = []
    yield started
    for cli in started:
        cli.kill()


@pytest.fixture(scope="module")
def notebooks(client: WorkspaceClient) -> dict[str, str]:
    for path, source in NOTEBOOKS.items():
        upload_notebook(client, path, source)
    return {path.rsplit("/", 1)[1]: path for path in NOTEBOOKS}


def submitted_run_id(cli: LiveCli) -> int:
    return int(cli.wait_for(r"(?:submitted|reattached to) run (\d+)")[1])


def inject(ws: LocalWorkspace, run_id: int, state: str, seconds: float | None = None) -> None:
    body: dict[str, Any] = {"run_id": run_id, "life_cycle_state": state}
    if seconds is not None:
        body["seconds"] = seconds
    ws.client.api_client.do("POST", "/api/2.0/local/admin/inject", body=body)


def cancel_quietly(ws: LocalWorkspace, run_id: int) -> None:
    with contextlib.suppress(Exception):  # already over is fine
        ws.client.jobs.cancel_run(run_id)


def assert_clean(result: subprocess.CompletedProcess[str], ws: LocalWorkspace, trace_expected: bool = False) -> None:
    both = result.stdout + result.stderr
    assert "aml_databricks/" not in both  # no traceback of the step itself
    assert trace_expected or "Traceback" not in both
    assert ws.token not in both


# --- outcomes ----------------------------------------------------------------------------------


def test_success_writes_run_json_with_the_exit_value(
    workspace: LocalWorkspace, notebooks: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "output_path"
    env = cli_env(workspace)
    result = run_cli(["--notebook_path", notebooks["ok"], "--output", str(out), "--param", f"out={out}"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_clean(result, workspace)
    lines = result.stdout.splitlines()
    page = next(i for i, line in enumerate(lines) if line.startswith("run page: "))
    first_state = next(i for i, line in enumerate(lines) if re.match(r"\[\s*[\d.]+s\]", line))
    assert page < first_state  # the run page URL comes before any state line
    assert "TERMINATED/SUCCESS" in result.stdout
    record = json.loads((out / "_databricks" / "run.json").read_text())
    folder = f"azureml/{env['AZUREML_RUN_ID']}/output_path"
    assert record["exit_value"] == f"wrote {folder}"
    assert record["result_state"] == "SUCCESS" and record["exit_code"] == 0
    assert record["run_page_url"].endswith(str(record["run_id"]))
    assert record["azureml_run_id"] == env["AZUREML_RUN_ID"]


def test_json_output_format(workspace: LocalWorkspace, notebooks: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "o"
    args = ["--notebook-path", notebooks["ok"], "--output", str(out), "--param", f"out={out}"]
    result = run_cli([*args, "--output-format", "json"], cli_env(workspace))
    assert result.returncode == 0
    document = json.loads(result.stdout)
    assert document["result_state"] == "SUCCESS" and document["run_id"]
    assert "run page:" in result.stderr


def test_failure_exits_1_and_prints_error_and_trace(workspace: LocalWorkspace, notebooks: dict[str, str]) -> None:
    result = run_cli(["--notebook-path", notebooks["fail"]], cli_env(workspace))
    assert result.returncode == 1
    assert_clean(result, workspace, trace_expected=True)
    assert "error: ValueError: boom in the notebook" in result.stdout
    assert "error trace:" in result.stdout and "in load" in result.stdout
    assert "TERMINATED/FAILED" in result.stdout


def test_require_output_fails_a_run_that_wrote_nothing(
    workspace: LocalWorkspace, notebooks: dict[str, str], tmp_path: Path
) -> None:
    counter = tmp_path / "counter"
    args = ["--notebook-path", notebooks["sleep"], "--param", f"counter={counter}", "--param", "seconds=0"]
    result = run_cli([*args, "--output", str(tmp_path / "empty")], cli_env(workspace))
    assert result.returncode == 1
    assert "wrote nothing to the output" in result.stdout
    again = run_cli([*args, "--output", str(tmp_path / "empty2"), "--no-require-output"], cli_env(workspace))
    assert again.returncode == 0


def test_internal_error_exits_1(
    workspace: LocalWorkspace, notebooks: dict[str, str], tmp_path: Path, live: list[LiveCli]
) -> None:
    args = ["--notebook-path", notebooks["sleep"], "--param", f"counter={tmp_path / 'c'}", "--param", "seconds=30"]
    cli = LiveCli(args, cli_env(workspace))
    live.append(cli)
    run_id = submitted_run_id(cli)
    cli.wait_for(r"\] RUNNING")
    inject(workspace, run_id, "INTERNAL_ERROR")
    assert cli.finish() == 1
    assert "INTERNAL_ERROR" in cli.output


def test_skipped_exits_1(
    workspace: LocalWorkspace, notebooks: dict[str, str], tmp_path: Path, live: list[LiveCli]
) -> None:
    args = ["--notebook-path", notebooks["sleep"], "--param", f"counter={tmp_path / 'c'}", "--param", "seconds=30"]
    cli = LiveCli(args, cli_env(workspace))
    live.append(cli)
    run_id = submitted_run_id(cli)
    cli.wait_for(r"\] RUNNING")
    inject(workspace, run_id, "SKIPPED", seconds=60)
    try:
        assert cli.finish() == 1
        assert "] SKIPPED" in cli.output
    finally:
        cancel_quietly(workspace, run_id)


def test_unknown_lifecycle_state_keeps_waiting(
    workspace: LocalWorkspace, notebooks: dict[str, str], tmp_path: Path, live: list[LiveCli]
) -> None:
    args = ["--notebook-path", notebooks["sleep"], "--param", f"counter={tmp_path / 'c'}", "--param", "seconds=4"]
    cli = LiveCli([*args, "--poll-max-interval", "0.5"], cli_env(workspace))
    live.append(cli)
    run_id = submitted_run_id(cli)
    cli.wait_for(r"\] RUNNING")
    inject(workspace, run_id, "WARMING_UP_2027", seconds=1.5)
    cli.wait_for(r"WARMING_UP_2027.*unknown state: still waiting")
    assert cli.finish() == 0
    assert "TERMINATED/SUCCESS" in cli.output


# --- stopping and reattaching ------------------------------------------------------------------


def test_sigterm_cancels_the_run_within_2s_and_exits_143(
    workspace: LocalWorkspace, notebooks: dict[str, str], tmp_path: Path, live: list[LiveCli]
) -> None:
    args = ["--notebook-path", notebooks["sleep"], "--param", f"counter={tmp_path / 'c'}", "--param", "seconds=60"]
    cli = LiveCli(args, cli_env(workspace))
    live.append(cli)
    run_id = submitted_run_id(cli)
    cli.wait_for(r"\] RUNNING")
    signalled = time.monotonic()
    cli.proc.send_signal(signal.SIGTERM)
    while True:
        state = workspace.client.jobs.get_run(run_id).state
        assert state is not None
        if state.life_cycle_state == RunLifeCycleState.TERMINATED:
            break
        assert time.monotonic() - signalled < 2.0, "the run was not cancelled within 2 s"
        time.sleep(0.05)
    assert state.result_state == RunResultState.CANCELED
    assert time.monotonic() - signalled < 2.0
    assert cli.finish(30) == 143
    assert "stopped by SIGTERM" in cli.output


def test_sigint_exits_130(
    workspace: LocalWorkspace, notebooks: dict[str, str], tmp_path: Path, live: list[LiveCli]
) -> None:
    args = ["--notebook-path", notebooks["sleep"], "--param", f"counter={tmp_path / 'c'}", "--param", "seconds=60"]
    cli = LiveCli(args, cli_env(workspace))
    live.append(cli)
    run_id = submitted_run_id(cli)
    cli.wait_for(r"\] RUNNING")
    cli.proc.send_signal(signal.SIGINT)
    assert cli.finish(30) == 130
    state = workspace.client.jobs.get_run(run_id).state
    assert state is not None and state.result_state == RunResultState.CANCELED


def test_kill_9_then_rerun_reattaches_to_the_same_run(
    workspace: LocalWorkspace, notebooks: dict[str, str], tmp_path: Path, live: list[LiveCli]
) -> None:
    counter = tmp_path / "executions"
    args = ["--notebook-path", notebooks["sleep"], "--param", f"counter={counter}", "--param", "seconds=3"]
    env = cli_env(workspace)
    first = LiveCli(args, env)
    live.append(first)
    run_id = submitted_run_id(first)
    first.wait_for(r"\] RUNNING")
    first.proc.send_signal(signal.SIGKILL)
    first.finish()

    second = run_cli(args, env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"reattached to run {run_id}" in second.stdout
    assert counter.read_text().splitlines() == ["ran"]  # one execution


def test_rerun_after_success_reattaches_without_running_again(
    workspace: LocalWorkspace, notebooks: dict[str, str], tmp_path: Path
) -> None:
    counter = tmp_path / "executions"
    args = ["--notebook-path", notebooks["sleep"], "--param", f"counter={counter}", "--param", "seconds=0"]
    env = cli_env(workspace)
    assert run_cli(args, env).returncode == 0
    again = run_cli(args, env)
    assert again.returncode == 0 and "reattached to run" in again.stdout
    assert counter.read_text().splitlines() == ["ran"]


def test_timeout_cancels_and_exits_1_with_timedout(
    workspace: LocalWorkspace, notebooks: dict[str, str], tmp_path: Path
) -> None:
    args = ["--notebook-path", notebooks["sleep"], "--param", f"counter={tmp_path / 'c'}", "--param", "seconds=60"]
    result = run_cli([*args, "--timeout", "2"], cli_env(workspace))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "TIMEDOUT" in result.stdout


def test_results_become_tags_of_the_steps_mlflow_run(
    workspace: LocalWorkspace, notebooks: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a file store keeps the test offline and light
    uri = (tmp_path / "mlruns").as_uri()
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("step")
    mlflow_run = client.create_run(experiment).info.run_id
    out = tmp_path / "out"
    env = cli_env(
        workspace,
        MLFLOW_TRACKING_URI=uri,
        MLFLOW_RUN_ID=mlflow_run,
        MLFLOW_EXPERIMENT_ID=experiment,
        MLFLOW_TRACKING_TOKEN="mlflow-token-secret-xyz",
        MLFLOW_ALLOW_FILE_STORE="true",
    )
    result = run_cli(["--notebook-path", notebooks["ok"], "--output", str(out), "--param", f"out={out}"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mlflow-token-secret-xyz" not in result.stdout + result.stderr
    tags = client.get_run(mlflow_run).data.tags
    record = json.loads((out / "_databricks" / "run.json").read_text())
    assert tags["databricks.run_id"] == str(record["run_id"])
    assert tags["databricks.result_state"] == "SUCCESS"
    assert tags["databricks.exit_value"] == record["exit_value"]


# --- transient faults --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def faulty_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalWorkspace]:
    with LocalWorkspace(
        tmp_path_factory.mktemp("faulty"),
        spark=False,
        max_concurrent_tasks=8,
        faults="429=0.15,503=0.1,reset=0.05",
        faults_seed=11,
    ) as ws:
        yield ws


def test_twenty_of_twenty_under_30_percent_faults(faulty_workspace: LocalWorkspace, tmp_path: Path) -> None:
    ws = faulty_workspace
    # uploading goes through the faults too: the SDK retries it
    upload_notebook(ws.client, "/Users/step/count", NOTEBOOKS["/Users/step/count"])
    counter = tmp_path / "executions"
    envs = [cli_env(ws) for _ in range(20)]

    def one(i: int) -> subprocess.CompletedProcess[str]:
        args = ["--notebook-path", "/Users/step/count", "--param", f"counter={counter}", "--param", f"i={i}"]
        return run_cli(args, envs[i], timeout=300)

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(one, range(20)))
    for result in results:
        assert result.returncode == 0, result.stdout + result.stderr
        assert_clean(result, ws)
    assert sorted(counter.read_text().split(), key=int) == [str(i) for i in range(20)]
    run_ids = {int(re.search(r"submitted run (\d+)", r.stdout)[1]) for r in results}  # type: ignore[index]
    assert len(run_ids) == 20
    names = {env["AZUREML_RUN_ID"] for env in envs}
    ws.client.api_client.do("POST", "/api/2.0/local/admin/faults", body={"faults": "none"})
    submitted = [r for r in ws.client.jobs.list_runs(run_type=None) if r.run_name in names]
    assert len(submitted) == 20  # no duplicates


# --- bad input: one line, the documented exit code, no traceback, no secret ---------------------


def _bad_cases(
    ws: LocalWorkspace, notebooks: dict[str, str], tmp_path: Path
) -> list[tuple[list[str], dict[str, str], int, str]]:
    nb = ["--notebook-path", notebooks["ok"]]
    return [
        ([*nb, "--databricks-host", ""], {}, 2, "--databricks-host is empty"),
        ([*nb, "--databricks-host", "not a url at all"], {}, 2, "invalid host name"),
        ([*nb, "--databricks-host", "http://example.com"], {}, 2, "http:// for a non-loopback host"),
        ([*nb, "--databricks-host", "https://x.net/path"], {}, 2, "without a path"),
        ([*nb], {"DATABRICKS_HOST": ""}, 2, "--databricks-host is required"),
        (["--notebook-path", "relative/nb"], {}, 2, "must be an absolute workspace path"),
        ([*nb, "--num-workers", "-2"], {"AML_DATABRICKS_EXISTING_CLUSTER_ID": ""}, 2, "--num-workers must be >= 0"),
        ([*nb, "--spark-version", "14.3.x"], {}, 2, "--existing-cluster-id excludes the new-cluster flags"),
        (
            [*nb, "--num-workers", "2", "--node-type-id", "D3"],
            {"AML_DATABRICKS_EXISTING_CLUSTER_ID": ""},
            2,
            "needs --spark-version",
        ),
        ([*nb, "--task-type", "shell"], {}, 2, "invalid choice"),
        ([*nb], {"AML_DATABRICKS_TASK_TYPE": "shell"}, 2, "AML_DATABRICKS_TASK_TYPE must be one of"),
        ([*nb, "--param", "novalue"], {}, 2, "--param expected KEY=VALUE"),
        ([*nb, "--autoscale", "3"], {"AML_DATABRICKS_EXISTING_CLUSTER_ID": ""}, 2, "--autoscale expected MIN:MAX"),
        ([*nb, "--timeout", "soon"], {}, 2, "--timeout is not a number"),
        ([*nb, "--keyvault-url", "https://kv.vault.azure.net/"], {}, 2, "go together"),
        ([*nb, "--serverless"], {}, 2, "--existing-cluster-id and --serverless exclude each other"),
        (
            ["--task-type", "sql", "--warehouse-id", "w"],
            {"AML_DATABRICKS_EXISTING_CLUSTER_ID": ""},
            2,
            "exactly one of --sql-file and --query-id",
        ),
        (["--task-type", "python"], {}, 2, "needs --python-file"),
        ([*nb, "--datastore", "blob"], {}, 2, "--datastore expected"),
        ([*nb, "--mlflow-token-secret", "x"], {}, 2, "--mlflow-token-secret expected SCOPE/KEY"),
        ([*nb, "--poll-max-interval", "-1"], {}, 2, "--poll-max-interval must be > 0"),
        (["--notebook-path", "/Users/step/does-not-exist"], {}, 2, "notebook /Users/step/does-not-exist not found"),
        ([*nb], {"DATABRICKS_HOST": "http://127.0.0.1:9"}, 2, "cannot reach http://127.0.0.1:9"),
        (
            [*nb],
            {"DATABRICKS_TOKEN": "dapi-wrong-token-0000"},
            3,
            "(403) when trying to check the notebook: Invalid access token",
        ),
        ([*nb], {"DATABRICKS_TOKEN": ""}, 3, "no Databricks credential found"),
        ([*nb, "--auth", "service-principal"], {}, 3, "needs ARM_TENANT_ID"),
        ([*nb, "--output-format", "xml"], {}, 2, "invalid choice"),
        # offline, the vault cannot be reached: the real DefaultAzureCredential + SecretClient path
        (
            [*nb, "--keyvault-url", "https://kv.vault.azure.net/", "--keyvault-secret-name", "ADBPAT"],
            {"DATABRICKS_TOKEN": ""},
            3,
            "could not read secret 'ADBPAT' from Key Vault",
        ),
    ]


def test_bad_input_table(workspace: LocalWorkspace, notebooks: dict[str, str], tmp_path: Path) -> None:
    cases = _bad_cases(workspace, notebooks, tmp_path)
    assert len(cases) >= 25

    def one(case: tuple[list[str], dict[str, str], int, str]) -> str | None:
        args, extra, code, message = case
        env = {k: v for k, v in cli_env(workspace, **extra).items() if v != ""}  # "" in a case = unset
        result = run_cli(args, env, timeout=60)
        problems = []
        if result.returncode != code:
            problems.append(f"exit {result.returncode} != {code}")
        error_lines = [line for line in result.stderr.splitlines() if "error:" in line]
        if len(error_lines) != 1 or message not in error_lines[0]:
            problems.append(f"stderr {result.stderr!r} lacks one line with {message!r}")
        if "Traceback" in result.stdout + result.stderr:
            problems.append("traceback")
        if workspace.token in result.stdout + result.stderr or "dapi-wrong-token-0000" in result.stderr:
            problems.append("token printed")
        return f"{args} {extra}: {'; '.join(problems)}" if problems else None

    with ThreadPoolExecutor(4) as pool:
        failures = [f for f in pool.map(one, cases) if f]
    assert not failures, "\n".join(failures)


def test_dry_run_prints_the_payload_with_the_mlflow_token_masked(workspace: LocalWorkspace) -> None:
    env = cli_env(workspace, MLFLOW_TRACKING_TOKEN="mlflow-secret-abcdef", MLFLOW_TRACKING_URI="azureml://x")
    args = [
        "--notebook_path",
        "/Users/me/nb",
        "--num-workers",
        "2",
        "--node-type-id",
        "Standard_D3_v2",
        "--spark-version",
        "7.3.x-scala2.12",
        "--pypi",
        "azureml-mlflow",
        "--dry-run",
    ]
    env["AML_DATABRICKS_EXISTING_CLUSTER_ID"] = ""
    env = {k: v for k, v in env.items() if v != ""}
    result = run_cli(args, env)
    assert result.returncode == 0, result.stderr
    assert "mlflow-secret-abcdef" not in result.stdout + result.stderr
    body = json.loads(result.stdout)
    task = body["tasks"][0]
    assert task["new_cluster"]["spark_env_vars"]["MLFLOW_TRACKING_TOKEN"] == "***"
    assert task["new_cluster"]["spark_env_vars"]["MLFLOW_TRACKING_URI"] == "azureml://x"
    assert task["libraries"] == [{"pypi": {"package": "azureml-mlflow"}}]
    assert task["notebook_task"]["base_parameters"]["output_folder"] == f"azureml/{env['AZUREML_RUN_ID']}/output_path"
