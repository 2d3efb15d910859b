"""What only a run in flight has: its threads' flags, its executions, why it is being stopped.

None of it is persisted: the records (runs.py) are what a run is; these wrap them while the
scheduler drives them, and are dropped when the run ends.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from databricks.sdk.service.jobs import RunResultState

from aml_databricks.compute.executor import Execution
from aml_databricks.workspace.runs import Run, TaskRun


@dataclass
class TaskFlight:
    """A task run in flight: its record and what only a live task run has."""

    record: TaskRun
    done: threading.Event = field(default_factory=threading.Event)
    execution: Execution | None = None
    awaiting: bool = False  # between the execution's start and its outcome: a timeout may still strike
    stop: tuple[RunResultState, str] | None = None  # why it is being stopped, once it is

    @property
    def settings(self) -> dict[str, Any]:
        return self.record.settings


class RunFlight:
    """A run in flight: its record, its task runs, and the flags that stop it."""

    def __init__(self, record: Run, spec: dict[str, Any], tasks: dict[str, TaskFlight]) -> None:
        self.record = record
        self.spec = spec
        self.tasks = tasks
        self.lock = threading.RLock()
        self.stop_reason: RunResultState | None = None  # CANCELED or TIMEDOUT once asked to stop
        self.stop_message = ""
        self.internal_error: str | None = None
        self.nested = False  # started by dbutils.notebook.run inside a run in flight: takes no task slot

    @property
    def stopping(self) -> bool:
        return self.stop_reason is not None or self.internal_error is not None
