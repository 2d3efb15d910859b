"""`aml-databricks run`: flags → settings → `run_step` → exit code.

Importing this module stays cheap (`aml-databricks --help` builds every parser): the SDK and the
Azure libraries are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aml_databricks.step.settings import (
    AUTH_KINDS,
    MAX_CONNECT_TIMEOUT,
    MAX_RETRY_BUDGET,
    MAX_TIMEOUT_SECONDS,
    OUTPUT_FORMATS,
    SOURCES,
    TASK_TYPES,
    Settings,
)

_D = Settings()  # the defaults, as help text shows them

EXIT_CODES = """\
exit codes:
  0    the Databricks run succeeded
  1    the run did not succeed (FAILED, TIMEDOUT, CANCELED by someone else, INTERNAL_ERROR,
       SKIPPED, ...), --timeout reached, or --require-output found nothing
  2    bad input or configuration (flags, env vars, host unreachable, notebook not found)
  3    authentication or authorization (no credential, Key Vault refused, 401/403)
  130  stopped by SIGINT: the run was cancelled
  143  stopped by SIGTERM (how Azure ML cancels a job): the run was cancelled

precedence: a flag, then AML_DATABRICKS_<FLAG> (e.g. AML_DATABRICKS_TIMEOUT=600; lists and
KEY=VALUE maps comma-separated), then DATABRICKS_HOST / DEFAULT_IDENTITY_CLIENT_ID, then the default.

credentials, the first one configured is used (--auth forces one): DATABRICKS_TOKEN; Key Vault PAT
(--keyvault-url + --keyvault-secret-name); managed identity (DEFAULT_IDENTITY_CLIENT_ID); service
principal (ARM_TENANT_ID, ARM_CLIENT_ID, ARM_CLIENT_SECRET); Azure CLI (`az login`).
"""


def add_parser(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run a Databricks notebook/task as this Azure ML step and wait for it",
        description=(
            "Submit a one-time Databricks run (idempotent per AZUREML_RUN_ID), wait for it, cancel it "
            "if this step is stopped, and hand its results to the next step."
        ),
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Every default is None: "not given" must be visible so env vars and defaults apply (settings.py).
    demo = p.add_argument_group("the original demo's flags")
    demo.add_argument("--databricks-host", metavar="URL", help="workspace URL (env DATABRICKS_HOST)")
    demo.add_argument("--notebook_path", "--notebook-path", dest="notebook_path", metavar="PATH")
    demo.add_argument("--keyvault-url", metavar="URL", help="Key Vault holding a Databricks PAT")
    demo.add_argument("--keyvault-secret-name", metavar="NAME")
    demo.add_argument("--num-workers", metavar="N")
    demo.add_argument("--node-type-id", metavar="TYPE")
    demo.add_argument("--spark-version", metavar="VERSION")

    task = p.add_argument_group("task")
    task.add_argument("--task-type", choices=TASK_TYPES)
    task.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="notebook base parameter / wheel named parameter / SQL parameter (repeatable)",
    )
    task.add_argument(
        "--arg",
        action="append",
        metavar="VALUE",
        help="positional parameter of python, wheel and jar tasks (repeatable)",
    )
    task.add_argument("--python-file", metavar="PATH", help="python: spark_python_task.python_file")
    task.add_argument("--package-name", help="wheel: python_wheel_task.package_name")
    task.add_argument("--entry-point", help="wheel: python_wheel_task.entry_point")
    task.add_argument("--main-class-name", help="jar: spark_jar_task.main_class_name")
    task.add_argument("--jar", action="append", metavar="URI", help="jar library to install (repeatable)")
    task.add_argument("--whl", action="append", metavar="URI", help="wheel library to install (repeatable)")
    task.add_argument("--warehouse-id", help="sql/dbt: SQL warehouse")
    task.add_argument("--sql-file", metavar="PATH", help="sql: sql_task.file.path")
    task.add_argument("--query-id", help="sql: sql_task.query.query_id")
    task.add_argument("--dbt-command", action="append", metavar="CMD", help="dbt: a command (repeatable)")
    task.add_argument("--project-directory")
    task.add_argument("--profiles-directory")
    task.add_argument("--dbt-catalog")
    task.add_argument("--dbt-schema")
    task.add_argument("--source", choices=SOURCES, help="where the task's file lives")
    task.add_argument("--git-url")
    task.add_argument("--git-provider", help=f"{_D.git_provider} (default), azureDevOpsServices, gitLab, ...")
    task.add_argument("--git-branch")

    cluster = p.add_argument_group("compute")
    cluster.add_argument("--existing-cluster-id", metavar="ID")
    cluster.add_argument("--autoscale", metavar="MIN:MAX")
    cluster.add_argument("--instance-pool-id", metavar="ID")
    cluster.add_argument("--spark-conf", action="append", metavar="K=V")
    cluster.add_argument("--spark-env", action="append", metavar="K=V")
    cluster.add_argument(
        "--serverless",
        action="store_true",
        default=None,
        help="serverless compute (python/wheel/dbt get an `environments` entry)",
    )
    cluster.add_argument(
        "--environment-version", help=f"serverless environment version (default {_D.environment_version})"
    )
    cluster.add_argument(
        "--pypi",
        action="append",
        metavar="PKG",
        help=f"PyPI library (repeatable; default {','.join(_D.pypi)}; --pypi '' for none)",
    )

    aml = p.add_argument_group("Azure ML")
    aml.add_argument("--output", metavar="PATH_OR_URI", help="the component's ${{outputs.output_path}}")
    aml.add_argument(
        "--datastore",
        action="append",
        metavar="NAME=ACCOUNT/CONTAINER",
        help="datastore → storage, to give notebooks an abfss:// output_uri (repeatable)",
    )
    aml.add_argument(
        "--mlflow-token-secret",
        metavar="SCOPE/KEY",
        help="send MLFLOW_TRACKING_TOKEN as a {{secrets/SCOPE/KEY}} reference",
    )
    aml.add_argument(
        "--require-output",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="fail when the notebook wrote nothing (default: on for notebooks with --output)",
    )

    auth = p.add_argument_group("credentials")
    auth.add_argument(
        "--auth",
        choices=AUTH_KINDS,
    )
    auth.add_argument("--managed-identity-client-id", metavar="ID", help="env DEFAULT_IDENTITY_CLIENT_ID")

    behaviour = p.add_argument_group("behaviour")
    behaviour.add_argument("--run-name", help="default: the Azure ML run id")
    behaviour.add_argument(
        "--timeout", metavar="SECONDS", help=f"cancel the run after this long (0 = none; at most {MAX_TIMEOUT_SECONDS})"
    )
    behaviour.add_argument(
        "--poll-max-interval", metavar="SECONDS", help=f"longest pause between polls ({_D.poll_max_interval:g})"
    )
    behaviour.add_argument(
        "--retry-budget",
        metavar="SECONDS",
        help=f"how long one API call retries 429/503/resets ({_D.retry_budget:g}; at most {MAX_RETRY_BUDGET:g})",
    )
    behaviour.add_argument(
        "--connect-timeout",
        metavar="SECONDS",
        help=f"how long to try reaching the host ({_D.connect_timeout:g}; at most {MAX_CONNECT_TIMEOUT:g})",
    )
    behaviour.add_argument(
        "--cancel-grace",
        metavar="SECONDS",
        help=f"after cancelling, how long to wait for the run to end ({_D.cancel_grace:g})",
    )
    behaviour.add_argument(
        "--dry-run",
        action="store_true",
        default=None,
        help="print the runs/submit payload (secrets masked) and exit",
    )
    behaviour.add_argument(
        "--output-format",
        choices=OUTPUT_FORMATS,
        help="json: one result document on stdout, logs on stderr",
    )
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from aml_databricks.errors import AmlDatabricksError
    from aml_databricks.step.report import Masker, Reporter
    from aml_databricks.step.settings import resolve

    env = dict(os.environ)
    masker = Masker(
        [
            env.get("DATABRICKS_TOKEN", ""),
            env.get("MLFLOW_TRACKING_TOKEN", ""),
            env.get("ARM_CLIENT_SECRET", ""),
        ]
    )
    values = {k: v for k, v in vars(args).items() if k not in ("func", "command")}
    try:
        settings = resolve(values, env)
        # Imported after validation: bad input is reported without paying for databricks-sdk.
        from aml_databricks.step.runner import StopRequest, run_step

        # --dry-run's stdout is the payload alone (pipe it to a JSON tool); notices go to stderr.
        reporter = Reporter(
            masker, json_mode=settings.output_format == "json", log=sys.stderr if settings.dry_run else None
        )
        # The SDK logs through `logging`; unconfigured, its warnings would reach stderr unmasked.
        logging.getLogger("databricks.sdk").setLevel(logging.CRITICAL)
        logging.getLogger("azure").setLevel(logging.CRITICAL)
        stop = StopRequest()
        try:
            with _stop_on_signals(stop):
                result = run_step(settings, env=env, reporter=reporter, stop=stop)
        except AmlDatabricksError as exc:
            if settings.output_format == "json":
                reporter.document({"exit_code": exc.exit_code, "message": str(exc)})
            raise
    except AmlDatabricksError as exc:
        # The CLI prints str(exc): mask it here, the last place that knows the secrets.
        exc.args = (masker(str(exc)),)
        raise
    if settings.output_format == "json" and not settings.dry_run:
        reporter.document(result.as_dict())
    return result.exit_code


@contextmanager
def _stop_on_signals(stop: Any) -> Iterator[None]:
    """SIGTERM/SIGINT only set the stop request; the wait loop notices, cancels, and waits."""
    handlers = {signal.SIGTERM: (143, "SIGTERM"), signal.SIGINT: (130, "SIGINT")}
    previous = {}

    def handle(signum: int, _frame: Any) -> None:
        code, name = handlers[signal.Signals(signum)]
        stop.request(code, name)

    for sig in handlers:
        previous[sig] = signal.signal(sig, handle)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: aml-databricks run ...")
