"""After a crash: end what the previous server left in flight, runs and driver processes alike."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from databricks.sdk.service.jobs import RunLifeCycleState

from aml_databricks.workspace import lifecycle
from aml_databricks.workspace.runs import Progress, Run
from aml_databricks.workspace.store import Store

RESTART_MESSAGE = "The local workspace restarted while this run was in flight."


def end_unfinished_runs(store: Store, runs_dir: Path, now_ms: int) -> int:
    """Mark every unfinished run and task run INTERNAL_ERROR and kill their drivers; returns how many runs."""
    count = 0
    for record in store.unfinished_runs(lifecycle.TERMINAL_NAMES):
        end_orphaned_driver(runs_dir / str(record.run_id))
        record.progress = Progress(RunLifeCycleState.INTERNAL_ERROR, None, RESTART_MESSAGE)
        record.timing.end_time = record.timing.end_time or now_ms
        store.save_run(record)
        count += isinstance(record, Run)  # count runs, not their task runs
    return count


def end_orphaned_driver(run_dir: Path) -> None:
    """Kill the driver a crashed workspace left behind (its pid file names its process group)."""
    try:
        pid = int((run_dir / "driver.pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"aml_databricks.compute.driver" in cmdline and str(run_dir).encode() in cmdline:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
