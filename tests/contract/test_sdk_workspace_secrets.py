"""Workspace and Secrets APIs through databricks-sdk, unchanged."""

from __future__ import annotations

import base64
import json

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound, ResourceAlreadyExists, ResourceDoesNotExist
from databricks.sdk.service.workspace import ExportFormat, ImportFormat, Language, ObjectType

from aml_databricks.workspace import LocalWorkspace

SOURCE = "# Databricks notebook source\nx = 1\n\n# COMMAND ----------\n\nprint(x)\n"


def test_import_get_status_list_export(client: WorkspaceClient) -> None:
    client.workspace.import_("/Shared/etl/clean", content=base64.b64encode(SOURCE.encode()).decode(),
                             format=ImportFormat.SOURCE, language=Language.PYTHON, overwrite=True)
    status = client.workspace.get_status("/Shared/etl/clean")
    assert status.object_type == ObjectType.NOTEBOOK and status.language == Language.PYTHON
    assert client.workspace.get_status("/Shared/etl").object_type == ObjectType.DIRECTORY
    assert [o.path for o in client.workspace.list("/Shared/etl")] == ["/Shared/etl/clean"]

    exported = client.workspace.export("/Shared/etl/clean", format=ExportFormat.SOURCE)
    assert base64.b64decode(exported.content).decode() == SOURCE
    assert client.workspace.download("/Shared/etl/clean").read().decode() == SOURCE


def test_jupyter_round_trip(client: WorkspaceClient) -> None:
    client.workspace.upload("/Shared/nb", SOURCE.encode(), format=ImportFormat.SOURCE, language=Language.PYTHON,
                            overwrite=True)
    ipynb = json.loads(client.workspace.download("/Shared/nb", format=ExportFormat.JUPYTER).read())
    assert [c["cell_type"] for c in ipynb["cells"]] == ["code", "code"]

    client.workspace.upload("/Shared/from_jupyter.ipynb", json.dumps(ipynb).encode(), format=ImportFormat.JUPYTER,
                            overwrite=True)
    assert client.workspace.download("/Shared/from_jupyter").read().decode() == SOURCE


def test_auto_import_tells_notebooks_from_files(client: WorkspaceClient) -> None:
    client.workspace.upload("/Shared/auto/job.py", SOURCE.encode(), format=ImportFormat.AUTO, overwrite=True)
    client.workspace.upload("/Shared/auto/helper.py", b"def f():\n    return 1\n", format=ImportFormat.AUTO,
                            overwrite=True)
    kinds = {o.path: o.object_type for o in client.workspace.list("/Shared/auto")}
    assert kinds == {"/Shared/auto/job": ObjectType.NOTEBOOK, "/Shared/auto/helper.py": ObjectType.FILE}


def test_overwrite_mkdirs_delete(client: WorkspaceClient) -> None:
    client.workspace.mkdirs("/Shared/tree/a/b")
    client.workspace.mkdirs("/Shared/tree/a/b")  # idempotent
    client.workspace.upload("/Shared/tree/a/b/nb", SOURCE.encode(), format=ImportFormat.SOURCE,
                            language=Language.PYTHON)
    with pytest.raises(ResourceAlreadyExists):
        client.workspace.upload("/Shared/tree/a/b/nb", SOURCE.encode(), format=ImportFormat.SOURCE,
                                language=Language.PYTHON)
    with pytest.raises(Exception, match="not empty"):
        client.workspace.delete("/Shared/tree")
    client.workspace.delete("/Shared/tree", recursive=True)
    with pytest.raises(NotFound):
        client.workspace.get_status("/Shared/tree/a/b/nb")


def test_secret_values_are_never_listed(workspace: LocalWorkspace, client: WorkspaceClient) -> None:
    client.secrets.create_scope("kv")
    client.secrets.put_secret("kv", "adb-pat", string_value="dapi-super-secret")
    assert "kv" in [s.name for s in client.secrets.list_scopes()]
    assert [s.key for s in client.secrets.list_secrets("kv")] == ["adb-pat"]
    with pytest.raises(ResourceAlreadyExists):
        client.secrets.create_scope("kv")

    # No listing returns a value; the run-only endpoint refuses the user's token (secrets/get, Databricks'
    # own read call, answers the user: tests/contract/test_sdk_files.py).
    auth = {"Authorization": f"Bearer {workspace.token}"}
    response = requests.get(f"{workspace.host}/api/2.0/local/secrets/get", params={"scope": "kv", "key": "adb-pat"},
                            headers=auth)
    assert response.status_code == 403
    assert "dapi-super-secret" not in response.text

    client.secrets.delete_secret("kv", "adb-pat")
    client.secrets.delete_scope("kv")
    with pytest.raises(ResourceDoesNotExist):
        client.secrets.list_secrets("kv")


def test_current_user(client: WorkspaceClient) -> None:
    assert client.current_user.me().user_name
