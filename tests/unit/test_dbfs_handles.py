"""DBFS upload handles: idle ones expire after 10 minutes (a fake clock, no waiting), and paths stay confined."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from aml_databricks.workspace.dbfs import HANDLE_IDLE_SECONDS, Dbfs
from aml_databricks.workspace.errors import InvalidParameterValue, ResourceDoesNotExist
from aml_databricks.workspace.storage_paths import StoragePaths, normalize


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_dbfs(tmp_path: Path, clock: FakeClock) -> Dbfs:
    table = {"dbfs_root": str(tmp_path / "dbfs"), "volumes_root": str(tmp_path / "volumes"),
             "mounts": {"/mnt/store": str(tmp_path / "store")}}
    return Dbfs(StoragePaths(lambda: table), clock)


def test_an_idle_handle_expires_and_its_blocks_are_dropped(tmp_path: Path) -> None:
    clock = FakeClock()
    dbfs = make_dbfs(tmp_path, clock)
    handle = dbfs.create("/out.txt", False)["handle"]
    dbfs.add_block(handle, base64.b64encode(b"a").decode())
    clock.now += HANDLE_IDLE_SECONDS - 1
    dbfs.add_block(handle, base64.b64encode(b"b").decode())  # use keeps it alive
    clock.now += HANDLE_IDLE_SECONDS + 1
    with pytest.raises(ResourceDoesNotExist):
        dbfs.close(handle)
    assert not (tmp_path / "dbfs" / "out.txt").exists()
    assert list((tmp_path / "uploads").iterdir()) == []


def test_blocks_are_appended_in_order_on_close(tmp_path: Path) -> None:
    dbfs = make_dbfs(tmp_path, FakeClock())
    handle = dbfs.create("/mnt/store/a/out.txt", False)["handle"]
    for block in (b"one,", b"two"):
        dbfs.add_block(handle, base64.b64encode(block).decode())
    dbfs.close(handle)
    assert (tmp_path / "store" / "a" / "out.txt").read_bytes() == b"one,two"


@pytest.mark.parametrize(("raw", "expected"), [("/a//b/./c/", "/a/b/c"), ("/", "/"), ("//x", "/x")])
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize("raw", ["a/b", "/a/../b", "", None, 3, "/a\x00b", "s3://b/x"])
def test_normalize_refuses(raw: object) -> None:
    with pytest.raises(InvalidParameterValue):
        normalize(raw)
