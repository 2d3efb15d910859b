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

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aml_databricks.errors import UsageError

ENV_PREFIX = "AML_DATABRICKS_"
TASK_TYPES = ("notebook", "python", "wheel", "jar", "sql", "dbt")
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

T = TypeVar("T")


@dataclass(frozen=True)
class Autoscale:
    min_workers: int
    max_workers: int


@dataclass(frozen=True)
class Settings:
    host: str | None
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


# --- parsers for single values; each raises ValueError with the reason -------------------------


def parse_key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def parse_autoscale(text: str) -> Autoscale:
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"expected MIN:MAX, got {text!r}")
    low, high = int(match[1]), int(match[2])
    if high < 1 or low > high:
        raise ValueError(f"need 0 <= MIN <= MAX and MAX >= 1, got {text!r}")
    return Autoscale(low, high)


def parse_datastore(text: str) -> tuple[str, tuple[str, str]]:
    name, value = parse_key_value(text)
    account, sep, container = value.partition("/")
    if not sep or not account or not container or "/" in container:
        raise ValueError(f"expected DATASTORE=ACCOUNT/CONTAINER, got {text!r}")
    return name, (account, container)


def parse_secret_ref(text: str) -> tuple[str, str]:
    scope, sep, key = text.partition("/")
    if not sep or not scope or not key or "/" in key:
        raise ValueError(f"expected SCOPE/KEY, got {text!r}")
    return scope, key


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def parse_non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must be >= 0, got {value}")
    return value


def parse_positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"must be > 0, got {text}")
    return value


def normalize_host(text: str) -> str:
    """`adb-1.2.azuredatabricks.net` → `https://adb-1.2.azuredatabricks.net`; http only on loopback,
    because a token sent over plain http to another machine is a token given away."""
    text = text.strip()
    if not text:
        raise ValueError("is empty")
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"has an invalid port: {text!r}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"is not an http(s) URL: {text!r}")
    if not _HOSTNAME.fullmatch(parts.hostname) and not _is_ip(parts.hostname):
        raise ValueError(f"has an invalid host name: {text!r}")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ValueError(f"must be the workspace URL without a path: {text!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError(f"uses http:// for a non-loopback host (use https://): {text!r}")
    netloc = parts.hostname if port is None else f"{parts.hostname}:{port}"
    if ":" in parts.hostname:  # IPv6 literal
        netloc = f"[{parts.hostname}]" + ("" if port is None else f":{port}")
    return f"{parts.scheme}://{netloc}"


_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*")


def _is_ip(hostname: str) -> bool:
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return True


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


# --- resolution --------------------------------------------------------------------------------


class _Resolver:
    """Picks flag, then env, then default for one setting, and names the input in errors."""

    def __init__(self, values: Mapping[str, Any], env: Mapping[str, str]) -> None:
        self.values = values
        self.env = env

    def _fail(self, dest: str, from_env: str | None, reason: str) -> UsageError:
        where = from_env if from_env else "--" + dest.replace("_", "-")
        return UsageError(f"{where} {reason}")

    def scalar(self, dest: str, parse: Callable[[str], T], default: T, *, also_env: Sequence[str] = ()) -> T:
        flag = self.values.get(dest)
        source: str | None = None
        if flag is None:
            for name in (ENV_PREFIX + dest.upper(), *also_env):
                if self.env.get(name, "") != "":
                    flag, source = self.env[name], name
                    break
        if flag is None:
            return default
        if not isinstance(flag, str):
            return flag  # type: ignore[no-any-return]  # argparse already converted it
        try:
            return parse(flag)
        except ValueError as exc:
            raise self._fail(dest, source, _reason(exc)) from None

    def items(self, dest: str, parse: Callable[[str], T], default: Sequence[T] = ()) -> tuple[T, ...]:
        given = self.values.get(dest)
        source: str | None = None
        if given is None:
            name = ENV_PREFIX + dest.upper()
            if name not in self.env:
                return tuple(default)
            given, source = [part for part in self.env[name].split(",") if part.strip()], name
        try:
            return tuple(parse(item) for item in given if item != "")
        except ValueError as exc:
            raise self._fail(dest, source, _reason(exc)) from None


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
    host = r.scalar("databricks_host", normalize_host, None, also_env=("DATABRICKS_HOST",))
    settings = Settings(
        host=host,
        task_type=r.scalar("task_type", _choice(TASK_TYPES), "notebook"),
        notebook_path=r.scalar("notebook_path", _str, None),
        params=dict(r.items("param", parse_key_value)),
        python_file=r.scalar("python_file", _str, None),
        package_name=r.scalar("package_name", _str, None),
        entry_point=r.scalar("entry_point", _str, None),
        main_class_name=r.scalar("main_class_name", _str, None),
        args=r.items("arg", str),
        jars=r.items("jar", _str),
        whls=r.items("whl", _str),
        warehouse_id=r.scalar("warehouse_id", _str, None),
        sql_file=r.scalar("sql_file", _str, None),
        query_id=r.scalar("query_id", _str, None),
        dbt_commands=r.items("dbt_command", _str),
        project_directory=r.scalar("project_directory", _str, None),
        profiles_directory=r.scalar("profiles_directory", _str, None),
        dbt_catalog=r.scalar("dbt_catalog", _str, None),
        dbt_schema=r.scalar("dbt_schema", _str, None),
        source=r.scalar("source", _choice(("WORKSPACE", "GIT")), None),
        git_url=r.scalar("git_url", _str, None),
        git_provider=r.scalar("git_provider", _git_provider, "gitHub"),
        git_branch=r.scalar("git_branch", _str, None),
        existing_cluster_id=r.scalar("existing_cluster_id", _str, None),
        spark_version=r.scalar("spark_version", _str, None),
        node_type_id=r.scalar("node_type_id", _str, None),
        num_workers=r.scalar("num_workers", parse_non_negative_int, None),
        autoscale=r.scalar("autoscale", parse_autoscale, None),
        instance_pool_id=r.scalar("instance_pool_id", _str, None),
        spark_conf=dict(r.items("spark_conf", parse_key_value)),
        spark_env=dict(r.items("spark_env", parse_key_value)),
        serverless=r.scalar("serverless", parse_bool, False),
        environment_version=r.scalar("environment_version", _str, "2"),
        pypi=r.items("pypi", _str, DEFAULT_PYPI),
        output=r.scalar("output", _str, None),
        datastores=dict(r.items("datastore", parse_datastore)),
        mlflow_token_secret=r.scalar("mlflow_token_secret", parse_secret_ref, None),
        require_output=r.scalar("require_output", parse_bool, None),
        auth=r.scalar("auth", _choice(AUTH_KINDS), "auto"),
        keyvault_url=r.scalar("keyvault_url", _str, None),
        keyvault_secret_name=r.scalar("keyvault_secret_name", _str, None),
        managed_identity_client_id=r.scalar(
            "managed_identity_client_id", _str, None, also_env=("DEFAULT_IDENTITY_CLIENT_ID",)
        ),
        run_name=r.scalar("run_name", _str, None),
        timeout=r.scalar("timeout", parse_non_negative_int, 0),
        poll_max_interval=r.scalar("poll_max_interval", parse_positive_float, 10.0),
        retry_budget=r.scalar("retry_budget", parse_positive_float, 300.0),
        connect_timeout=r.scalar("connect_timeout", parse_positive_float, 30.0),
        cancel_grace=r.scalar("cancel_grace", parse_positive_float, 60.0),
        dry_run=r.scalar("dry_run", parse_bool, False),
        output_format=r.scalar("output_format", _choice(OUTPUT_FORMATS), "text"),
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
