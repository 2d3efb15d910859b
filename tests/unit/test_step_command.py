"""`aml-databricks run` at the command line, in process: usage errors and --dry-run's output."""

from __future__ import annotations

import json
import sys

import pytest

from aml_databricks.cli import main

DRY = ["run", "--notebook-path", "/Users/me/nb", "--existing-cluster-id", "c", "--pypi", "", "--dry-run"]


@pytest.mark.parametrize(
    ("argv", "prog"),
    [
        (["run", "--bogus"], "aml-databricks run"),
        (["workspace", "serve", "--bogus"], "aml-databricks workspace serve"),
        (["pipeline", "run", "p.yml", "--bogus"], "aml-databricks pipeline run"),
    ],
)
def test_a_bad_flag_names_the_subcommand(argv: list[str], prog: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert f"{prog}: error: unrecognized arguments: --bogus" in err.splitlines()
    assert err.splitlines()[0].startswith(f"usage: {prog} ")


@pytest.mark.parametrize("output_format", ["text", "json"])
def test_dry_run_stdout_is_pure_json(
    output_format: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AZUREML_RUN_ID", "DATABRICKS_HOST", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "azureml://x")  # one more notice: MLflow on an existing cluster
    assert main([*DRY, "--output-format", output_format]) == 0
    out, err = capsys.readouterr()
    payload = json.loads(out)  # nothing but the payload
    assert payload["tasks"][0]["notebook_task"]["notebook_path"] == "/Users/me/nb"
    assert "AZUREML_RUN_ID is not set" in err and "MLflow variables are passed to new clusters only" in err


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--timeout", "99999999999999999999", "--timeout must be <= 2147483647"),
        ("--timeout", "2147483648", "--timeout must be <= 2147483647"),
        ("--connect-timeout", "inf", "--connect-timeout must be a number of seconds <= 600"),
        ("--connect-timeout", "601", "--connect-timeout must be a number of seconds <= 600"),
        ("--retry-budget", "1e400", "--retry-budget must be a number of seconds <= 3600"),
        ("--retry-budget", "3601", "--retry-budget must be a number of seconds <= 3600"),
        ("--poll-max-interval", "inf", "--poll-max-interval must be a number of seconds <= 3600"),
        ("--cancel-grace", "infinity", "--cancel-grace must be a number of seconds <= 3600"),
        ("--connect-timeout", "nan", "--connect-timeout must be > 0"),
        ("--run-name", "bad\udcffname", "--run-name is not valid UTF-8 (invalid byte at character 4)"),
        ("--param", "k=\ud800", "--param is not valid UTF-8"),
    ],
)
def test_out_of_range_or_undecodable_inputs_exit_2_with_one_line(
    flag: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*DRY, flag, value]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("aml-databricks: error: ") and message in err
    err.encode("utf-8")  # printable: the bad value is not echoed


def test_the_maxima_themselves_are_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    bounds = ["--timeout", "2147483647", "--connect-timeout", "600", "--retry-budget", "3600"]
    assert main([*DRY, *bounds, "--cancel-grace", "3600", "--poll-max-interval", "3600"]) == 0
    assert json.loads(capsys.readouterr().out)["timeout_seconds"] == 2147483647


def test_invalid_utf8_in_an_environment_variable_names_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AML_DATABRICKS_RUN_NAME", "x\udcfe")  # how Python decodes a bad byte in the environment
    assert main(DRY) == 2
    assert "AML_DATABRICKS_RUN_NAME is not valid UTF-8" in capsys.readouterr().err
    assert sys.getfilesystemencodeerrors() == "surrogateescape"  # the decoding this relies on


def test_the_step_imports_only_the_sdk_modules_it_uses_and_the_sdk_still_works_whole() -> None:
    """`defer_package_init` skips databricks-sdk's eager `__init__` (every service module); a later
    `from databricks.sdk import WorkspaceClient` in the same process still gets the real thing."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from aml_databricks.step.sdk import defer_package_init\n"
        "defer_package_init()\n"
        "import aml_databricks.step.runner\n"
        "from aml_databricks.step.sdk import StepClient\n"
        "from databricks.sdk.config import Config\n"
        "c = StepClient(Config(host='http://127.0.0.1:9', token='t', auth_type='pat', retry_timeout_seconds=1))\n"
        "c.jobs, c.dbfs\n"
        "print('catalog' , 'databricks.sdk.service.catalog' in sys.modules)\n"
        "from databricks.sdk import WorkspaceClient\n"
        "print('client', WorkspaceClient.__module__)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["catalog False", "client databricks.sdk"]
