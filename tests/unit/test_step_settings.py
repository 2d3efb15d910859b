"""Settings: flag > AML_DATABRICKS_* env > well-known env > default, and one clear line per bad input."""

from __future__ import annotations

from typing import Any

import pytest

from aml_databricks.errors import UsageError
from aml_databricks.step.settings import Autoscale, normalize_host, resolve

DEMO_FLAGS: dict[str, Any] = {
    "databricks_host": "https://adb-1.2.azuredatabricks.net/",
    "notebook_path": "/Users/me/nb",
    "keyvault_url": "https://kv.vault.azure.net/",
    "keyvault_secret_name": "ADBPAT",
    "num_workers": "2",
    "node_type_id": "Standard_D3_v2",
    "spark_version": "7.3.x-scala2.12",
}


def settings(env: dict[str, str] | None = None, **flags: Any):  # type: ignore[no-untyped-def]
    return resolve({**DEMO_FLAGS, **flags}, env or {})


def test_demo_flags_resolve() -> None:
    s = settings()
    assert s.host == "https://adb-1.2.azuredatabricks.net"
    assert (s.notebook_path, s.num_workers, s.node_type_id) == ("/Users/me/nb", 2, "Standard_D3_v2")
    assert s.pypi == ("azureml-mlflow",)
    assert s.task_type == "notebook" and s.uses_new_cluster


def test_flag_beats_env_beats_wellknown_env_beats_default() -> None:
    base = {k: v for k, v in DEMO_FLAGS.items() if k != "databricks_host"}
    env = {"DATABRICKS_HOST": "https://from-databricks-host.net"}
    assert resolve(base, env).host == "https://from-databricks-host.net"
    env["AML_DATABRICKS_DATABRICKS_HOST"] = "https://from-ours.net"
    assert resolve(base, env).host == "https://from-ours.net"
    assert resolve({**base, "databricks_host": "https://flag.net"}, env).host == "https://flag.net"
    assert resolve(base, {"AML_DATABRICKS_TIMEOUT": "600"} | env).timeout == 600
    assert resolve({**base, "timeout": "5"}, {"AML_DATABRICKS_TIMEOUT": "600"} | env).timeout == 5
    assert resolve(base, env).timeout == 0


def test_env_lists_and_maps_are_comma_separated() -> None:
    s = settings({"AML_DATABRICKS_PYPI": "pandas,pyarrow", "AML_DATABRICKS_PARAM": "a=1,b=x=y"})
    assert s.pypi == ("pandas", "pyarrow")
    assert s.params == {"a": "1", "b": "x=y"}


def test_pypi_can_be_emptied() -> None:
    assert settings(pypi=[""]).pypi == ()
    assert settings({"AML_DATABRICKS_PYPI": ""}).pypi == ()


def test_managed_identity_client_id_from_azure_ml_variable() -> None:
    assert settings({"DEFAULT_IDENTITY_CLIENT_ID": "abc"}).managed_identity_client_id == "abc"
    assert (
        settings({"DEFAULT_IDENTITY_CLIENT_ID": "abc"}, managed_identity_client_id="x").managed_identity_client_id
        == "x"
    )


def test_autoscale_and_datastores_parse() -> None:
    s = settings(num_workers=None, autoscale="1:4", datastore=["blob=acct/cont"])
    assert s.autoscale == Autoscale(1, 4)
    assert s.datastores == {"blob": ("acct", "cont")}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("adb-1.2.azuredatabricks.net", "https://adb-1.2.azuredatabricks.net"),
        ("https://adb-1.2.azuredatabricks.net/", "https://adb-1.2.azuredatabricks.net"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://localhost:1", "http://localhost:1"),
        ("http://[::1]:9", "http://[::1]:9"),
    ],
)
def test_host_normalized(given: str, expected: str) -> None:
    assert normalize_host(given) == expected


BAD_INPUTS: list[tuple[dict[str, Any], dict[str, str], str]] = [
    ({"databricks_host": ""}, {}, "--databricks-host is empty"),
    ({"databricks_host": "   "}, {}, "--databricks-host is empty"),
    ({"databricks_host": "ftp://x.net"}, {}, "not an http(s) URL"),
    ({"databricks_host": "http://example.com"}, {}, "http:// for a non-loopback host"),
    ({"databricks_host": "https://x.net/some/path"}, {}, "without a path"),
    ({"databricks_host": "https://x.net:notaport"}, {}, "invalid port"),
    ({"databricks_host": "adb 1.net"}, {}, "invalid host name"),
    ({"databricks_host": None}, {}, "--databricks-host is required"),
    ({"databricks_host": None}, {"DATABRICKS_HOST": "http://example.com"}, "DATABRICKS_HOST uses http://"),
    ({"notebook_path": "relative/nb"}, {}, "--notebook-path must be an absolute"),
    ({"notebook_path": None}, {}, "needs --notebook-path"),
    ({"num_workers": "-1"}, {}, "--num-workers must be >= 0"),
    ({"num_workers": "two"}, {}, "--num-workers is not a number"),
    ({"existing_cluster_id": "c1"}, {}, "--existing-cluster-id excludes the new-cluster flags"),
    ({"spark_version": None}, {}, "needs --spark-version"),
    ({"node_type_id": None}, {}, "needs --node-type-id"),
    ({"num_workers": None}, {}, "needs --num-workers or --autoscale"),
    ({"autoscale": "1:4"}, {}, "--num-workers and --autoscale exclude"),
    ({"num_workers": None, "autoscale": "4:1"}, {}, "--autoscale need 0 <= MIN <= MAX"),
    ({"num_workers": None, "autoscale": "x"}, {}, "--autoscale expected MIN:MAX"),
    ({"task_type": "spark_submit"}, {}, "--task-type must be one of"),
    ({}, {"AML_DATABRICKS_TASK_TYPE": "bogus"}, "AML_DATABRICKS_TASK_TYPE must be one of"),
    ({"param": ["novalue"]}, {}, "--param expected KEY=VALUE"),
    ({"param": ["=v"]}, {}, "--param expected KEY=VALUE"),
    ({}, {"AML_DATABRICKS_PARAM": "a"}, "AML_DATABRICKS_PARAM expected KEY=VALUE"),
    ({"spark_conf": ["x"]}, {}, "--spark-conf expected KEY=VALUE"),
    ({"keyvault_secret_name": None}, {}, "--keyvault-url and --keyvault-secret-name go together"),
    ({"keyvault_url": "http://kv"}, {}, "--keyvault-url must be an https://"),
    ({"timeout": "-5"}, {}, "--timeout must be >= 0"),
    ({"poll_max_interval": "0"}, {}, "--poll-max-interval must be > 0"),
    ({"datastore": ["blob=acct"]}, {}, "--datastore expected DATASTORE=ACCOUNT/CONTAINER"),
    ({"mlflow_token_secret": "scope-only"}, {}, "--mlflow-token-secret expected SCOPE/KEY"),
    ({"serverless": True, "existing_cluster_id": "c1"}, {}, "exclude each other"),
    ({"serverless": True}, {}, "--serverless excludes the new-cluster flags"),
    ({"task_type": "python", "notebook_path": None}, {}, "needs --python-file"),
    ({"task_type": "wheel", "notebook_path": None, "package_name": "p"}, {}, "needs --entry-point"),
    ({"task_type": "jar", "notebook_path": None}, {}, "needs --main-class-name"),
    ({"task_type": "sql", "notebook_path": None, "warehouse_id": "w"}, {}, "exactly one of --sql-file"),
    ({"task_type": "dbt", "notebook_path": None}, {}, "needs --dbt-command"),
    ({"task_type": "python", "python_file": "/f.py"}, {}, "--notebook-path does not apply"),
    ({"source": "GIT"}, {}, "--source GIT needs --git-url"),
    ({"git_url": "https://g", "git_provider": "svn"}, {}, "--git-provider must be one of"),
    ({"require_output": None}, {"AML_DATABRICKS_REQUIRE_OUTPUT": "maybe"}, "expected true or false"),
    ({"output_format": None}, {"AML_DATABRICKS_OUTPUT_FORMAT": "xml"}, "must be one of text, json"),
]


@pytest.mark.parametrize(("flags", "env", "message"), BAD_INPUTS)
def test_bad_input_is_one_clear_line(flags: dict[str, Any], env: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        settings(env, **flags)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text
    assert caught.value.exit_code == 2


def test_at_least_25_bad_inputs() -> None:
    assert len(BAD_INPUTS) >= 25


def test_dry_run_needs_no_host() -> None:
    assert settings(databricks_host=None, dry_run=True).host is None


def test_sql_task_needs_no_cluster() -> None:
    s = resolve({"databricks_host": "https://x.net", "task_type": "sql", "warehouse_id": "w", "query_id": "q"}, {})
    assert not s.uses_new_cluster


def test_require_output_default_on_for_notebooks_with_output() -> None:
    assert settings(output="/outputs/out").output_required
    assert not settings().output_required
    assert not settings(output="/outputs/out", require_output=False).output_required


def test_defaults_are_the_settings_fields_own() -> None:
    """Nothing given anywhere: every setting is the default written on `Settings`."""
    from dataclasses import fields

    from aml_databricks.step.settings import Settings

    given = resolve({"notebook_path": "/nb", "existing_cluster_id": "c", "dry_run": "true"}, {})
    defaults = Settings()
    changed = {f.name for f in fields(Settings) if getattr(given, f.name) != getattr(defaults, f.name)}
    assert changed == {"notebook_path", "existing_cluster_id", "dry_run"}


def test_key_value_parsing_is_shared() -> None:
    from aml_databricks.kv import parse_key_value

    assert parse_key_value(" a =b=c ") == ("a", "b=c ")
    with pytest.raises(ValueError, match="expected INPUT=VALUE"):
        parse_key_value("=x", "INPUT=VALUE")
    assert settings(param=["k= v"]).params == {"k": " v"}
