"""The warden's choice of what to end: the sessions it was told, what is left of them, never a stranger's."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aml_databricks.compute.host import procs, warden

pytestmark = [pytest.mark.subprocess, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")]


def session_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])


def test_a_session_whose_leader_ended_is_still_ended_and_a_reused_id_is_left_alone() -> None:
    # A shell that leaves a background job and exits: the job stays in the shell's session, reparented.
    shell = subprocess.Popen(["sh", "-c", "sleep 300 & echo $!"], stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
    assert shell.stdout is not None
    left = int(shell.stdout.readline())
    shell.wait()
    stranger = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        assert session_of(left) == shell.pid
        sessions: dict[int, str | None] = {shell.pid: "1", stranger.pid: "1"}  # "1": not its start time
        assert warden._ours(sessions, warden._members()) == {shell.pid}  # leader gone: members are ours

        warden._end(sessions)

        deadline = time.monotonic() + 5
        while (fields := warden._stat(left)) is not None and fields[0] != "Z":
            assert time.monotonic() < deadline, "the background job outlived its session's end"
            time.sleep(0.05)
        assert stranger.poll() is None, "a session led by a process started later was ended"
    finally:
        procs.send(left, signal.SIGKILL)
        stranger.kill()
        stranger.wait()
