"""The packaged component: azure-ai-ml accepts it offline, it is the demo's drop-in, and every one of
its inputs reaches a flag (or AML_DATABRICKS_* variable) that `aml-databricks run` accepts."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

import aml_databricks
from aml_databricks.cli import main
from aml_databricks.component import COMPONENT_FILE, DOCKERFILE, ENVIRONMENT_FILE
from aml_databricks.component.command import export
from aml_databricks.pipeline.render import render_command
from aml_databricks.step import command as step_command
from aml_databricks.step.settings import ENV_PREFIX, resolve

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DEMO_INPUTS = {
    "databricks_host": "string",
    "notebook_path": "string",
    "kv_url": "string",
    "kv_secret_name": "string",
    "num_workers": "integer",
    "node_type_id": "string",
    "spark_version": "string",
}
# A value of each input type that the step's parser and settings accept.
SAMPLE = {"string": "x", "integer": 2, "number": 1.5, "boolean": True}
SAMPLE_BY_NAME = {
    "databricks_host": "https://adb-1.2.azuredatabricks.net",
    "notebook_path": "/Users/me/nb",
    "autoscale": "1:4",
    "notebook_params": "a=1,b=2",
    "spark_conf": "spark.x=1",
    "spark_env": "K=V",
    "datastores": "workspaceblobstore=account/container",
    "mlflow_token_secret": "scope/key",
    "source": "GIT",
    "auth": "managed-identity",
}


def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPONENT_FILE.read_text())
    return loaded


def step_parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser()
    step_command.add_parser(root.add_subparsers(dest="command"))
    return root


def step_dests(parser: argparse.ArgumentParser) -> dict[str, str]:
    """option string -> dest, for every option of `aml-databricks run`."""
    run = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["run"]
    return {option: action.dest for action in run._actions for option in action.option_strings}


def test_it_is_the_demos_component_name_inputs_and_output() -> None:
    component = spec()
    assert component["name"] == "execute_databricks_notebook"
    assert component["is_deterministic"] is False  # never reuse an earlier result of a notebook run
    for name, kind in DEMO_INPUTS.items():
        assert component["inputs"][name]["type"] == kind
    assert component["outputs"] == {"output_path": component["outputs"]["output_path"]}
    assert component["outputs"]["output_path"]["type"] == "uri_folder"


def test_optional_inputs_sit_inside_optional_parts_and_required_ones_outside() -> None:
    component = spec()
    optional_parts = " ".join(re.findall(r"\$\[\[(.*?)\]\]", component["command"]))
    for name, declared in component["inputs"].items():
        placeholder = f"${{{{inputs.{name}}}}}"
        assert placeholder in component["command"], f"input {name} is not used by the command"
        assert (placeholder in optional_parts) == bool(declared.get("optional")), name


def test_every_input_reaches_a_flag_or_variable_of_the_step() -> None:
    dests = step_dests(step_parser())
    command = spec()["command"]
    for name in spec()["inputs"]:
        placeholder = re.escape(f"${{{{inputs.{name}}}}}")
        flag = re.search(r"(--[\w-]+) " + placeholder, command)
        variable = re.search(r"\b" + ENV_PREFIX + r"(\w+)=" + placeholder, command)
        assert flag or variable, f"input {name}: neither --flag nor {ENV_PREFIX}NAME= before it"
        if flag:
            assert flag.group(1) in dests, f"input {name}: the step has no flag {flag.group(1)}"
        if variable:
            assert variable.group(1).lower() in dests.values(), f"input {name}: the step has no setting for it"
    assert "--output ${{outputs.output_path}}" in command


def render_all(values: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The rendered command split into its leading variable assignments and the argv after `aml-databricks`."""
    words = shlex.split(render_command(spec()["command"], values, {"output_path": "/outputs/out"}))
    env = {}
    while "=" in words[0] and not words[0].startswith("-"):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    assert words[:2] == ["aml-databricks", "run"]
    return env, words[1:]


def test_the_rendered_command_with_every_input_set_parses() -> None:
    values = {
        name: SAMPLE_BY_NAME.get(name, SAMPLE[declared["type"]]) for name, declared in spec()["inputs"].items()
    }
    env, argv = render_all(values)
    args = step_parser().parse_args(argv)
    assert args.keyvault_url == "x" and args.num_workers == "2" and args.output == "/outputs/out"
    assert env[ENV_PREFIX + "PARAM"] == "a=1,b=2" and env[ENV_PREFIX + "SERVERLESS"] == "True"


def test_the_demos_inputs_become_the_demos_settings() -> None:
    demo = {
        "databricks_host": "https://adb-1.2.azuredatabricks.net",
        "notebook_path": "/Users/me/export_table",
        "kv_url": "https://vault.vault.azure.net/",
        "kv_secret_name": "ADBPAT",
        "num_workers": 2,
        "node_type_id": "Standard_D3_v2",
        "spark_version": "7.3.x-scala2.12",
        "notebook_params": "table=samples.iris,limit=10",
        "pypi": "",
    }
    env, argv = render_all(demo)
    values = {k: v for k, v in vars(step_parser().parse_args(argv)).items() if k not in ("func", "command")}
    settings = resolve(values, env)
    assert settings.host == "https://adb-1.2.azuredatabricks.net"
    assert settings.notebook_path == "/Users/me/export_table"
    assert (settings.keyvault_url, settings.keyvault_secret_name) == ("https://vault.vault.azure.net/", "ADBPAT")
    assert settings.num_workers == 2
    assert (settings.node_type_id, settings.spark_version) == ("Standard_D3_v2", "7.3.x-scala2.12")
    assert dict(settings.params) == {"table": "samples.iris", "limit": "10"}
    assert settings.pypi == ()
    assert settings.output == "/outputs/out"


def test_the_environment_is_built_from_the_exported_wheel_not_an_index_and_not_databricks_cli() -> None:
    environment = yaml.safe_load(ENVIRONMENT_FILE.read_text())
    assert environment["build"] == {"path": "context", "dockerfile_path": "Dockerfile"}
    assert environment["version"] == aml_databricks.__version__
    assert spec()["environment"] == f"azureml:{environment['name']}:{environment['version']}"
    dockerfile = DOCKERFILE.read_text()
    assert "COPY aml_databricks-*.whl" in dockerfile
    assert "pip install --no-cache-dir /opt/wheels/aml_databricks-" in dockerfile
    assert "databricks-cli" not in dockerfile


def test_export_writes_the_component_and_a_build_context_with_a_wheel_of_this_package(tmp_path: Path) -> None:
    assets = tmp_path / "assets"
    (assets / "context").mkdir(parents=True)
    (assets / "context" / "aml_databricks-0.0.1-py3-none-any.whl").write_bytes(b"an earlier export")
    written = export(assets)
    wheel = assets / "context" / f"aml_databricks-{aml_databricks.__version__}-py3-none-any.whl"
    assert written == [assets / "component.yml", assets / "environment.yml", assets / "context" / "Dockerfile", wheel]
    assert (assets / "component.yml").read_text() == COMPONENT_FILE.read_text()
    assert sorted(p.name for p in (assets / "context").iterdir()) == ["Dockerfile", wheel.name]
    names = zipfile.ZipFile(wheel).namelist()
    assert "aml_databricks/component/component.yml" in names and "aml_databricks/py.typed" in names
    assert not any("__pycache__" in name for name in names)
    assert wheel.read_bytes() == export(tmp_path / "again")[-1].read_bytes()  # the same code, the same wheel


def test_the_exported_wheel_installs_alone_and_its_command_runs(tmp_path: Path) -> None:
    wheel = export(tmp_path / "assets")[-1]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {**os.environ, "PIP_NO_INDEX": "1"}
    install = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)]
    subprocess.run(install, check=True, env=env, capture_output=True)
    shown = subprocess.run(
        [str(venv / "bin" / "aml-databricks"), "run", "--help"], capture_output=True, text=True, env=env
    )
    assert shown.returncode == 0, shown.stderr
    assert "--databricks-host" in shown.stdout
    files = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import aml_databricks.component as c; print(c.DOCKERFILE.is_file())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert files.stdout == "True\n"


# --- azure-ai-ml, offline ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ml() -> Any:
    return pytest.importorskip("azure.ai.ml")


def test_azure_ai_ml_validates_the_exported_component(
    ml: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["component", "export", str(tmp_path)]) == 0
    assert main(["component", "validate", str(tmp_path / "component.yml")]) == 0
    assert "valid command component execute_databricks_notebook version 1" in capsys.readouterr().out
    environment = ml.load_environment(tmp_path / "environment.yml")
    assert (Path(environment.base_path) / environment.build.path).resolve() == (tmp_path / "context").resolve()
    assert environment.build.dockerfile_path == "Dockerfile"


def test_validate_checks_the_exported_environments_build_context(
    ml: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["component", "export", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["component", "validate", str(tmp_path / "environment.yml")]) == 0
    assert capsys.readouterr().out == (
        f"{tmp_path / 'environment.yml'}: valid environment aml-databricks version "
        f"{aml_databricks.__version__} (built from a Docker build context)\n"
    )
    for wheel in (tmp_path / "context").glob("*.whl"):
        wheel.unlink()
    assert main(["component", "validate", str(tmp_path / "environment.yml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no aml-databricks wheel" in err


def test_validate_reports_an_undeclared_placeholder_on_one_line(
    ml: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "component.yml"
    broken.write_text(COMPONENT_FILE.read_text().replace("${{inputs.kv_url}}", "${{inputs.kv_uri}}"))
    assert main(["component", "validate", str(broken)]) == 2
    err = capsys.readouterr().err
    expected = f"{broken}: invalid component: command: Invalid data binding expression: inputs.kv_uri"
    assert err == f"aml-databricks: error: {expected}\n"


def test_the_example_yaml_pipeline_validates_offline(ml: Any) -> None:
    job = ml.load_job(EXAMPLES / "pipeline" / "pipeline.yml")
    assert job._validate().passed


def test_the_dsl_pipeline_builds_and_validates_offline(ml: Any) -> None:
    from aml_databricks.pipeline.load import PipelineSource, _load_dsl

    job = _load_dsl(PipelineSource.parse(str(EXAMPLES / "pipeline" / "pipeline.py")))
    assert job._validate().passed
    as_dict = job._to_dict()
    assert as_dict["settings"]["default_compute"] == "azureml:cpu-cluster"
    assert as_dict["jobs"]["adb"]["outputs"]["output_path"]["mode"] == "upload"
    assert as_dict["jobs"]["train"]["inputs"]["data"]["path"] == "${{parent.jobs.adb.outputs.output_path}}"


def test_the_train_component_validates_offline(ml: Any) -> None:
    component = ml.load_component(EXAMPLES / "train" / "train.yml")
    assert component._validate().passed
