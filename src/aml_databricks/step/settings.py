"""Every input of `aml-databricks run`, resolved and validated once.

Precedence, for each setting: the command-line flag, then its environment variable
(`AML_DATABRICKS_<NAME>`, e.g. `AML_DATABRICKS_TIMEOUT`), then a well-known variable where one
exists (`DATABRICKS_HOST`, `DEFAULT_IDENTITY_CLIENT_ID`), then the default. List settings read from
the environment are comma-separated (`AML_DATABRICKS_PYPI=pandas,pyarrow`), mapping settings are
comma-separated `KEY=VALUE` pairs. Credentials are not settings: see `auth.py`.

Everything here is pure: `resolve(values, env)` takes the parsed flags (None = not given) and the
environment and returns a frozen `Settings`, or raises `UsageError` with one line naming the input.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aml_databricks.errors import UsageError
from aml_databricks.kv import parse_key_value
from aml_databricks.step.values import (
    Autoscale,
    bounded_int,
    bounded_seconds,
    normalize_host,
    parse_autoscale,
    parse_bool,
    parse_datastore,
    parse_non_negative_int,
    parse_secret_ref,
)

ENV_PREFIX = "AML_DATABRICKS_"
# --task-type → the `SubmitTask` field of databricks-sdk that carries it. The one list of task types:
# the flag's choices come from it and request.py builds each by this field name, checked against
# the installed SDK's `SubmitTask` (the SDK itself is too heavy to import for `--help`).
TASK_FIELDS = {
    "notebook": "notebook_task",
    "python": "spark_python_task",
    "wheel": "python_wheel_task",
    "jar": "spark_jar_task",
    "sql": "sql_task",
    "dbt": "dbt_task",
}
TASK_TYPES = tuple(TASK_FIELDS)
SOURCES = ("WORKSPACE", "GIT")
AUTH_KINDS = (
    "auto",
    "databricks-token",
    "keyvault-pat",
    "managed-identity",
    "service-principal",
    "azure-cli",
)
OUTPUT_FORMATS = ("text", "json")
DEFAULT_PYPI = ("azureml-mlflow",)  # the demo installs it so the notebook can log to Azure ML
# Upper bounds of the durations (docs/step.md). timeout_seconds is an int32 in the Jobs API; the
# others are the step's own: past them a value is a typo or `inf`, not a plan.
MAX_TIMEOUT_SECONDS = 2**31 - 1
MAX_POLL_MAX_INTERVAL = 3600.0
MAX_RETRY_BUDGET = 3600.0
MAX_CONNECT_TIMEOUT = 600.0
MAX_CANCEL_GRACE = 3600.0

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    host: str | None = None  # required unless --dry-run (validate)
    task_type: str = "notebook"
    # notebook
    notebook_path: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    # python / wheel / jar
    python_file: str | None = None
    package_name: str | None = None
    entry_point: str | None = None
    main_class_name: str | None = None
    args: tuple[str, ...] = ()
    jars: tuple[str, ...] = ()
    whls: tuple[str, ...] = ()
    # sql / dbt
    warehouse_id: str | None = None
    sql_file: str | None = None
    query_id: str | None = None
    dbt_commands: tuple[str, ...] = ()
    project_directory: str | None = None
    profiles_directory: str | None = None
    dbt_catalog: str | None = None
    dbt_schema: str | None = None
    # where the task's source lives
    source: str | None = None  # WORKSPACE | GIT
    git_url: str | None = None
    git_provider: str = "gitHub"
    git_branch: str | None = None
    # compute
    existing_cluster_id: str | None = None
    spark_version: str | None = None
    node_type_id: str | None = None
    num_workers: int | None = None
    autoscale: Autoscale | None = None
    instance_pool_id: str | None = None
    spark_conf: Mapping[str, str] = field(default_factory=dict)
    spark_env: Mapping[str, str] = field(default_factory=dict)
    serverless: bool = False
    environment_version: str = "2"
    pypi: tuple[str, ...] = DEFAULT_PYPI
    # Azure ML
    output: str | None = None
    datastores: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # name -> (account, container)
    mlflow_token_secret: tuple[str, str] | None = None  # (scope, key)
    require_output: bool | None = None  # None = on for notebook tasks with an output
    # credentials (where to look, not the secrets themselves)
    auth: str = "auto"
    keyvault_url: str | None = None
    keyvault_secret_name: str | None = None
    managed_identity_client_id: str | None = None
    # behaviour
    run_name: str | None = None
    timeout: int = 0
    poll_max_interval: float = 10.0
    retry_budget: float = 300.0
    connect_timeout: float = 30.0
    cancel_grace: float = 60.0
    dry_run: bool = False
    output_format: str = "text"

    @property
    def uses_new_cluster(self) -> bool:
        return not (self.existing_cluster_id or self.serverless or self.task_type == "sql")

    @property
    def output_required(self) -> bool:
        if self.require_output is not None:
            return self.require_output
        return self.task_type == "notebook" and self.output is not None


# --- resolution --------------------------------------------------------------------------------


class _Resolver:
    """Picks flag, then env, then default for one setting, and names the input in errors. The
    default is the `Settings` field's own (`field` when the flag's name differs from it)."""

    def __init__(self, values: Mapping[str, Any], env: Mapping[str, str]) -> None:
        self.values = values
        self.env = env

    def _fail(self, dest: str, from_env: str | None, reason: str) -> UsageError:
        where = from_env if from_env else "--" + dest.replace("_", "-")
        return UsageError(f"{where} {reason}")

    def scalar(
        self, dest: str, parse: Callable[[str], T], *, field: str | None = None, also_env: Sequence[str] = ()
    ) -> T:
        flag = self.values.get(dest)
        source: str | None = None
        if flag is None:
            for name in (ENV_PREFIX + dest.upper(), *also_env):
                if self.env.get(name, "") != "":
                    flag, source = self.env[name], name
                    break
        if flag is None:
            return _default(field or dest)  # type: ignore[no-any-return]
        if not isinstance(flag, str):
            return flag  # type: ignore[no-any-return]  # argparse already converted it
        try:
            return parse(_utf8(flag))
        except ValueError as exc:
            raise self._fail(dest, source, _reason(exc)) from None

    def items(self, dest: str, parse: Callable[[str], T], *, field: str | None = None) -> tuple[T, ...]:
        given = self.values.get(dest)
        source: str | None = None
        if given is None:
            name = ENV_PREFIX + dest.upper()
            if name not in self.env:
                return tuple(_default(field or dest))
            given, source = [part for part in self.env[name].split(",") if part.strip()], name
        try:
            return tuple(parse(_utf8(item)) for item in given if item != "")
        except ValueError as exc:
            raise self._fail(dest, source, _reason(exc)) from None


def _default(name: str) -> Any:
    """A setting's default, as written once on the `Settings` field."""
    spec = Settings.__dataclass_fields__[name]
    if spec.default_factory is not MISSING:
        return spec.default_factory()
    return spec.default


def _utf8(text: str) -> str:
    """Text the API can carry. Invalid UTF-8 in argv or the environment reaches Python as lone
    surrogates, which would fail later, deep in the HTTP client; the value itself is not echoed
    (it cannot be printed either)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"is not valid UTF-8 (invalid byte at character {exc.start + 1})") from None
    return text


def _reason(exc: ValueError) -> str:
    text = str(exc)
    if text.startswith(("invalid literal", "could not convert")):
        return "is not a number"
    return text


def _str(text: str) -> str:
    return text.strip()


def _choice(choices: Sequence[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {text!r}")
        return text

    return parse


def _git_provider(text: str) -> str:
    from databricks.sdk.service.jobs import GitProvider  # heavy module: only when asked

    return _choice([p.value for p in GitProvider])(text.strip())


def resolve(values: Mapping[str, Any], env: Mapping[str, str]) -> Settings:
    """Build the settings from parsed flags (absent ones None) and the environment, and validate."""
    r = _Resolver(values, env)
    host = r.scalar("databricks_host", normalize_host, field="host", also_env=("DATABRICKS_HOST",))
    settings = Settings(
        host=host,
        task_type=r.scalar("task_type", _choice(TASK_TYPES)),
        notebook_path=r.scalar("notebook_path", _str),
        params=dict(r.items("param", parse_key_value, field="params")),
        python_file=r.scalar("python_file", _str),
        package_name=r.scalar("package_name", _str),
        entry_point=r.scalar("entry_point", _str),
        main_class_name=r.scalar("main_class_name", _str),
        args=r.items("arg", str, field="args"),
        jars=r.items("jar", _str, field="jars"),
        whls=r.items("whl", _str, field="whls"),
        warehouse_id=r.scalar("warehouse_id", _str),
        sql_file=r.scalar("sql_file", _str),
        query_id=r.scalar("query_id", _str),
        dbt_commands=r.items("dbt_command", _str, field="dbt_commands"),
        project_directory=r.scalar("project_directory", _str),
        profiles_directory=r.scalar("profiles_directory", _str),
        dbt_catalog=r.scalar("dbt_catalog", _str),
        dbt_schema=r.scalar("dbt_schema", _str),
        source=r.scalar("source", _choice(SOURCES)),
        git_url=r.scalar("git_url", _str),
        git_provider=r.scalar("git_provider", _git_provider),
        git_branch=r.scalar("git_branch", _str),
        existing_cluster_id=r.scalar("existing_cluster_id", _str),
        spark_version=r.scalar("spark_version", _str),
        node_type_id=r.scalar("node_type_id", _str),
        num_workers=r.scalar("num_workers", parse_non_negative_int),
        autoscale=r.scalar("autoscale", parse_autoscale),
        instance_pool_id=r.scalar("instance_pool_id", _str),
        spark_conf=dict(r.items("spark_conf", parse_key_value)),
        spark_env=dict(r.items("spark_env", parse_key_value)),
        serverless=r.scalar("serverless", parse_bool),
        environment_version=r.scalar("environment_version", _str),
        pypi=r.items("pypi", _str),
        output=r.scalar("output", _str),
        datastores=dict(r.items("datastore", parse_datastore, field="datastores")),
        mlflow_token_secret=r.scalar("mlflow_token_secret", parse_secret_ref),
        require_output=r.scalar("require_output", parse_bool),
        auth=r.scalar("auth", _choice(AUTH_KINDS)),
        keyvault_url=r.scalar("keyvault_url", _str),
        keyvault_secret_name=r.scalar("keyvault_secret_name", _str),
        managed_identity_client_id=r.scalar(
            "managed_identity_client_id", _str, also_env=("DEFAULT_IDENTITY_CLIENT_ID",)
        ),
        run_name=r.scalar("run_name", _str),
        timeout=r.scalar("timeout", bounded_int(MAX_TIMEOUT_SECONDS, "the Jobs API's timeout_seconds limit")),
        poll_max_interval=r.scalar("poll_max_interval", bounded_seconds(MAX_POLL_MAX_INTERVAL)),
        retry_budget=r.scalar("retry_budget", bounded_seconds(MAX_RETRY_BUDGET)),
        connect_timeout=r.scalar("connect_timeout", bounded_seconds(MAX_CONNECT_TIMEOUT)),
        cancel_grace=r.scalar("cancel_grace", bounded_seconds(MAX_CANCEL_GRACE)),
        dry_run=r.scalar("dry_run", parse_bool),
        output_format=r.scalar("output_format", _choice(OUTPUT_FORMATS)),
    )
    validate(settings)
    return settings


def validate(s: Settings) -> None:
    """Cross-field rules. Each message names the flags involved."""
    if s.host is None and not s.dry_run:
        raise UsageError("--databricks-host is required (or set DATABRICKS_HOST)")
    _validate_task(s)
    _validate_compute(s)
    if bool(s.keyvault_url) != bool(s.keyvault_secret_name):
        raise UsageError("--keyvault-url and --keyvault-secret-name go together")
    if s.keyvault_url:
        parts = urlsplit(s.keyvault_url)
        if parts.scheme != "https" or not parts.hostname:
            raise UsageError(f"--keyvault-url must be an https:// URL, got {s.keyvault_url!r}")
    if s.source == "GIT" and not s.git_url:
        raise UsageError("--source GIT needs --git-url")


def _require(value: object, flag: str, task_type: str) -> None:
    if not value:
        raise UsageError(f"--task-type {task_type} needs {flag}")


def _validate_task(s: Settings) -> None:
    t = s.task_type
    if t == "notebook":
        _require(s.notebook_path, "--notebook-path", t)
        assert s.notebook_path is not None
        if s.source != "GIT" and not s.git_url and not s.notebook_path.startswith("/"):
            raise UsageError(
                f"--notebook-path must be an absolute workspace path (/Users/...), got {s.notebook_path!r}"
            )
    elif t == "python":
        _require(s.python_file, "--python-file", t)
    elif t == "wheel":
        _require(s.package_name, "--package-name", t)
        _require(s.entry_point, "--entry-point", t)
    elif t == "jar":
        _require(s.main_class_name, "--main-class-name", t)
    elif t == "sql":
        _require(s.warehouse_id, "--warehouse-id", t)
        if bool(s.sql_file) == bool(s.query_id):
            raise UsageError("--task-type sql needs exactly one of --sql-file and --query-id")
    elif t == "dbt":
        _require(s.dbt_commands, "--dbt-command", t)
    if t != "notebook" and s.notebook_path:
        raise UsageError(f"--notebook-path does not apply to --task-type {t}")


_NEW_CLUSTER_FLAGS = (
    ("spark_version", "--spark-version"),
    ("node_type_id", "--node-type-id"),
    ("num_workers", "--num-workers"),
    ("autoscale", "--autoscale"),
    ("instance_pool_id", "--instance-pool-id"),
    ("spark_conf", "--spark-conf"),
    ("spark_env", "--spark-env"),
)


def _validate_compute(s: Settings) -> None:
    given = [flag for attr, flag in _NEW_CLUSTER_FLAGS if getattr(s, attr) not in (None, {}, ())]
    other = "--existing-cluster-id" if s.existing_cluster_id else "--serverless" if s.serverless else None
    if s.existing_cluster_id and s.serverless:
        raise UsageError("--existing-cluster-id and --serverless exclude each other")
    if s.task_type == "sql" and (other or given):
        raise UsageError("--task-type sql runs on the SQL warehouse (--warehouse-id): drop the cluster flags")
    if other and given:
        raise UsageError(f"{other} excludes the new-cluster flags ({', '.join(given)})")
    if not s.uses_new_cluster:
        return
    if s.num_workers is not None and s.autoscale is not None:
        raise UsageError("--num-workers and --autoscale exclude each other")
    if not s.spark_version:
        raise UsageError("a new cluster needs --spark-version (or use --existing-cluster-id or --serverless)")
    if not s.node_type_id and not s.instance_pool_id:
        raise UsageError("a new cluster needs --node-type-id or --instance-pool-id")
    if s.num_workers is None and s.autoscale is None:
        raise UsageError("a new cluster needs --num-workers or --autoscale MIN:MAX")
