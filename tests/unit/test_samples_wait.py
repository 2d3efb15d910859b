"""The driver's wait for sample tables still being installed: which errors it waits on, and when not."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from aml_databricks.compute.driver import samples_wait
from aml_databricks.compute.driver.samples_wait import missing_samples, wait_for_samples


def test_only_a_missing_samples_table_is_waited_for() -> None:
    assert missing_samples(Exception("[TABLE_OR_VIEW_NOT_FOUND] The table or view `samples`.`iris` cannot be found."))
    assert missing_samples(Exception("[SCHEMA_NOT_FOUND] The schema `samples` cannot be found."))
    assert not missing_samples(Exception("[TABLE_OR_VIEW_NOT_FOUND] The table or view `sales` cannot be found."))


def test_no_pending_install_means_no_wait(tmp_path: Path) -> None:
    assert not wait_for_samples(tmp_path / "samples-pending")
    assert not (tmp_path / "samples-wanted").exists()


def test_a_pending_install_is_asked_for_and_waited_out(tmp_path: Path) -> None:
    marker = tmp_path / "samples-pending"
    marker.touch()
    assert wait_for_samples(marker, limit_s=0)  # gives up at its limit; a real install removes the marker
    assert (tmp_path / "samples-wanted").exists()  # the host's installer starts now, not when idle


MISSING_IRIS = Exception("[TABLE_OR_VIEW_NOT_FOUND] The table or view `samples`.`iris` cannot be found.")


def test_a_call_is_made_again_while_the_install_runs_and_once_after_it_ended(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The tables are made one by one: a query on the first one need not wait for the last.
    monkeypatch.setattr(samples_wait, "RETRY_S", 0.05)
    marker = tmp_path / "samples-pending"
    marker.touch()
    calls: list[int] = []

    def query() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise MISSING_IRIS
        return "150 rows"

    assert samples_wait._waiting(lambda _self: query(), marker)(None) == "150 rows"
    assert len(calls) == 3  # the third attempt found the table while the install still ran
    assert marker.exists()


def attempts_of(query_error: Exception, marker: Path) -> int:
    """How many times a call that always raises `query_error` is made before the error stands."""
    calls: list[int] = []

    def query(_self: object) -> None:
        calls.append(1)
        raise query_error

    with pytest.raises(Exception, match=re.escape(str(query_error)[:20])):
        samples_wait._waiting(query, marker)(None)
    return len(calls)


def test_after_the_install_a_table_that_is_still_missing_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(samples_wait, "RETRY_S", 0.05)
    marker = tmp_path / "samples-pending"
    marker.touch()
    threading.Timer(0.2, marker.unlink).start()  # the install ends
    missing = Exception("[TABLE_OR_VIEW_NOT_FOUND] The table or view `samples`.`no_such_table` cannot be found.")
    assert attempts_of(missing, marker) >= 2  # made again while it ran, then once after it ended, then the error stands


def test_no_install_under_way_means_the_error_stands_at_once(tmp_path: Path) -> None:
    assert attempts_of(MISSING_IRIS, tmp_path / "samples-pending") == 1


def test_other_errors_are_not_retried(tmp_path: Path) -> None:
    marker = tmp_path / "samples-pending"
    marker.touch()
    assert attempts_of(Exception("[PARSE_SYNTAX_ERROR] Syntax error at or near 'SELEC'"), marker) == 1
