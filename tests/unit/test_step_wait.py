"""The wait loop and poll policy, with a fake clock: nothing here sleeps."""

from __future__ import annotations

import itertools
import statistics
import threading
from typing import Any

import pytest

from aml_databricks.step.wait import EndReason, PollPolicy, RunObservation, StateLog, wait_until_terminal


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.stop_at: float | None = None  # simulate a signal arriving at this time

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000 + self.now

    def sleep(self, seconds: float, stop: threading.Event) -> bool:
        self.sleeps.append(seconds)
        if self.stop_at is not None and self.now + seconds >= self.stop_at:
            self.now = self.stop_at
            stop.set()
            return True
        self.now += seconds
        return stop.is_set()


def body(state: str, result: str | None = None, message: str = "", **extra: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"life_cycle_state": state, "state_message": message}
    if result:
        s["result_state"] = result
    return {"run_id": 1, "state": s, **extra}


class ScriptedRun:
    """runs/get answers as a function of the clock: `[(until_seconds, body), ...]`."""

    def __init__(self, clock: FakeClock, script: list[tuple[float, dict[str, Any]]]) -> None:
        self.clock, self.script, self.calls = clock, script, 0

    def __call__(self) -> RunObservation:
        self.calls += 1
        for until, answer in self.script:
            if self.clock.now < until:
                return RunObservation.from_response(answer)
        return RunObservation.from_response(self.script[-1][1])


def run_wait(script: list[tuple[float, dict[str, Any]]], **kwargs: Any):  # type: ignore[no-untyped-def]
    clock = kwargs.pop("clock", FakeClock())
    stop = kwargs.pop("stop", threading.Event())
    poll = ScriptedRun(clock, script)
    outcome = wait_until_terminal(poll, clock=clock, stop=stop, policy=kwargs.pop("policy", PollPolicy()), **kwargs)
    return outcome, clock, poll


def test_policy_starts_fast_and_never_exceeds_the_cap() -> None:
    policy = PollPolicy(max_interval=10)
    assert policy.interval(0) == policy.min_interval < 1.0
    assert policy.interval(2) < 1.0
    intervals = [policy.interval(t) for t in range(0, 20000, 7)]
    assert max(intervals) == 10
    assert intervals == sorted(intervals)
    assert PollPolicy(max_interval=3).interval(10_000) == 3


def simulate(policy: PollPolicy, length: float) -> tuple[float, int]:
    """(detection delay, runs/get calls) for a run ending at `length`, on the fake clock."""
    outcome, clock, poll = run_wait([(length, body("RUNNING")), (1e9, body("TERMINATED", "SUCCESS"))], policy=policy)
    assert outcome.reason is EndReason.TERMINAL
    return clock.now - length, poll.calls


@pytest.mark.parametrize("length", [2.0, 20.0, 120.0, 600.0])
def test_poll_efficiency_stays_within_one(length: float) -> None:
    """The benchmark's measure, delay x calls / length, averaged over run ends spread across a
    window (a single end time only measures where it falls between two polls)."""
    policy = PollPolicy()
    samples = [simulate(policy, length * (1 + k / 400)) for k in range(200)]
    delays = sorted(d for d, _ in samples)
    calls = statistics.mean(c for _, c in samples)
    assert statistics.mean(delays) * calls / length <= 1.0
    if length == 2.0:
        assert statistics.median(delays) <= 0.5


def test_no_pause_above_the_cap() -> None:
    clock = FakeClock()
    run_wait([(5000.0, body("RUNNING")), (1e9, body("TERMINATED"))], clock=clock, policy=PollPolicy(max_interval=3))
    assert max(clock.sleeps) == 3


def test_every_known_nonterminal_state_and_unknown_ones_keep_waiting() -> None:
    states = ["QUEUED", "PENDING", "BLOCKED", "WAITING_FOR_RETRY", "RUNNING", "TERMINATING", "NEW_STATE_2027"]
    script = [(float(i + 1), body(s)) for i, s in enumerate(states)] + [(1e9, body("TERMINATED", "FAILED"))]
    outcome, clock, _ = run_wait(script)
    assert outcome.reason is EndReason.TERMINAL and outcome.last.result_state == "FAILED"
    assert clock.now >= len(states)


@pytest.mark.parametrize("terminal", ["TERMINATED", "SKIPPED", "INTERNAL_ERROR"])
def test_terminal_states_end_the_wait(terminal: str) -> None:
    outcome, _, _ = run_wait([(1.0, body("RUNNING")), (1e9, body(terminal))])
    assert outcome.reason is EndReason.TERMINAL and outcome.last.life_cycle_state == terminal


def test_unknown_state_with_terminated_status_ends_the_wait() -> None:
    answer = body("SOMETHING_NEW") | {"status": {"state": "TERMINATED"}}
    outcome, _, _ = run_wait([(1e9, answer)])
    assert outcome.reason is EndReason.TERMINAL


def test_stop_interrupts_the_sleep_at_once() -> None:
    clock = FakeClock()
    clock.stop_at = 42.0
    outcome, clock, _ = run_wait([(1e9, body("RUNNING"))], clock=clock)
    assert outcome.reason is EndReason.STOPPED and clock.now == 42.0


def test_stop_already_set_returns_after_one_poll() -> None:
    stop = threading.Event()
    stop.set()
    outcome, clock, poll = run_wait([(1e9, body("RUNNING"))], stop=stop)
    assert outcome.reason is EndReason.STOPPED and poll.calls == 1 and clock.now == 0


def test_deadline_is_met_exactly() -> None:
    outcome, clock, _ = run_wait([(1e9, body("RUNNING"))], deadline=30.0)
    assert outcome.reason is EndReason.DEADLINE and clock.now == pytest.approx(30.0)


def test_started_at_gives_a_reattached_wait_the_runs_age() -> None:
    clock = FakeClock()
    clock.now = 1000.0
    outcome, clock, _ = run_wait(
        [(1001.0, body("RUNNING")), (1e9, body("TERMINATED", "SUCCESS"))], clock=clock, started_at=400.0
    )
    assert clock.sleeps[0] == PollPolicy().interval(600.0)
    assert outcome.elapsed >= 600


def test_state_log_one_line_per_change_with_elapsed_and_live_line() -> None:
    lines: list[str] = []
    live: list[str] = []
    log = StateLog(lines.append, live.append)
    for elapsed, answer in [
        (0.1, body("PENDING")),
        (0.5, body("PENDING")),
        (1.0, body("RUNNING")),
        (2.0, body("BRAND_NEW")),
        (3.0, body("TERMINATED", "SUCCESS")),
    ]:
        log(RunObservation.from_response(answer), elapsed)
    assert lines == [
        "[    0.1s] PENDING",
        "[    1.0s] RUNNING",
        "[    2.0s] BRAND_NEW (unknown state: still waiting)",
        "[    3.0s] TERMINATED/SUCCESS",
    ]
    assert live == ["[    0.5s] PENDING …"]


def test_observation_keeps_unknown_state_name_the_sdk_drops() -> None:
    obs = RunObservation.from_response(body("BRAND_NEW"))
    assert obs.run.state is not None and obs.run.state.life_cycle_state is None  # the SDK's view
    assert obs.life_cycle_state == "BRAND_NEW" and not obs.terminal


def test_a_first_observation_saves_the_immediate_poll() -> None:
    clock = FakeClock()
    poll = ScriptedRun(clock, [(1.0, body("RUNNING")), (1e9, body("TERMINATED", "SUCCESS"))])
    first = RunObservation.from_response(body("PENDING"))
    outcome = wait_until_terminal(poll, clock=clock, stop=threading.Event(), policy=PollPolicy(), first=first)
    assert outcome.reason is EndReason.TERMINAL
    assert poll.calls == 2 and clock.sleeps[0] == PollPolicy().min_interval  # not polled at t=0


def test_ticks_keep_the_elapsed_time_moving_between_polls_without_extra_polls() -> None:
    """On a TTY the live line counts up every second even while the poll interval is several
    seconds long; the polls themselves stay what the policy says."""
    script = [(60.0, body("RUNNING")), (1e9, body("TERMINATED", "SUCCESS"))]
    ticks: list[float] = []
    _, plain_clock, plain_poll = run_wait(script)
    outcome, clock, poll = run_wait(script, on_tick=lambda _obs, elapsed: ticks.append(elapsed))
    assert outcome.reason is EndReason.TERMINAL
    assert poll.calls == plain_poll.calls and clock.now == pytest.approx(plain_clock.now)
    assert ticks == sorted(ticks) and len(ticks) >= 30  # about one a second over a minute of polls
    assert max(b - a for a, b in itertools.pairwise(ticks)) <= 2.0  # a poll may fall between two


def test_ticks_stop_at_once_on_a_stop() -> None:
    clock = FakeClock()
    clock.stop_at = 50.5
    ticks: list[float] = []
    outcome, clock, _ = run_wait([(1e9, body("RUNNING"))], clock=clock, on_tick=lambda _o, e: ticks.append(e))
    assert outcome.reason is EndReason.STOPPED and clock.now == 50.5
    assert ticks and max(ticks) < 50.5


def test_state_log_since_continues_an_earlier_timeline() -> None:
    lines: list[str] = []
    StateLog(lines.append, since=42.0)(RunObservation.from_response(body("TERMINATING")), 0.5)
    assert lines == ["[   42.5s] TERMINATING"]
