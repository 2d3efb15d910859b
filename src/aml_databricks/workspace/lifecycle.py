"""The run state machine as data, and the `state`/`status` objects the API renders for it.

Every state name comes from databricks-sdk's enums, so a state Databricks adds later is one
table row here rather than a hand-copied list drifting out of date.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from databricks.sdk.service.jobs import (
    QueueDetails,
    QueueDetailsCodeCode,
    RunIf,
    RunLifeCycleState,
    RunLifecycleStateV2State,
    RunResultState,
    RunState,
    RunStatus,
    TerminationCodeCode,
    TerminationDetails,
    TerminationTypeType,
)

from aml_databricks.run_states import TERMINAL_LIFE_CYCLE_STATES

L = RunLifeCycleState
R = RunResultState

TERMINAL: frozenset[RunLifeCycleState] = frozenset(L(name) for name in TERMINAL_LIFE_CYCLE_STATES)
TERMINAL_NAMES: tuple[str, ...] = tuple(sorted(s.value for s in TERMINAL))

# Which lifecycle state may follow which. Cancel and failure can strike from any live state.
TRANSITIONS: dict[RunLifeCycleState, frozenset[RunLifeCycleState]] = {
    L.BLOCKED: frozenset({L.QUEUED, L.TERMINATED, L.SKIPPED, L.INTERNAL_ERROR}),  # waiting on upstream tasks
    L.QUEUED: frozenset({L.PENDING, L.TERMINATED, L.SKIPPED, L.INTERNAL_ERROR}),
    L.PENDING: frozenset({L.RUNNING, L.TERMINATING, L.TERMINATED, L.SKIPPED, L.INTERNAL_ERROR}),
    L.RUNNING: frozenset({L.TERMINATING, L.TERMINATED, L.INTERNAL_ERROR}),
    L.TERMINATING: frozenset({L.TERMINATED, L.INTERNAL_ERROR}),
    L.TERMINATED: frozenset(),
    L.SKIPPED: frozenset(),
    L.INTERNAL_ERROR: frozenset(),
}

# What the `status` object says about how a run ended.
TERMINATION: dict[RunResultState, tuple[TerminationCodeCode, TerminationTypeType]] = {
    R.SUCCESS: (TerminationCodeCode.SUCCESS, TerminationTypeType.SUCCESS),
    R.SUCCESS_WITH_FAILURES: (TerminationCodeCode.SUCCESS_WITH_FAILURES, TerminationTypeType.SUCCESS),
    R.FAILED: (TerminationCodeCode.RUN_EXECUTION_ERROR, TerminationTypeType.CLIENT_ERROR),
    R.TIMEDOUT: (TerminationCodeCode.RUN_EXECUTION_ERROR, TerminationTypeType.CLIENT_ERROR),
    R.CANCELED: (TerminationCodeCode.USER_CANCELED, TerminationTypeType.SUCCESS),
    R.UPSTREAM_FAILED: (TerminationCodeCode.RUN_EXECUTION_ERROR, TerminationTypeType.CLIENT_ERROR),
    R.UPSTREAM_CANCELED: (TerminationCodeCode.CANCELED, TerminationTypeType.SUCCESS),
    R.EXCLUDED: (TerminationCodeCode.SKIPPED, TerminationTypeType.SUCCESS),
    R.MAXIMUM_CONCURRENT_RUNS_REACHED: (TerminationCodeCode.MAX_CONCURRENT_RUNS_EXCEEDED,
                                        TerminationTypeType.CLIENT_ERROR),
    R.DISABLED: (TerminationCodeCode.DISABLED, TerminationTypeType.CLIENT_ERROR),
}

# runs/get's `status.state` (the newer view) for each classic lifecycle state.
STATUS_STATE: dict[RunLifeCycleState, RunLifecycleStateV2State] = {
    L.QUEUED: RunLifecycleStateV2State.QUEUED,
    L.PENDING: RunLifecycleStateV2State.PENDING,
    L.RUNNING: RunLifecycleStateV2State.RUNNING,
    L.TERMINATING: RunLifecycleStateV2State.TERMINATING,
    L.TERMINATED: RunLifecycleStateV2State.TERMINATED,
    L.SKIPPED: RunLifecycleStateV2State.TERMINATED,
    L.INTERNAL_ERROR: RunLifecycleStateV2State.TERMINATED,
    L.BLOCKED: RunLifecycleStateV2State.BLOCKED,
    L.WAITING_FOR_RETRY: RunLifecycleStateV2State.WAITING,
}


class IllegalTransition(RuntimeError):
    pass


def check_transition(current: RunLifeCycleState, new: RunLifeCycleState) -> None:
    if new != current and new not in TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(f"{current.value} -> {new.value}")


def render_state(
    life_cycle: RunLifeCycleState,
    result: RunResultState | None = None,
    message: str = "",
    *,
    termination_code: TerminationCodeCode | None = None,
    queued_reason: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `state` and `status` objects of a run or task run."""
    state = RunState(
        life_cycle_state=life_cycle,
        result_state=result,
        state_message=message,
        # the CLI concatenates result_state and state_message, so both are always strings when terminal
        user_cancelled_or_timedout=result in (R.CANCELED, R.TIMEDOUT),
    )
    status = RunStatus(state=STATUS_STATE[life_cycle])
    if life_cycle == L.QUEUED:
        status.queue_details = QueueDetails(
            code=QueueDetailsCodeCode.ACTIVE_RUNS_LIMIT_REACHED,
            message=queued_reason or "Waiting for a free slot on the local workspace.",
        )
    if life_cycle == L.INTERNAL_ERROR:
        status.termination_details = TerminationDetails(
            code=termination_code or TerminationCodeCode.INTERNAL_ERROR,
            type=TerminationTypeType.INTERNAL_ERROR,
            message=message,
        )
    elif life_cycle == L.SKIPPED and result is None:
        status.termination_details = TerminationDetails(
            code=TerminationCodeCode.SKIPPED, type=TerminationTypeType.SUCCESS, message=message
        )
    elif result is not None:
        code, kind = TERMINATION.get(result, (TerminationCodeCode.RUN_EXECUTION_ERROR,
                                              TerminationTypeType.CLIENT_ERROR))
        if termination_code is not None:
            code = termination_code
        status.termination_details = TerminationDetails(code=code, type=kind, message=message)
    return state.as_dict(), status.as_dict()


# A dependent task runs when its `run_if` condition holds over its upstream results.
def run_if_holds(run_if: RunIf, upstream: Iterable[RunResultState | None]) -> bool:
    results = list(upstream)
    succeeded = [r == R.SUCCESS for r in results]
    failed = [r in (R.FAILED, R.TIMEDOUT, R.UPSTREAM_FAILED) for r in results]
    rules = {
        RunIf.ALL_SUCCESS: all(succeeded),
        RunIf.ALL_DONE: True,
        RunIf.NONE_FAILED: not any(failed),
        RunIf.AT_LEAST_ONE_SUCCESS: any(succeeded),
        RunIf.ALL_FAILED: all(failed),
        RunIf.AT_LEAST_ONE_FAILED: any(failed),
    }
    return rules[run_if]


def skipped_result(upstream: Iterable[RunResultState | None]) -> RunResultState:
    """Why a task whose condition failed was not run."""
    results = list(upstream)
    if any(r in (R.CANCELED, R.UPSTREAM_CANCELED) for r in results):
        return R.UPSTREAM_CANCELED
    if any(r in (R.FAILED, R.TIMEDOUT, R.UPSTREAM_FAILED) for r in results):
        return R.UPSTREAM_FAILED
    return R.EXCLUDED


def overall_result(task_results: Iterable[RunResultState | None]) -> RunResultState:
    """A multi-task run's result from its tasks' results."""
    results = list(task_results)
    if any(r == R.TIMEDOUT for r in results):
        return R.TIMEDOUT
    if any(r in (R.CANCELED, R.UPSTREAM_CANCELED) for r in results):
        return R.CANCELED
    if any(r in (R.FAILED, R.UPSTREAM_FAILED, None) for r in results):
        return R.FAILED
    return R.SUCCESS
