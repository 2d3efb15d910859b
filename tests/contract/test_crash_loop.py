"""Three kill -9s of the workspace under concurrent submits and pollers (benchmarks/crash_loop.py, short)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
from crash_loop import crash_loop

pytestmark = [pytest.mark.server, pytest.mark.subprocess]


def test_three_kills_under_load_lose_nothing(tmp_path: Path) -> None:
    report = crash_loop(tmp_path / "data", kills=3, submitters=20)

    assert report.problems == []
    assert report.integrity == "ok"
    assert report.runs_total > 0, "no run was accepted: the load never reached the server"
    assert sum(r.in_flight_at_kill for r in report.rounds) > 0, "no run was in flight at any kill"
