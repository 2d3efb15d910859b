"""The data dir lock: one owner at a time, a dead owner's leftovers taken over, the token never shown."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from aml_databricks.workspace.lock import (
    LOCK_FILE,
    SERVER_FILE,
    DataDirLock,
    WorkspaceInUseError,
    running_workspace,
)


def test_a_second_owner_is_refused_until_the_first_lets_go(tmp_path: Path) -> None:
    first, second = DataDirLock(tmp_path), DataDirLock(tmp_path)
    assert first.acquire()
    assert not second.acquire()
    first.release()
    assert second.acquire()
    second.release()


def test_the_published_workspace_is_found_while_its_owner_holds_the_lock(tmp_path: Path) -> None:
    owner = DataDirLock(tmp_path)
    assert running_workspace(tmp_path) is None
    owner.acquire()
    owner.publish("http://127.0.0.1:1234", "dapi-secret", spark=True)
    found = running_workspace(tmp_path)
    assert found is not None
    assert (found.host, found.pid, found.spark) == ("http://127.0.0.1:1234", os.getpid(), True)
    assert found.token == "dapi-secret"
    assert "dapi-secret" not in repr(found) and "dapi-secret" not in found.describe()
    assert (tmp_path / SERVER_FILE).stat().st_mode & 0o077 == 0  # holds the token: this user only
    owner.release()
    assert not (tmp_path / SERVER_FILE).exists()
    assert running_workspace(tmp_path) is None


def test_files_left_by_a_dead_owner_are_stale_and_taken_over(tmp_path: Path) -> None:
    # What kill -9 leaves: the lock file and server.json, but no lock (the kernel dropped it).
    (tmp_path / LOCK_FILE).write_text("999999\n")
    (tmp_path / SERVER_FILE).write_text(json.dumps({"host": "http://127.0.0.1:1", "pid": 999999, "token": "t"}))
    assert running_workspace(tmp_path) is None
    owner = DataDirLock(tmp_path)
    assert owner.acquire()
    owner.publish("http://127.0.0.1:2", "t2", spark=False)
    found = running_workspace(tmp_path)
    assert found is not None and found.host == "http://127.0.0.1:2"
    owner.release()


def test_an_owner_still_starting_is_named_by_its_pid(tmp_path: Path) -> None:
    owner = DataDirLock(tmp_path)
    owner.acquire()  # not published yet: it is still starting
    with pytest.raises(WorkspaceInUseError, match=f"in use by pid {os.getpid()}, which is still starting"):
        running_workspace(tmp_path, wait_s=0.1)
    owner.release()


def test_only_the_owner_publishes(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        DataDirLock(tmp_path).publish("http://x", "t", spark=True)
