"""runs/submit payloads: Jobs API field names for every task type; the demo's flags give the demo's fields."""

from __future__ import annotations

import json
from typing import Any

import pytest
from databricks.sdk.service.jobs import GitSource, JobEnvironment, SubmitTask

from aml_databricks.step.azureml import AzureMLContext, output_uri
from aml_databricks.step.request import (
    build_submit_request,
    idempotency_token,
    masked,
    submission_id_of,
)
from aml_databricks.step.settings import resolve

HOST = {"databricks_host": "https://adb-1.2.azuredatabricks.net"}
DEMO = {
    **HOST,
    "notebook_path": "/Users/me/nb",
    "keyvault_url": "https://kv.vault.azure.net/",
    "keyvault_secret_name": "ADBPAT",
    "num_workers": "2",
    "node_type_id": "Standard_D3_v2",
    "spark_version": "7.3.x-scala2.12",
}
MLFLOW = {
    "MLFLOW_TRACKING_URI": "azureml://eastus.api.azureml.ms/mlflow/v1.0/subscriptions/s",
    "MLFLOW_EXPERIMENT_ID": "e1",
    "MLFLOW_RUN_ID": "r1",
    "MLFLOW_TRACKING_TOKEN": "eyJ-very-secret-token",
    "MLFLOW_EXPERIMENT_NAME": "exp",
}


def payload(flags: dict[str, Any], mlflow: dict[str, str] | None = None, output: str | None = None) -> dict[str, Any]:
    settings = resolve({**flags, "output": output}, {})
    ctx = AzureMLContext(run_id="job_42", run_id_generated=False, mlflow=mlflow or {}, output=output)
    body = build_submit_request(settings, ctx, submission_id="s1").as_dict()
    json.dumps(body)  # must be JSON as is
    assert_as_the_sdk_writes_it(body)
    return body


def assert_as_the_sdk_writes_it(body: dict[str, Any]) -> None:
    """The body is what databricks-sdk's `jobs.submit` would send for the same request: each object
    equal to the SDK dataclass's round trip, its fields in the same order."""
    sdk_types = {"tasks": SubmitTask, "environments": JobEnvironment}
    for key, sdk_type in sdk_types.items():
        for item in body.get(key, []):
            assert_same_json(sdk_type.from_dict(item).as_dict(), item)
    if "git_source" in body:
        assert_same_json(GitSource.from_dict(body["git_source"]).as_dict(), body["git_source"])


def assert_same_json(expected: dict[str, Any], actual: dict[str, Any]) -> None:
    assert json.dumps(actual) == json.dumps(expected)  # equal, and in the same order (--dry-run prints it)


def test_demo_flags_give_the_demo_payload_fields_plus_ours() -> None:
    body = payload(DEMO, MLFLOW)
    task = body["tasks"][0]
    # the demo's job_spec, field by field (in the multi-task shape)
    assert task["new_cluster"]["spark_version"] == "7.3.x-scala2.12"
    assert task["new_cluster"]["node_type_id"] == "Standard_D3_v2"
    assert task["new_cluster"]["num_workers"] == 2
    assert task["new_cluster"]["spark_env_vars"] == {"AZUREML_RUN_ID": "job_42", **MLFLOW}
    assert task["notebook_task"] == {
        "notebook_path": "/Users/me/nb",
        "base_parameters": {"output_folder": "azureml/job_42/output_path"},
    }
    assert task["libraries"] == [{"pypi": {"package": "azureml-mlflow"}}]
    assert body["run_name"] == "job_42"  # the demo's "name"
    # our additions
    assert body["idempotency_token"] == idempotency_token("job_42")
    assert task["task_key"] == "main"
    assert submission_id_of(task["description"]) == "s1"
    assert set(body) == {"run_name", "idempotency_token", "tasks"}


def test_request_round_trips_through_the_sdk_dataclass() -> None:
    task = payload(DEMO)["tasks"][0]
    assert SubmitTask.from_dict(task).as_dict() == task


def test_unset_mlflow_variables_are_not_sent_as_nulls() -> None:
    env = payload(DEMO)["tasks"][0]["new_cluster"]["spark_env_vars"]
    assert env == {"AZUREML_RUN_ID": "job_42"}


def test_params_and_spark_settings() -> None:
    flags = {**DEMO, "param": ["a=1", "output_folder=custom"], "spark_conf": ["k=v"], "spark_env": ["E=1"]}
    task = payload(flags)["tasks"][0]
    assert task["notebook_task"]["base_parameters"] == {"output_folder": "custom", "a": "1"}
    assert task["new_cluster"]["spark_conf"] == {"k": "v"}
    assert task["new_cluster"]["spark_env_vars"]["E"] == "1"


def test_autoscale_pool_existing_cluster() -> None:
    flags = {**DEMO, "num_workers": None, "autoscale": "1:3", "instance_pool_id": "pool", "node_type_id": None}
    cluster = payload(flags)["tasks"][0]["new_cluster"]
    assert cluster["autoscale"] == {"min_workers": 1, "max_workers": 3}
    assert cluster["instance_pool_id"] == "pool" and "num_workers" not in cluster
    existing = {**HOST, "notebook_path": "/nb", "existing_cluster_id": "0101-abc"}
    task = payload(existing)["tasks"][0]
    assert task["existing_cluster_id"] == "0101-abc" and "new_cluster" not in task


CLUSTER = {"existing_cluster_id": "c1"}


@pytest.mark.parametrize(
    ("flags", "key", "expected"),
    [
        (
            {"task_type": "python", "python_file": "dbfs:/x.py", "arg": ["--a", "1"], **CLUSTER},
            "spark_python_task",
            {"python_file": "dbfs:/x.py", "parameters": ["--a", "1"]},
        ),
        (
            {"task_type": "wheel", "package_name": "pkg", "entry_point": "main", "param": ["k=v"], **CLUSTER},
            "python_wheel_task",
            {"package_name": "pkg", "entry_point": "main", "named_parameters": {"k": "v"}},
        ),
        (
            {"task_type": "jar", "main_class_name": "com.x.Main", "jar": ["dbfs:/a.jar"], "arg": ["1"], **CLUSTER},
            "spark_jar_task",
            {"main_class_name": "com.x.Main", "parameters": ["1"]},
        ),
        (
            {"task_type": "sql", "warehouse_id": "wh", "sql_file": "/q.sql", "param": ["d=1"]},
            "sql_task",
            {"warehouse_id": "wh", "file": {"path": "/q.sql"}, "parameters": {"d": "1"}},
        ),
        (
            {"task_type": "sql", "warehouse_id": "wh", "query_id": "q1"},
            "sql_task",
            {"warehouse_id": "wh", "query": {"query_id": "q1"}},
        ),
        (
            {
                "task_type": "dbt",
                "dbt_command": ["dbt deps", "dbt run"],
                "warehouse_id": "wh",
                "project_directory": "proj",
                "git_url": "https://github.com/o/r",
                "git_branch": "main",
                "source": "GIT",
                **CLUSTER,
            },
            "dbt_task",
            {"commands": ["dbt deps", "dbt run"], "warehouse_id": "wh", "project_directory": "proj", "source": "GIT"},
        ),
    ],
)
def test_every_task_type(flags: dict[str, Any], key: str, expected: dict[str, Any]) -> None:
    body = payload({**HOST, **flags})
    task = body["tasks"][0]
    assert task[key] == expected
    assert not {"notebook_task", "spark_python_task", "python_wheel_task", "spark_jar_task", "sql_task", "dbt_task"} - {
        key
    } & set(task)
    if key == "sql_task":
        assert "new_cluster" not in task and "existing_cluster_id" not in task and "libraries" not in task
    if key == "spark_jar_task":
        assert {"jar": "dbfs:/a.jar"} in task["libraries"]
    if key == "dbt_task":
        assert body["git_source"] == {
            "git_url": "https://github.com/o/r",
            "git_provider": "gitHub",
            "git_branch": "main",
        }


def test_serverless_python_gets_an_environment() -> None:
    flags = {**HOST, "task_type": "python", "python_file": "/x.py", "serverless": True, "pypi": ["pandas"]}
    body = payload(flags)
    task = body["tasks"][0]
    assert task["environment_key"] == "default"
    assert body["environments"] == [
        {"environment_key": "default", "spec": {"environment_version": "2", "dependencies": ["pandas"]}}
    ]
    assert "new_cluster" not in task and "libraries" not in task


def test_serverless_notebook_has_no_compute_fields() -> None:
    task = payload({**HOST, "notebook_path": "/nb", "serverless": True})["tasks"][0]
    assert not {"new_cluster", "existing_cluster_id", "environment_key", "libraries"} & set(task)


def test_timeout_and_run_name() -> None:
    body = payload({**DEMO, "timeout": "600", "run_name": "nightly"})
    assert body["timeout_seconds"] == 600 and body["run_name"] == "nightly"


def test_output_uri_from_azureml_datastore_uri() -> None:
    out = "azureml://subscriptions/s/resourcegroups/g/workspaces/w/datastores/workspaceblobstore/paths/azureml/job_42/output_path/"
    flags = {**DEMO, "datastore": ["workspaceblobstore=acct/azureml-blobstore-1"]}
    params = payload(flags, output=out)["tasks"][0]["notebook_task"]["base_parameters"]
    assert params["output_uri"] == "abfss://azureml-blobstore-1@acct.dfs.core.windows.net/azureml/job_42/output_path"
    assert params["output_folder"] == "azureml/job_42/output_path"
    short = "azureml://datastores/workspaceblobstore/paths/p/q"
    assert output_uri(short, {"workspaceblobstore": ("a", "c")}) == "abfss://c@a.dfs.core.windows.net/p/q"
    assert output_uri(short, {}) is None
    assert output_uri("/local/folder", {"x": ("a", "c")}) is None


def test_idempotency_token_is_stable_short_and_distinct() -> None:
    token = idempotency_token("job_42")
    assert token == idempotency_token("job_42")
    assert token != idempotency_token("job_43")
    long_id = "x" * 500 + "/ünïcode ☃"
    assert len(idempotency_token(long_id)) <= 64
    assert idempotency_token(long_id).isascii()


def test_dry_run_masks_the_mlflow_token_but_not_a_secret_reference() -> None:
    body = payload(DEMO, MLFLOW)
    text = json.dumps(masked(body))
    assert "eyJ-very-secret-token" not in text and '"MLFLOW_TRACKING_TOKEN": "***"' in text
    assert MLFLOW["MLFLOW_TRACKING_URI"] in text

    settings = resolve({**DEMO, "mlflow_token_secret": "aml/mlflow-token"}, {})
    ctx = AzureMLContext(run_id="job_42", run_id_generated=False, mlflow=MLFLOW)
    ref_body = build_submit_request(settings, ctx, "s1").as_dict()
    env = ref_body["tasks"][0]["new_cluster"]["spark_env_vars"]
    assert env["MLFLOW_TRACKING_TOKEN"] == "{{secrets/aml/mlflow-token}}"
    assert masked(ref_body) == ref_body
    assert "eyJ-very-secret-token" not in json.dumps(ref_body)


def test_every_task_type_is_a_submit_task_field_of_the_installed_sdk() -> None:
    """One list of task types (settings.TASK_FIELDS), built by SubmitTask field name; all six are
    fields of SubmitTask from databricks-sdk 0.45 (the minimum allowed) to today's."""
    import dataclasses

    from aml_databricks.step import request
    from aml_databricks.step.settings import TASK_FIELDS

    assert set(TASK_FIELDS.values()) <= {f.name for f in dataclasses.fields(SubmitTask)}
    assert set(request._TASK_BUILDERS) == set(TASK_FIELDS.values())


def test_building_the_request_does_not_import_the_sdks_service_modules() -> None:
    """The request is plain JSON: `service.jobs` and `service.compute` (the heaviest part of the
    SDK) are imported after the submit, not to build it."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from aml_databricks.sdk_import import defer_package_init\n"
        "defer_package_init()\n"
        "from aml_databricks.step.azureml import AzureMLContext\n"
        "from aml_databricks.step.request import build_submit_request\n"
        "from aml_databricks.step.settings import resolve\n"
        "s = resolve({'databricks_host': 'https://h', 'notebook_path': '/nb', 'num_workers': '1',"
        " 'spark_version': 'v', 'node_type_id': 'n'}, {})\n"
        "build_submit_request(s, AzureMLContext(run_id='r', run_id_generated=False, mlflow={}), 's')\n"
        "print(sorted(m for m in sys.modules if m.startswith('databricks.sdk.service')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
