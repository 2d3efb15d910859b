"""runs/get?wait_seconds=N: the local workspace's long-poll extension of the Jobs API.

A client that passes `wait_seconds` gets its runs/get answer when the run (or one of its task runs)
changes, or after N seconds, whichever comes first; a terminal run is answered at once. Without the
parameter runs/get is Databricks' own. A real Databricks ignores the parameter and answers at once,
so a client can always send it: `aml-databricks run` does, and sees a run end as it happens with one
call per hold instead of one per poll interval (docs/step.md).

The hold watches the store's per-run change stamp (an in-memory counter bumped by every write to the
run) on the event loop, so a held request costs no thread.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aml_databricks.workspace.errors import InvalidParameterValue
from aml_databricks.workspace.jobs import Jobs
from aml_databricks.workspace.lifecycle import TERMINAL_NAMES

MAX_WAIT_S = 30  # longer holds are cut to this: proxies and clients time out idle requests
CHECK_S = 0.05  # how often a held request looks at the run's change stamp


async def held_run_json(
    jobs: Jobs, run_id: Any, version: str, wait_seconds: Any, include_history: bool = False, seen: Any = None
) -> bytes:
    """runs/get's body, held up to `wait_seconds` for the run to change. `seen`: the life-cycle state the
    client last saw (`seen_life_cycle_state`); a run already past it is answered at once, since a change
    that happened between two polls would otherwise wait for the next one."""
    seconds = _seconds(wait_seconds)
    number = run_id if isinstance(run_id, int) else int(run_id) if str(run_id).isdigit() else None
    stamp = jobs.store.run_stamp(number) if number is not None else None  # read before the render
    body = jobs.get_run_json(run_id, version, include_history)  # raises for a run that does not exist
    if not seconds or stamp is None or _terminal(body) or (seen and _life_cycle(body) != seen):
        return body
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        await asyncio.sleep(min(CHECK_S, max(0.0, deadline - loop.time())))
        if jobs.store.run_stamp(number) != stamp:  # type: ignore[arg-type]
            break
    return jobs.get_run_json(run_id, version, include_history)


def _seconds(value: Any) -> int:
    if value in (None, ""):
        return 0
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        raise InvalidParameterValue(f"wait_seconds must be an integer, got {value!r}.") from None
    if seconds < 0:
        raise InvalidParameterValue(f"wait_seconds must not be negative, got {seconds}.")
    return min(seconds, MAX_WAIT_S)


def _life_cycle(body: bytes) -> str | None:
    state = json.loads(body).get("state") or {}
    return state.get("life_cycle_state")


def _terminal(body: bytes) -> bool:
    return _life_cycle(body) in TERMINAL_NAMES
