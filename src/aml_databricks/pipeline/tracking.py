"""MLflow tracking for a local pipeline run, laid out the way Azure ML lays it out.

One MLflow run for the pipeline and one child run per node, created by the runner before the node
starts, so the node's code (and a Databricks notebook it launches) logs into *its* run through the
MLFLOW_* variables, exactly as in an Azure ML job. The store is a local folder (`<data-dir>/mlruns`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aml_databricks.errors import MissingExtraError

# MLflow 3 refuses its file store unless asked: it is the one store mlflow-skinny can use offline
# (the SQL stores need SQLAlchemy). Node processes and notebook drivers need the same switch.
FILE_STORE_SWITCH = {"MLFLOW_ALLOW_FILE_STORE": "true"}

PARENT_RUN_TAG = "mlflow.parentRunId"
STATUS = {"Completed": "FINISHED", "Failed": "FAILED", "Canceled": "KILLED"}


def import_mlflow() -> Any:
    """MLflow's client class (about 2 s to import the first time)."""
    try:
        from mlflow.tracking import MlflowClient
    except ModuleNotFoundError as exc:
        raise MissingExtraError("pipeline", "MLflow tracking of a local pipeline run") from exc
    return MlflowClient


class LocalTracking:
    def __init__(self, store_dir: Path, experiment_name: str) -> None:
        MlflowClient = import_mlflow()
        # Process-wide on purpose: the embedded workspace's notebook drivers inherit this process's
        # environment, and they too log into the file store.
        os.environ.update(FILE_STORE_SWITCH)
        store_dir.mkdir(parents=True, exist_ok=True)
        self.tracking_uri = store_dir.resolve().as_uri()
        self.experiment_name = experiment_name
        self._client: Any = MlflowClient(tracking_uri=self.tracking_uri)
        experiment = self._client.get_experiment_by_name(experiment_name)
        self.experiment_id: str = (
            experiment.experiment_id if experiment else self._client.create_experiment(experiment_name)
        )

    def start_pipeline(self, name: str) -> str:
        run = self._client.create_run(self.experiment_id, run_name=name, tags={"aml_databricks.kind": "pipeline"})
        return str(run.info.run_id)

    def start_node(self, parent_run_id: str, node: str) -> str:
        run = self._client.create_run(
            self.experiment_id,
            run_name=node,
            tags={PARENT_RUN_TAG: parent_run_id, "aml_databricks.node": node},
        )
        return str(run.info.run_id)

    def end(self, run_id: str, status: str) -> None:
        self._client.set_terminated(run_id, status=STATUS.get(status, "FAILED"))

    def environment(self, run_id: str) -> dict[str, str]:
        """The variables Azure ML gives a job so that `mlflow.start_run()` resumes the job's run."""
        return {
            **FILE_STORE_SWITCH,
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_RUN_ID": run_id,
            "MLFLOW_EXPERIMENT_ID": self.experiment_id,
            "MLFLOW_EXPERIMENT_NAME": self.experiment_name,
        }

    def run(self, run_id: str) -> Any:
        """The MLflow run (for reports and tests)."""
        return self._client.get_run(run_id)
