"""The run state machine's rules, on their own."""

from __future__ import annotations

import itertools

import pytest
from databricks.sdk.service.jobs import RunIf, RunLifeCycleState, RunResultState

from aml_databricks.workspace import lifecycle

L, R = RunLifeCycleState, RunResultState


def test_every_sdk_lifecycle_state_has_a_row_or_a_status() -> None:
    for state in RunLifeCycleState:
        assert state in lifecycle.STATUS_STATE, state


def test_terminal_states_have_no_way_out() -> None:
    for state in lifecycle.TERMINAL:
        for other in RunLifeCycleState:
            if other != state:
                with pytest.raises(lifecycle.IllegalTransition):
                    lifecycle.check_transition(state, other)


def test_forward_path_is_legal_and_backwards_is_not() -> None:
    path = [L.BLOCKED, L.QUEUED, L.PENDING, L.RUNNING, L.TERMINATING, L.TERMINATED]
    for current, new in itertools.pairwise(path):
        lifecycle.check_transition(current, new)
    with pytest.raises(lifecycle.IllegalTransition):
        lifecycle.check_transition(L.RUNNING, L.PENDING)


def test_rendered_states_carry_termination_details() -> None:
    state, status = lifecycle.render_state(L.TERMINATED, R.CANCELED, "Run cancelled.")
    assert state == {"life_cycle_state": "TERMINATED", "result_state": "CANCELED",
                     "state_message": "Run cancelled.", "user_cancelled_or_timedout": True}
    assert status["termination_details"]["code"] == "USER_CANCELED"
    _, error = lifecycle.render_state(L.INTERNAL_ERROR, None, "restarted")
    assert error["termination_details"] == {"code": "INTERNAL_ERROR", "type": "INTERNAL_ERROR",
                                            "message": "restarted"}
    _, queued = lifecycle.render_state(L.QUEUED)
    assert queued["queue_details"]["code"] == "ACTIVE_RUNS_LIMIT_REACHED"


@pytest.mark.parametrize(("run_if", "upstream", "holds"), [
    (RunIf.ALL_SUCCESS, [R.SUCCESS, R.SUCCESS], True),
    (RunIf.ALL_SUCCESS, [R.SUCCESS, R.FAILED], False),
    (RunIf.ALL_DONE, [R.FAILED, R.CANCELED], True),
    (RunIf.NONE_FAILED, [R.SUCCESS, R.EXCLUDED], True),
    (RunIf.NONE_FAILED, [R.SUCCESS, R.UPSTREAM_FAILED], False),
    (RunIf.AT_LEAST_ONE_SUCCESS, [R.FAILED, R.SUCCESS], True),
    (RunIf.ALL_FAILED, [R.FAILED, R.TIMEDOUT], True),
    (RunIf.AT_LEAST_ONE_FAILED, [R.SUCCESS, R.SUCCESS], False),
])
def test_run_if(run_if: RunIf, upstream: list[RunResultState], holds: bool) -> None:
    assert lifecycle.run_if_holds(run_if, upstream) is holds


def test_why_a_task_was_skipped_and_how_the_run_ended() -> None:
    assert lifecycle.skipped_result([R.FAILED]) == R.UPSTREAM_FAILED
    assert lifecycle.skipped_result([R.CANCELED, R.FAILED]) == R.UPSTREAM_CANCELED
    assert lifecycle.skipped_result([R.SUCCESS]) == R.EXCLUDED
    assert lifecycle.overall_result([R.SUCCESS, R.EXCLUDED]) == R.SUCCESS
    assert lifecycle.overall_result([R.SUCCESS, R.UPSTREAM_FAILED]) == R.FAILED
    assert lifecycle.overall_result([R.TIMEDOUT, R.CANCELED]) == R.TIMEDOUT
