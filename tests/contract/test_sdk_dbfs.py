"""databricks-sdk's `w.dbfs` and remote `w.dbutils.fs` against the DBFS API, on the notebooks' path mapping."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import DatabricksError, InvalidParameterValue, NotFound, ResourceAlreadyExists

from aml_databricks.compute.driver.paths import PathMapper
from aml_databricks.workspace import LocalWorkspace
from tests.fixtures_storage import MB


def error_code(excinfo: pytest.ExceptionInfo[DatabricksError]) -> str | None:
    return excinfo.value.error_code


def test_upload_to_the_mount_lands_in_the_datastore_and_downloads_back(storage_client: WorkspaceClient,
                                                                       datastore: Path) -> None:
    payload = os.urandom(2 * MB + 12345)  # three add-block calls of at most 1 MB
    storage_client.dbfs.upload("/mnt/azuremlblobstore/azureml/run1/data.bin", io.BytesIO(payload))

    assert (datastore / "azureml/run1/data.bin").read_bytes() == payload
    assert storage_client.dbfs.download("dbfs:/mnt/azuremlblobstore/azureml/run1/data.bin").read() == payload
    status = storage_client.dbfs.get_status("/mnt/azuremlblobstore/azureml/run1/data.bin")
    assert (status.is_dir, status.file_size) == (False, len(payload))
    assert status.modification_time and status.modification_time > 0
    assert storage_client.dbfs.exists("/mnt/azuremlblobstore/azureml/run1")
    assert not storage_client.dbfs.exists("/mnt/azuremlblobstore/azureml/nothing")


def test_a_dbfs_file_is_where_a_notebook_opens_it(storage_workspace: LocalWorkspace,
                                                  storage_client: WorkspaceClient) -> None:
    storage_client.dbfs.put("/shared/hello.txt", contents=base64.b64encode(b"hi from the API").decode(),
                            overwrite=True)
    notebook_view = PathMapper.from_config(storage_workspace.fs_table()).python_local("/dbfs/shared/hello.txt")
    assert Path(notebook_view).read_bytes() == b"hi from the API"


def test_handle_api_and_its_limits(storage_client: WorkspaceClient) -> None:
    dbfs = storage_client.dbfs
    handle = dbfs.create("/handles/out.txt", overwrite=True).handle
    dbfs.add_block(handle, base64.b64encode(b"one,").decode())
    dbfs.add_block(handle, base64.b64encode(b"two").decode())
    assert not dbfs.exists("/handles/out.txt")  # not in place before close
    dbfs.close(handle)
    assert base64.b64decode(dbfs.read("/handles/out.txt").data or "") == b"one,two"

    with pytest.raises(DatabricksError) as too_big:
        dbfs.add_block(dbfs.create("/handles/big.bin").handle, base64.b64encode(b"x" * (MB + 1)).decode())
    assert error_code(too_big) == "MAX_BLOCK_SIZE_EXCEEDED"
    with pytest.raises(NotFound) as closed:
        dbfs.close(handle)
    assert error_code(closed) == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(ResourceAlreadyExists):
        dbfs.create("/handles/out.txt")  # overwrite defaults to false


def test_put_and_read_limits(storage_client: WorkspaceClient) -> None:
    dbfs = storage_client.dbfs
    with pytest.raises(DatabricksError) as too_big:
        dbfs.put("/limits/big.bin", contents=base64.b64encode(b"x" * (MB + 1)).decode())
    assert error_code(too_big) == "MAX_BLOCK_SIZE_EXCEEDED"
    dbfs.put("/limits/small.txt", contents=base64.b64encode(b"0123456789").decode())
    with pytest.raises(ResourceAlreadyExists):
        dbfs.put("/limits/small.txt", contents=base64.b64encode(b"again").decode())

    part = dbfs.read("/limits/small.txt", offset=3, length=4)
    assert (part.bytes_read, base64.b64decode(part.data or "")) == (4, b"3456")
    assert dbfs.read("/limits/small.txt", offset=100).bytes_read == 0
    with pytest.raises(DatabricksError) as too_much:
        dbfs.read("/limits/small.txt", length=MB + 1)
    assert error_code(too_much) == "MAX_READ_SIZE_EXCEEDED"
    with pytest.raises(InvalidParameterValue):
        dbfs.read("/limits", length=10)  # a directory
    with pytest.raises(NotFound) as missing:
        dbfs.read("/limits/none.txt")
    assert error_code(missing) == "RESOURCE_DOES_NOT_EXIST"


def test_mkdirs_list_move_delete(storage_client: WorkspaceClient) -> None:
    dbfs = storage_client.dbfs
    dbfs.mkdirs("/tree/a/b")
    dbfs.mkdirs("/tree/a/b")  # idempotent
    dbfs.put("/tree/a/b/f.txt", contents=base64.b64encode(b"f").decode())
    with pytest.raises(ResourceAlreadyExists):
        dbfs.mkdirs("/tree/a/b/f.txt/c")  # a file is in the way
    assert [(f.path, f.is_dir) for f in dbfs.list("/tree/a")] == [("/tree/a/b", True)]
    assert [f.path for f in dbfs.list("/tree", recursive=True)] == ["/tree/a/b/f.txt"]

    dbfs.move("/tree/a/b/f.txt", "/tree/g.txt")
    assert dbfs.exists("/tree/g.txt") and not dbfs.exists("/tree/a/b/f.txt")
    dbfs.move("/tree/g.txt", "/tree/a")  # into an existing directory
    assert dbfs.exists("/tree/a/g.txt")
    dbfs.put("/tree/h.txt", contents="")
    with pytest.raises(ResourceAlreadyExists):
        dbfs.move("/tree/h.txt", "/tree/a/g.txt")
    with pytest.raises(NotFound):
        dbfs.move("/tree/none.txt", "/tree/x.txt")

    with pytest.raises(DatabricksError) as not_empty:
        storage_client.api_client.do("POST", "/api/2.0/dbfs/delete", body={"path": "/tree/a"})
    assert error_code(not_empty) == "IO_ERROR"
    dbfs.delete("/tree", recursive=True)
    assert not dbfs.exists("/tree")
    dbfs.delete("/tree/never-was")  # a missing path is a success


def test_mounts_and_volumes_are_listed_where_databricks_shows_them(storage_client: WorkspaceClient) -> None:
    assert {"/mnt", "/Volumes"} <= {f.path for f in storage_client.dbfs.list("/")}
    assert "/mnt/azuremlblobstore" in [f.path for f in storage_client.dbfs.list("/mnt")]
    assert storage_client.dbfs.get_status("/mnt").is_dir
    assert storage_client.dbfs.get_status("/Volumes").is_dir  # listed under "/", so there even before a volume
    with pytest.raises(InvalidParameterValue):
        storage_client.dbfs.delete("/mnt/azuremlblobstore", recursive=True)


@pytest.mark.parametrize("path", ["/../../etc/passwd", "/data/../../x", "relative/x", "file:/etc/passwd",
                                  "/mnt/azuremlblobstore/../../secret"])
def test_paths_that_climb_out_are_refused(storage_client: WorkspaceClient, path: str) -> None:
    with pytest.raises(InvalidParameterValue):
        storage_client.dbfs.get_status(path)
    with pytest.raises(InvalidParameterValue):
        storage_client.dbfs.put(path, contents="", overwrite=True)


def test_a_symlink_out_of_the_root_is_refused(storage_workspace: LocalWorkspace, storage_client: WorkspaceClient,
                                              tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not yours")
    root = Path(storage_workspace.fs_table()["dbfs_root"])
    root.mkdir(parents=True, exist_ok=True)
    (root / "escape").symlink_to(outside)

    with pytest.raises(InvalidParameterValue):
        storage_client.dbfs.read("/escape/secret.txt")
    with pytest.raises(InvalidParameterValue):
        storage_client.dbfs.put("/escape/new.txt", contents="", overwrite=True)
    assert "/escape" not in [f.path for f in storage_client.dbfs.list("/")]
    with pytest.raises(InvalidParameterValue):
        storage_client.dbfs.delete("/escape", recursive=True)
    assert (outside / "secret.txt").read_text() == "not yours"
    assert not (outside / "new.txt").exists()


def test_remote_dbutils_fs(storage_client: WorkspaceClient, datastore: Path) -> None:
    fs = storage_client.dbutils.fs
    assert fs.mkdirs("/dbutils/in")
    assert fs.put("/dbutils/in/a.txt", "alpha", True)
    assert fs.head("dbfs:/dbutils/in/a.txt") == "alpha"
    assert [(f.name, f.size) for f in fs.ls("/dbutils/in")] == [("a.txt", 5)]
    assert fs.cp("/dbutils/in/a.txt", "/mnt/azuremlblobstore/copied.txt")
    assert (datastore / "copied.txt").read_text() == "alpha"
    assert fs.mv("/dbutils/in/a.txt", "/dbutils/moved.txt")
    assert fs.head("/dbutils/moved.txt") == "alpha"
    assert fs.rm("/dbutils", True)
    assert not storage_client.dbfs.exists("/dbutils")
