"""Waiting for a run: the poll policy, and a loop whose clock and stop signal are injected.

The SDK's own waiter sleeps uninterruptibly and raises on INTERNAL_ERROR, so the step has its own:
`wait_until_terminal(poll, clock, stop, policy)` polls, sleeps with `clock.sleep(seconds, stop)`
(which returns early when `stop` is set, e.g. by SIGTERM) and returns why it ended. Tests pass a
fake clock whose sleep only advances a counter, so no test ever sleeps.

Poll policy: the interval grows with the run's age as `coefficient * elapsed ** exponent`, floored
at `min_interval` and capped at `max_interval`. For an interval c·t^p, a run of length T costs about
T^(1-p) / (c(1-p)) polls and is seen c·T^p / 2 late on average, so polls x delay / T tends to
1 / (2(1-p)) whatever T is: 0.71 for p = 0.3 (a fixed interval gives 0.5 but needs many more calls for
long runs; the SDK's linear backoff gives more than 1 on short runs). The defaults see a 2 s run
about 0.35 s late (median), poll every ~4 s at 10 min and reach the 10 s cap after about 3 hours.

Long-poll: the time a poll itself took counts toward the pause after it. The step asks runs/get to
hold its answer until the run changes (`wait_seconds`, an extension the local workspace offers; a
real Databricks ignores the parameter and answers at once). A held answer has used up the pause, so
the next call goes out at once: the end of a run is seen as it happens, with one call per hold
(about 10 s) instead of one per interval. Against a server that ignores it nothing changes.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from aml_databricks.run_states import TERMINAL_LIFE_CYCLE_STATES

if TYPE_CHECKING:
    from databricks.sdk.service.jobs import Run, RunLifeCycleState

TICK_S = 1.0  # how often a live line on a TTY is redrawn between polls


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    def sleep(self, seconds: float, stop: threading.Event) -> bool:
        """Sleep up to `seconds`; return True when `stop` was set (early or already)."""
        ...


class RealClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float, stop: threading.Event) -> bool:
        return stop.wait(max(0.0, seconds))


@dataclass(frozen=True)
class PollPolicy:
    min_interval: float = 0.8
    coefficient: float = 0.6
    exponent: float = 0.3
    max_interval: float = 10.0

    def interval(self, elapsed: float) -> float:
        grown = self.coefficient * math.pow(max(0.0, elapsed), self.exponent)
        return min(self.max_interval, max(self.min_interval, grown))


@dataclass(frozen=True)
class RunObservation:
    """One `runs/get` answer. `life_cycle_state` is the raw name, so a state this SDK version does
    not know is still shown by name (the SDK's enum parser turns it into None)."""

    run: Run
    life_cycle_state: str
    result_state: str | None
    state_message: str

    @classmethod
    def from_response(cls, body: dict[str, Any]) -> RunObservation:
        # Imported at the first answer, after the submit: the module (with service.compute, which it
        # imports) is the heaviest part of the SDK, and nothing before the submit needs it.
        from databricks.sdk.service.jobs import Run

        state = body.get("state") or {}
        lifecycle = state.get("life_cycle_state") or (body.get("status") or {}).get("state") or "UNKNOWN"
        return cls(
            run=Run.from_dict(body),
            life_cycle_state=str(lifecycle),
            result_state=state.get("result_state"),
            state_message=str(state.get("state_message") or ""),
        )

    @property
    def known_state(self) -> RunLifeCycleState | None:
        from databricks.sdk.service.jobs import RunLifeCycleState

        return _enum_or_none(RunLifeCycleState, self.life_cycle_state)

    @property
    def terminal(self) -> bool:
        """The SDK documents three states as terminal; every other state, known or not, means
        "keep waiting", unless the newer `status` field says the run is over."""
        from databricks.sdk.service.jobs import RunLifecycleStateV2State

        if self.known_state is not None:
            return self.known_state.value in TERMINAL_LIFE_CYCLE_STATES
        status = self.run.status
        return status is not None and status.state == RunLifecycleStateV2State.TERMINATED

    @property
    def label(self) -> str:
        return f"{self.life_cycle_state}/{self.result_state}" if self.result_state else self.life_cycle_state


E = TypeVar("E", bound=Enum)


def _enum_or_none(enum: type[E], value: str) -> E | None:
    try:
        return enum(value)
    except ValueError:
        return None


class EndReason(Enum):
    TERMINAL = "terminal"
    STOPPED = "stopped"
    DEADLINE = "deadline"


class Observation(Protocol):
    @property
    def terminal(self) -> bool: ...


ObsT = TypeVar("ObsT", bound=Observation)


@dataclass(frozen=True)
class WaitOutcome(Generic[ObsT]):
    last: ObsT
    reason: EndReason
    elapsed: float


def wait_until_terminal(
    poll: Callable[[], ObsT],
    *,
    clock: Clock,
    stop: threading.Event,
    policy: PollPolicy,
    deadline: float | None = None,
    on_poll: Callable[[ObsT, float], None] | None = None,
    started_at: float | None = None,
    first: ObsT | None = None,
    on_tick: Callable[[ObsT, float], None] | None = None,
) -> WaitOutcome[ObsT]:
    """Poll until a terminal observation, `stop`, or `deadline` seconds after `started_at`.

    Elapsed time counts from `started_at` (the submit), so the policy sees the run's age even when
    the step was restarted and reattached. `first` is an observation the caller already made (the
    one right after submit), used instead of polling again at once. `on_tick`, when given, is
    called about every `TICK_S` during the pauses with the last observation and the elapsed time
    (a live line on a TTY that keeps counting between polls).
    """
    start = clock.monotonic() if started_at is None else started_at
    pending = first
    while True:
        asked = clock.monotonic()
        observation = pending if pending is not None else poll()
        pending = None
        elapsed = clock.monotonic() - start
        spent = clock.monotonic() - asked  # a long-poll's hold counts as waiting
        if on_poll is not None:
            on_poll(observation, elapsed)
        if observation.terminal:
            return WaitOutcome(observation, EndReason.TERMINAL, elapsed)
        if stop.is_set():
            return WaitOutcome(observation, EndReason.STOPPED, elapsed)
        pause = max(0.0, policy.interval(elapsed) - spent)
        if deadline is not None:
            if elapsed >= deadline:
                return WaitOutcome(observation, EndReason.DEADLINE, elapsed)
            pause = min(pause, deadline - elapsed)
        if on_tick is None:
            stopped = clock.sleep(pause, stop)
        else:
            stopped = _sleep_ticking(clock, pause, stop, functools.partial(_tick, on_tick, observation, clock, start))
        if stopped:
            return WaitOutcome(observation, EndReason.STOPPED, clock.monotonic() - start)


def _tick(on_tick: Callable[[ObsT, float], None], observation: ObsT, clock: Clock, start: float) -> None:
    on_tick(observation, clock.monotonic() - start)


def _sleep_ticking(clock: Clock, seconds: float, stop: threading.Event, tick: Callable[[], None]) -> bool:
    """`clock.sleep(seconds, stop)` in steps of at most TICK_S, calling `tick` between them."""
    end = clock.monotonic() + seconds
    while True:
        if clock.sleep(min(TICK_S, max(0.0, end - clock.monotonic())), stop):
            return True
        if clock.monotonic() >= end:
            return False
        tick()


class StateLog:
    """One log line per state change, with the time since submit; on a TTY also a live line that
    is rewritten in place (Azure ML's log viewer is not a TTY, so it only gets the change lines)."""

    def __init__(
        self, emit: Callable[[str], None], live: Callable[[str], None] | None = None, *, since: float = 0.0
    ) -> None:
        self._emit = emit
        self._live = live
        self._since = since  # added to the elapsed time shown: a wait that continues an earlier one
        self._last: tuple[str, str | None, str] | None = None

    def __call__(self, observation: RunObservation, elapsed: float) -> None:
        elapsed += self._since
        key = (observation.life_cycle_state, observation.result_state, observation.state_message)
        if key != self._last:
            self._last = key
            note = "" if observation.known_state or observation.terminal else " (unknown state: still waiting)"
            message = f": {observation.state_message}" if observation.state_message else ""
            self._emit(f"[{elapsed:7.1f}s] {observation.label}{message}{note}")
        elif self._live is not None:
            self._live(f"[{elapsed:7.1f}s] {observation.label} …")
