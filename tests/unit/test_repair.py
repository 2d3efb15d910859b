"""Which tasks a repair runs again, and how jobs/update merges settings: pure functions."""

from __future__ import annotations

from typing import Any

import pytest
from databricks.sdk.service.jobs import RunLifeCycleState as L
from databricks.sdk.service.jobs import RunResultState as R

from aml_databricks.workspace.errors import InvalidParameterValue
from aml_databricks.workspace.jobs import _merged
from aml_databricks.workspace.repair import check_latest_repair_id, tasks_to_rerun
from aml_databricks.workspace.runs import Progress, Repair, Run, TaskRun


def attempt(key: str, result: R, *after: str, state: L = L.TERMINATED) -> TaskRun:
    settings: dict[str, Any] = {"task_key": key, "depends_on": [{"task_key": a} for a in after]}
    return TaskRun(1, 0, settings, "local", Progress(state, result))


# a -> b -> c, and d alone
GRAPH = [attempt("a", R.SUCCESS), attempt("b", R.FAILED, "a"), attempt("c", R.UPSTREAM_FAILED, "b"),
         attempt("d", R.EXCLUDED, state=L.SKIPPED)]


def test_all_failed_tasks_are_the_ones_that_did_not_succeed_nor_were_excluded() -> None:
    assert tasks_to_rerun(GRAPH, rerun_tasks=None, all_failed=True, dependents=False) == ["b", "c"]


def test_dependents_are_followed_transitively_in_task_order() -> None:
    assert tasks_to_rerun(GRAPH, rerun_tasks=["a"], all_failed=False, dependents=True) == ["a", "b", "c"]
    assert tasks_to_rerun(GRAPH, rerun_tasks=["a"], all_failed=False, dependents=False) == ["a"]


@pytest.mark.parametrize(("rerun", "all_failed", "message"), [
    (None, False, "exactly one"), (["a"], True, "exactly one"), (["zz"], False, "not a task of this run"),
])
def test_a_repair_must_say_what_to_rerun(rerun: list[str] | None, all_failed: bool, message: str) -> None:
    with pytest.raises(InvalidParameterValue, match=message):
        tasks_to_rerun(GRAPH, rerun_tasks=rerun, all_failed=all_failed, dependents=False)


def test_latest_repair_id_is_required_after_a_first_repair_and_refused_before() -> None:
    run = Run(7, "r", "SUBMIT_RUN", "MULTI_TASK", "me")
    check_latest_repair_id(run, None)
    with pytest.raises(InvalidParameterValue, match="never been repaired"):
        check_latest_repair_id(run, 5)
    run.repairs = [Repair(7, "ORIGINAL", [1]), Repair(9, "REPAIR", [2])]
    check_latest_repair_id(run, 9)
    for wrong in (None, 7):
        with pytest.raises(InvalidParameterValue, match="must be 9"):
            check_latest_repair_id(run, wrong)


def test_update_replaces_top_level_fields_and_merges_keyed_arrays() -> None:
    settings = {"name": "j", "tags": {"a": "1"}, "tasks": [{"task_key": "x", "v": 1}, {"task_key": "y", "v": 1}],
                "job_clusters": [{"job_cluster_key": "c", "new_cluster": {}}]}
    merged = _merged(settings, {"tags": {"b": "2"}, "tasks": [{"task_key": "y", "v": 2}, {"task_key": "z"}]},
                     ["job_clusters/c", "name"])
    assert merged == {"tags": {"b": "2"}, "job_clusters": [],
                      "tasks": [{"task_key": "x", "v": 1}, {"task_key": "y", "v": 2}, {"task_key": "z"}]}
    assert settings["tasks"][1]["v"] == 1  # the stored settings are not changed in place
    with pytest.raises(InvalidParameterValue, match="nested field"):
        _merged(settings, {}, ["new_cluster/spark_version"])
