"""The legacy databricks-cli 0.18 DbfsApi (what `databricks fs cp/ls/mv/rm` run): multipart put, 1 MB reads."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
from requests import HTTPError

from aml_databricks.workspace import LocalWorkspace
from tests.fixtures_storage import MB

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from databricks_cli.dbfs.api import DbfsApi
    from databricks_cli.dbfs.dbfs_path import DbfsPath
    from databricks_cli.sdk import ApiClient


@pytest.fixture
def dbfs_api(storage_workspace: LocalWorkspace) -> DbfsApi:
    api_client = ApiClient(host=storage_workspace.host, token=storage_workspace.token)
    api_client.url = f"{storage_workspace.host}/api/"  # the CLI drops the port from the host (databricks-cli #578)
    return DbfsApi(api_client)


def test_cli_copies_a_folder_up_and_back(dbfs_api: DbfsApi, datastore: Path, tmp_path: Path) -> None:
    local = tmp_path / "up"
    (local / "nested").mkdir(parents=True)
    big = os.urandom(2 * MB + 3)  # one multipart put up, three 1 MB reads down
    (local / "nested" / "big.bin").write_bytes(big)
    (local / "small.txt").write_text("small")

    dbfs_api.cp(recursive=True, overwrite=True, src=str(local), dst="dbfs:/mnt/azuremlblobstore/cli")
    assert (datastore / "cli" / "nested" / "big.bin").read_bytes() == big
    listed = dbfs_api.list_files(DbfsPath("dbfs:/mnt/azuremlblobstore/cli"))
    assert sorted((f.dbfs_path.absolute_path, f.is_dir) for f in listed) == [
        ("dbfs:/mnt/azuremlblobstore/cli/nested", True), ("dbfs:/mnt/azuremlblobstore/cli/small.txt", False)]

    down = tmp_path / "down"
    dbfs_api.cp(recursive=True, overwrite=True, src="dbfs:/mnt/azuremlblobstore/cli", dst=str(down))
    assert (down / "nested" / "big.bin").read_bytes() == big

    dbfs_api.move(DbfsPath("dbfs:/mnt/azuremlblobstore/cli/small.txt"), DbfsPath("dbfs:/cli-moved.txt"))
    assert dbfs_api.file_exists(DbfsPath("dbfs:/cli-moved.txt"))
    assert not dbfs_api.file_exists(DbfsPath("dbfs:/mnt/azuremlblobstore/cli/small.txt"))
    dbfs_api.delete(DbfsPath("dbfs:/mnt/azuremlblobstore/cli"), recursive=True)
    assert not (datastore / "cli").exists()


def test_cli_put_refuses_to_overwrite(dbfs_api: DbfsApi, tmp_path: Path) -> None:
    source = tmp_path / "f.txt"
    source.write_text("one")
    dbfs_api.put_file(str(source), DbfsPath("dbfs:/cli/f.txt"), overwrite=False)
    with pytest.raises(HTTPError) as exists:
        dbfs_api.put_file(str(source), DbfsPath("dbfs:/cli/f.txt"), overwrite=False)
    assert exists.value.response.json()["error_code"] == "RESOURCE_ALREADY_EXISTS"
    source.write_text("two")
    dbfs_api.put_file(str(source), DbfsPath("dbfs:/cli/f.txt"), overwrite=True)
    dbfs_api.get_file(DbfsPath("dbfs:/cli/f.txt"), str(tmp_path / "back.txt"), overwrite=True)
    assert (tmp_path / "back.txt").read_text() == "two"
