"""The driver's wait for sample tables still being installed: which errors it waits on, and when not."""

from __future__ import annotations

from pathlib import Path

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
