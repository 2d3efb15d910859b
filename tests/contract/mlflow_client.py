"""An MLflow user's script with the `databricks` tracking URI, run in its own process by test_mlflow.py.

It knows the workspace only through MLFLOW_TRACKING_URI=databricks, DATABRICKS_HOST and DATABRICKS_TOKEN,
as on a laptop pointed at Azure Databricks, and prints what it saw as one JSON object on its last line.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any


def main(experiment_name: str) -> dict[str, Any]:
    import mlflow
    from mlflow import MlflowClient
    from sklearn.linear_model import LinearRegression

    seen: dict[str, Any] = {"tracking_uri": mlflow.get_tracking_uri()}
    experiment = mlflow.set_experiment(experiment_name)
    seen["experiment_id"] = experiment.experiment_id
    with mlflow.start_run(run_name="contract") as run:
        mlflow.log_params({"alpha": "0.5", "solver": "lbfgs"})
        for step, value in enumerate([0.9, 0.5, 0.25]):
            mlflow.log_metric("rmse", value, step=step)
        mlflow.set_tag("team", "local")
        note = Path(tempfile.mkdtemp()) / "note.txt"
        note.write_text("hello from the client")
        mlflow.log_artifact(str(note), artifact_path="notes")
        model = LinearRegression().fit([[0.0], [1.0], [2.0]], [1.0, 3.0, 5.0])
        logged = mlflow.sklearn.log_model(model, name="model")
    seen["run_id"] = run.info.run_id
    seen["artifact_uri"] = run.info.artifact_uri
    seen["model_uri"] = logged.model_uri
    seen["model_artifact_location"] = logged.artifact_path

    found = mlflow.search_runs(experiment_ids=[experiment.experiment_id], filter_string="params.alpha = '0.5'")
    seen["search_runs"] = found["run_id"].tolist()
    seen["artifacts"] = sorted(f.path for f in MlflowClient().list_artifacts(run.info.run_id, "notes"))
    seen["note"] = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/notes/note.txt")
    seen["prediction"] = float(mlflow.sklearn.load_model(logged.model_uri).predict([[3.0]])[0])

    seen["default_registry_uri"] = mlflow.get_registry_uri()
    try:  # MLflow 3's default registry for the databricks URI: Unity Catalog
        mlflow.register_model(logged.model_uri, "main.default.contract_model")
        seen["unity_catalog_error"] = None
    except Exception as exc:
        seen["unity_catalog_error"] = str(exc)
    mlflow.set_registry_uri("databricks")
    version = mlflow.register_model(logged.model_uri, "contract_model")
    seen["registered"] = {"name": version.name, "version": str(version.version)}
    return seen


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
