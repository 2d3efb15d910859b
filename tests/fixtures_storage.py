"""A live local workspace with the Azure ML datastore mounted, for the DBFS and Files API tests (no Spark)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient

from aml_databricks.workspace import LocalWorkspace

MB = 1024 * 1024


@pytest.fixture(scope="session")
def datastore(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("datastore")


@pytest.fixture(scope="session")
def storage_workspace(tmp_path_factory: pytest.TempPathFactory, datastore: Path) -> Iterator[LocalWorkspace]:
    with LocalWorkspace(tmp_path_factory.mktemp("storage-ws"), spark=False,
                        mounts={"/mnt/azuremlblobstore": datastore}) as ws:
        yield ws


@pytest.fixture(scope="session")
def storage_client(storage_workspace: LocalWorkspace) -> WorkspaceClient:
    return storage_workspace.client
