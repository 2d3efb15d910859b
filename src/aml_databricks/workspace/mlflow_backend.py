"""The process behind the workspace's MLflow API: MLflow's own tracking server on a store in the data dir.

    python -m aml_databricks.workspace.mlflow_backend DATA_DIR SOCKET

serves MLflow's tracking app (`mlflow.server.fastapi_app`, the one `mlflow server` runs) on the Unix
socket SOCKET, with its runs, experiments, logged models and model registry in `DATA_DIR/mlflow/mlflow.db`
(SQLite). `mlflow_api.MlflowProxy` starts it on the first MLflow call and forwards those calls to it.

Why a process of its own: MLflow's server keeps its store and settings in module globals and in
environment variables read at import time, so in-process there could be only one per Python process
(the tests run several workspaces in one), and those variables would leak into every notebook the
workspace starts. A Unix socket in a folder only this user can enter keeps it unreachable except
through the workspace, which checks the token first.

Artifacts: new experiments get `dbfs:/databricks/mlflow-tracking/<experiment id>` as their artifact
location, as on Databricks. A client with the `databricks` tracking URI writes and reads those
through the workspace's Files API (`/WorkspaceInternal/Mlflow/Artifacts/...`, mapped to
`DATA_DIR/mlflow/artifacts/`), not through this process. This server only reads them, for the web UI
(`get-artifact`, `artifacts/list`): its `dbfs:` artifact repository is the local folder the Files API
wrote to (`local_artifact_path`), not Databricks' DBFS client, which would need a workspace to call.
"""

from __future__ import annotations

import os
import posixpath
import re
import sys
import threading
import time
from pathlib import Path

ARTIFACT_ROOT = "dbfs:/databricks/mlflow-tracking"


def store_uri(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}"


def exit_with_parent() -> None:
    """End this process when the workspace that started it is gone, however it ended (even SIGKILL)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-workspace", daemon=True).start()


RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def local_artifact_path(data_dir: Path, artifact_uri: str) -> Path:
    """Where a `dbfs:` artifact URI's files are: a run's under the Files API's MLflow folder, the rest in DBFS.

    `dbfs:/databricks/mlflow-tracking/<experiment>/<run>/artifacts/x` is what the client stored at
    `/WorkspaceInternal/Mlflow/Artifacts/<experiment>/Runs/<run>/artifacts/x` (storage_paths.py); any
    other `dbfs:/x` (an experiment created with a DBFS artifact location) is `DATA_DIR/dbfs/x`.
    """
    path = posixpath.normpath("/" + artifact_uri.removeprefix("dbfs:").lstrip("/"))
    parts = path.strip("/").split("/")
    # ["databricks", "mlflow-tracking", <experiment>, <run>, ...]
    if path.startswith(ARTIFACT_ROOT.removeprefix("dbfs:") + "/") and len(parts) >= 4 and RUN_ID.match(parts[3]):
        return data_dir.joinpath("mlflow", "artifacts", parts[2], "Runs", *parts[3:])
    return data_dir.joinpath("dbfs", *parts)


def use_local_dbfs_artifacts(data_dir: Path) -> None:
    from mlflow.store.artifact.artifact_repository_registry import _artifact_repository_registry
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    def repository(artifact_uri: str, tracking_uri: str | None = None,
                   registry_uri: str | None = None) -> LocalArtifactRepository:
        return LocalArtifactRepository(str(local_artifact_path(data_dir, artifact_uri)))

    _artifact_repository_registry.register("dbfs", repository)  # type: ignore[no-untyped-call]


def serve(data_dir: Path, socket_path: str) -> None:
    exit_with_parent()
    from mlflow.server import constants

    (data_dir / "mlflow").mkdir(parents=True, exist_ok=True)
    uri = store_uri(data_dir)
    os.environ.update({
        constants.BACKEND_STORE_URI_ENV_VAR: uri,
        constants.REGISTRY_STORE_URI_ENV_VAR: uri,
        constants.ARTIFACT_ROOT_ENV_VAR: ARTIFACT_ROOT,
        # Reached only through the workspace, which has checked the token: any Host header it forwards is fine.
        "MLFLOW_SERVER_ALLOWED_HOSTS": "*",
    })
    import uvicorn
    from mlflow.server.handlers import initialize_backend_stores

    initialize_backend_stores(uri, uri, ARTIFACT_ROOT)  # creates and migrates the database before listening
    use_local_dbfs_artifacts(data_dir)
    from mlflow.server.fastapi_app import app

    uvicorn.run(app, uds=socket_path, log_level="warning", access_log=False, lifespan="off")


if __name__ == "__main__":
    serve(Path(sys.argv[1]), sys.argv[2])
