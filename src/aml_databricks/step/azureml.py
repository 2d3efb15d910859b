"""What the step knows about the Azure ML job it runs in: run id, MLflow variables, the output.

Inside Azure ML the job's environment carries `AZUREML_RUN_ID` and the MLflow variables; the
output arrives on the command line (`--output ${{outputs.output_path}}`) as a local folder
(upload/mount modes) or an `azureml://` URI (direct mode). Outside Azure ML a run id is generated,
and the step says so, because without a stable id a rerun cannot reattach to its Databricks run.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aml_databricks.errors import UsageError

# Passed into the cluster's environment, as the demo does, so azureml-mlflow on Databricks logs
# into the step's own MLflow run.
MLFLOW_VARIABLES = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_RUN_ID",
    "MLFLOW_TRACKING_TOKEN",
)
MLFLOW_TOKEN = "MLFLOW_TRACKING_TOKEN"
OUTPUT_NAME = "output_path"

_AZUREML_URI = re.compile(r"^azureml://(?:.*/)?datastores/(?P<datastore>[^/]+)/paths/(?P<path>.*)$", re.I)


@dataclass(frozen=True)
class AzureMLContext:
    run_id: str
    run_id_generated: bool
    mlflow: Mapping[str, str] = field(default_factory=dict)
    output: str | None = None

    @property
    def output_folder(self) -> str:
        """The demo's convention: the output's path relative to the datastore root, which the
        notebook reads under the blob store's DBFS mount (`/mnt/azuremlblobstore/<this>`)."""
        return f"azureml/{self.run_id}/{OUTPUT_NAME}"

    @property
    def local_output(self) -> Path | None:
        """The output as a local folder, when it is one (upload/mount modes, local pipelines)."""
        if not self.output:
            return None
        if self.output.startswith("file://"):
            return Path(self.output[len("file://") :])
        return None if "://" in self.output else Path(self.output)

    @property
    def mlflow_run_id(self) -> str | None:
        return self.mlflow.get("MLFLOW_RUN_ID")


def generate_run_id(now: Callable[[], float] = time.time) -> str:
    stamp = time.strftime("%Y%m%d_%H%M%S", time.gmtime(now()))
    return f"local_{stamp}_{secrets.token_hex(4)}"


def context_from_env(output: str | None, env: Mapping[str, str]) -> AzureMLContext:
    """The job's context; `output` is the --output value (a folder or an `azureml://` URI)."""
    run_id = env.get("AZUREML_RUN_ID", "").strip()
    generated = not run_id
    if generated:
        run_id = generate_run_id()
    mlflow = {name: env[name] for name in MLFLOW_VARIABLES if env.get(name)}
    return AzureMLContext(run_id=run_id, run_id_generated=generated, mlflow=mlflow, output=output)


def output_uri(output: str | None, datastores: Mapping[str, tuple[str, str]]) -> str | None:
    """`azureml://.../datastores/<ds>/paths/<p>` → `abfss://<container>@<account>.dfs.core.windows.net/<p>`
    when the datastore's account and container are known; None when `output` is not such a URI."""
    if not output:
        return None
    match = _AZUREML_URI.match(output)
    if not match:
        return None
    datastore, path = match["datastore"], match["path"].strip("/")
    if datastore not in datastores:
        return None
    account, container = datastores[datastore]
    return f"abfss://{container}@{account}.dfs.core.windows.net/{path}"


def datastore_of(output: str | None) -> str | None:
    match = _AZUREML_URI.match(output or "")
    return match["datastore"] if match else None


def spark_env_vars(ctx: AzureMLContext, token_secret: tuple[str, str] | None) -> dict[str, str]:
    """The Azure ML variables for the cluster. With `token_secret` the MLflow token travels as a
    Databricks secret reference that the cluster resolves, so the payload never holds it."""
    env = {"AZUREML_RUN_ID": ctx.run_id, **ctx.mlflow}
    if token_secret is not None:
        if MLFLOW_TOKEN not in ctx.mlflow:
            raise UsageError(f"--mlflow-token-secret given but {MLFLOW_TOKEN} is not set")
        scope, key = token_secret
        env[MLFLOW_TOKEN] = f"{{{{secrets/{scope}/{key}}}}}"
    return env
