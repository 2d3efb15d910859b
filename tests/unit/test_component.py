"""The packaged component: azure-ai-ml accepts it offline, it is the demo's drop-in, and every one of
its inputs reaches a flag (or AML_DATABRICKS_* variable) that `aml-databricks run` accepts."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

import aml_databricks
from aml_databricks.cli import main
from aml_databricks.component import COMPONENT_FILE, ENVIRONMENT_FILE
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


def test_the_environment_installs_this_package_pinned_and_not_databricks_cli() -> None:
    environment = yaml.safe_load(ENVIRONMENT_FILE.read_text())
    pip = next(d["pip"] for d in environment["conda_file"]["dependencies"] if isinstance(d, dict))
    assert f"aml-databricks=={aml_databricks.__version__}" in pip
    assert not any("databricks-cli" in p for p in pip)
    assert spec()["environment"] == f"azureml:{environment['name']}:{environment['version']}"


def test_export_writes_both_files(tmp_path: Path) -> None:
    written = export(tmp_path / "assets")
    assert [p.name for p in written] == ["component.yml", "environment.yml"]
    assert (tmp_path / "assets" / "component.yml").read_text() == COMPONENT_FILE.read_text()


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
    assert ml.load_environment(tmp_path / "environment.yml").conda_file["name"] == "aml-databricks"


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
