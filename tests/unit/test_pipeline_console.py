"""What `pipeline run` shows: plain lines off a terminal (Azure ML logs), a live last line on one."""

from __future__ import annotations

import io

from aml_databricks.pipeline.console import CLEAR, Console


def test_off_a_terminal_every_phase_is_one_plain_line_and_nothing_is_redrawn() -> None:
    out = io.StringIO()
    console = Console(out, live=False)
    with console.phase("starting local Spark"):
        console.say("[databricks] PENDING")
    console.close()
    assert out.getvalue() == "starting local Spark …\n[databricks] PENDING\n"


def test_on_a_terminal_the_live_line_counts_seconds_and_stays_below_ordinary_lines() -> None:
    out = io.StringIO()
    console = Console(out, live=True)
    with console.phase("starting local Spark"), console.phase("[databricks] running", announce=False):
        console.say("[databricks] RUNNING")
        shown = out.getvalue()
    console.close()
    # the newest phase is the one shown; an ordinary line first clears it, then it is drawn again
    assert shown.startswith(f"starting local Spark …\nstarting local Spark … 0 s{CLEAR}[databricks] running … 0 s")
    assert f"{CLEAR}[databricks] RUNNING\n[databricks] running … 0 s" in shown
    assert out.getvalue().endswith(CLEAR)  # nothing of the live line is left behind


def test_a_phase_ending_after_close_is_harmless() -> None:
    # A stop closes the console while a background phase (Spark's warm-up) is still open.
    out = io.StringIO()
    console = Console(out, live=True)
    with console.phase("starting local Spark"):
        console.close()
    console.say("after")
    assert out.getvalue().endswith("after\n")
