"""databricks-sdk's `w.files` (the Files API on /Volumes) and `w.secrets.get_secret`."""

from __future__ import annotations

import base64
import io
import os
from datetime import timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import AlreadyExists, DatabricksError, InvalidParameterValue, NotFound
from databricks.sdk.service.jobs import NotebookTask, RunResultState, SubmitTask

from aml_databricks.compute.driver.paths import PathMapper
from aml_databricks.workspace import LocalWorkspace
from tests.fixtures_storage import MB
from tests.fixtures_workspace import upload_notebook

VOLUME = "/Volumes/main/default/landing"


def test_upload_download_metadata_delete(storage_workspace: LocalWorkspace, storage_client: WorkspaceClient) -> None:
    files = storage_client.files
    payload = os.urandom(3 * MB + 7)
    files.upload(f"{VOLUME}/in/data.bin", io.BytesIO(payload))

    on_disk = PathMapper.from_config(storage_workspace.fs_table()).python_local(f"{VOLUME}/in/data.bin")
    assert Path(on_disk).read_bytes() == payload  # where a notebook opens it
    download = files.download(f"{VOLUME}/in/data.bin")
    assert download.contents is not None and download.contents.read() == payload
    meta = files.get_metadata(f"{VOLUME}/in/data.bin")
    assert meta.content_length == len(payload)
    assert meta.last_modified and parsedate_to_datetime(meta.last_modified).timestamp() > 0

    with pytest.raises(AlreadyExists):
        files.upload(f"{VOLUME}/in/data.bin", io.BytesIO(b"other"), overwrite=False)
    files.upload(f"{VOLUME}/in/data.bin", io.BytesIO(b"other"), overwrite=True)
    assert files.get_metadata(f"{VOLUME}/in/data.bin").content_length == 5

    files.delete(f"{VOLUME}/in/data.bin")
    with pytest.raises(NotFound):
        files.get_metadata(f"{VOLUME}/in/data.bin")
    with pytest.raises(NotFound):
        files.delete(f"{VOLUME}/in/data.bin")


def test_range_reads(storage_workspace: LocalWorkspace, storage_client: WorkspaceClient) -> None:
    storage_client.files.upload(f"{VOLUME}/range.txt", io.BytesIO(b"0123456789"))
    answer = requests.get(f"{storage_workspace.host}/api/2.0/fs/files{VOLUME}/range.txt",
                          headers={"Authorization": f"Bearer {storage_workspace.token}", "Range": "bytes=2-5"},
                          timeout=10)
    assert answer.status_code == 206
    assert answer.content == b"2345"
    assert answer.headers["content-range"] == "bytes 2-5/10"


def test_directories_with_paging(storage_client: WorkspaceClient) -> None:
    files = storage_client.files
    folder = f"{VOLUME}/paged"
    files.create_directory(f"{folder}/sub")
    files.create_directory(f"{folder}/sub")  # idempotent
    for index in range(5):
        files.upload(f"{folder}/f{index}.txt", io.BytesIO(b"x" * index))
    files.get_directory_metadata(folder)

    first = storage_client.api_client.do("GET", f"/api/2.0/fs/directories{folder}", query={"page_size": 2})
    assert [e["name"] for e in first["contents"]] == ["f0.txt", "f1.txt"] and first["next_page_token"]
    entries = list(files.list_directory_contents(folder, page_size=2))  # the SDK follows next_page_token
    assert [(e.name, e.is_directory, e.file_size) for e in entries] == [
        ("f0.txt", False, 0), ("f1.txt", False, 1), ("f2.txt", False, 2), ("f3.txt", False, 3),
        ("f4.txt", False, 4), ("sub", True, None)]
    assert entries[0].path == f"{folder}/f0.txt"

    with pytest.raises(DatabricksError) as not_empty:
        files.delete_directory(folder)
    assert not_empty.value.error_code == "DIRECTORY_NOT_EMPTY"
    files.delete_directory(f"{folder}/sub")
    with pytest.raises(NotFound):
        files.get_directory_metadata(f"{folder}/sub")
    with pytest.raises(NotFound):
        list(files.list_directory_contents(f"{folder}/sub"))


def test_remote_dbutils_fs_on_a_volume(storage_client: WorkspaceClient) -> None:
    fs = storage_client.dbutils.fs
    assert fs.mkdirs(f"{VOLUME}/dbutils")
    assert fs.put(f"{VOLUME}/dbutils/a.txt", "alpha", True)
    assert fs.head(f"{VOLUME}/dbutils/a.txt") == "alpha"
    assert [f.name for f in fs.ls(f"{VOLUME}/dbutils")] == ["a.txt"]
    assert fs.cp(f"{VOLUME}/dbutils/a.txt", "/from-volume/a.txt")
    assert storage_client.dbfs.exists("/from-volume/a.txt")
    assert fs.rm(f"{VOLUME}/dbutils", True)
    assert not storage_client.dbfs.exists(f"{VOLUME}/dbutils")


@pytest.mark.parametrize("path", ["/Volumes/main/default/landing/../../../../etc/passwd", "/data/x.txt",
                                  "/Volumes/main/default"])
def test_files_api_paths_outside_a_volume_are_refused(storage_client: WorkspaceClient, path: str) -> None:
    with pytest.raises(InvalidParameterValue):
        storage_client.files.upload(path, io.BytesIO(b"no"))


def test_get_secret_with_the_workspace_token(storage_client: WorkspaceClient) -> None:
    storage_client.secrets.create_scope("files-test")
    storage_client.secrets.put_secret("files-test", "pw", string_value="s3cr3t")
    secret = storage_client.secrets.get_secret("files-test", "pw")
    assert (secret.key, base64.b64decode(secret.value or "")) == ("pw", b"s3cr3t")
    assert storage_client.dbutils.secrets.get("files-test", "pw") == "s3cr3t"
    with pytest.raises(NotFound):
        storage_client.secrets.get_secret("files-test", "missing")


@pytest.mark.parametrize(("headers", "status"), [({}, 401), ({"Authorization": "Bearer wrong"}, 403)])
def test_storage_calls_need_the_token(storage_workspace: LocalWorkspace, headers: dict[str, str], status: int) -> None:
    for method, url in [("GET", f"/api/2.0/fs/files{VOLUME}/x"), ("GET", "/api/2.0/dbfs/get-status?path=/"),
                        ("GET", "/api/2.0/secrets/get?scope=s&key=k")]:
        answer = requests.request(method, storage_workspace.host + url, headers=headers, timeout=10)
        assert answer.status_code == status, url


def test_a_run_uses_the_storage_apis_and_secrets_get_with_its_own_token(storage_client: WorkspaceClient,
                                                                         datastore: Path) -> None:
    storage_client.secrets.create_scope("run-scope")
    storage_client.secrets.put_secret("run-scope", "k", string_value="from-the-run")
    notebook = upload_notebook(storage_client, "/Shared/storage/run_token", (
        "import base64, json, urllib.request\n"
        "context = dbutils.notebook.entry_point.getDbutils().notebook().getContext()\n"
        "url, token = context.apiUrl().get(), context.apiToken().get()\n"
        "def call(path, body=None):\n"
        "    request = urllib.request.Request(url + path, data=json.dumps(body).encode() if body else None,\n"
        "                                     headers={'Authorization': 'Bearer ' + token})\n"
        "    return json.load(urllib.request.urlopen(request))\n"
        "call('/api/2.0/dbfs/put', {'path': '/mnt/azuremlblobstore/by-run.txt', 'overwrite': True,\n"
        "                           'contents': base64.b64encode(b'written by a run').decode()})\n"
        "secret = call('/api/2.0/secrets/get?scope=run-scope&key=k')['value']\n"
        "dbutils.notebook.exit(str(base64.b64decode(secret) == b'from-the-run'))\n"))
    run = storage_client.jobs.submit(run_name="storage", tasks=[SubmitTask(
        task_key="t", existing_cluster_id="local", notebook_task=NotebookTask(notebook_path=notebook))],
    ).result(timeout=timedelta(minutes=1))

    assert run.state is not None and run.state.result_state == RunResultState.SUCCESS
    assert run.tasks is not None and run.tasks[0].run_id is not None
    output = storage_client.jobs.get_run_output(run.tasks[0].run_id).notebook_output
    assert output is not None and output.result == "True"
    assert (datastore / "by-run.txt").read_bytes() == b"written by a run"
