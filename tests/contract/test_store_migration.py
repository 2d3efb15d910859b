"""A data dir written by the previous store version (runs kept as rendered API documents) keeps its runs:
same documents through databricks-sdk, outputs, idempotency tokens and id sequence, in-flight runs ended."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from databricks.sdk.service.jobs import RunLifeCycleState, RunResultState

from aml_databricks.workspace import LocalWorkspace
from aml_databricks.workspace.lifecycle import render_state
from aml_databricks.workspace.scheduler import RESTART_MESSAGE

L = RunLifeCycleState
R = RunResultState

# The runs table of schema version 0, as the previous store created it.
V0_RUNS = """
CREATE TABLE runs (
    run_id            INTEGER PRIMARY KEY AUTOINCREMENT,
    parent_run_id     INTEGER,
    job_id            INTEGER,
    idempotency_token TEXT UNIQUE,
    life_cycle_state  TEXT NOT NULL,
    doc               TEXT NOT NULL,
    output            TEXT
);
CREATE INDEX runs_by_parent ON runs(parent_run_id);
CREATE INDEX runs_by_job ON runs(job_id, run_id);
"""
OLD_HOST = "http://127.0.0.1:1"
TIMES = {"start_time": 1_700_000_000_000, "end_time": 1_700_000_009_000, "setup_duration": 1000,
         "execution_duration": 6000, "cleanup_duration": 10, "run_duration": 9000, "queue_duration": 5}


def run_doc(run_id: int, name: str, state: tuple[dict[str, Any], dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"run_id": run_id, "number_in_job": run_id, "original_attempt_run_id": run_id, "run_name": name,
            "run_type": "SUBMIT_RUN", "format": "MULTI_TASK", "creator_user_name": "local-user",
            "run_page_url": f"{OLD_HOST}/runs/{run_id}", **TIMES, "trigger": "ONE_TIME", "attempt_number": 0,
            "state": state[0], "status": state[1], **extra}


def task_doc(run_id: int, parent: int, key: str, state: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    return {"task_key": key, "existing_cluster_id": "local", "notebook_task": {"notebook_path": "/Users/me/nb",
            "base_parameters": {"rows": "3"}}, "run_id": run_id, "attempt_number": 0,
            "run_page_url": f"{OLD_HOST}/runs/{run_id}", **TIMES,
            "cluster_instance": {"cluster_id": "local", "spark_context_id": str(run_id)},
            "state": state[0], "status": state[1]}


def write_v0(data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    db = sqlite3.connect(data_dir / "workspace.db", isolation_level=None)
    db.executescript(V0_RUNS)
    done = render_state(L.TERMINATED, R.SUCCESS)
    failed = render_state(L.TERMINATED, R.FAILED, "ValueError: boom")
    running = render_state(L.RUNNING)
    rows = [
        (1_000_001, None, None, "token-1", run_doc(1_000_001, "finished", failed, timeout_seconds=600), None),
        (1_000_002, 1_000_001, None, None, task_doc(1_000_002, 1_000_001, "a", done),
         {"notebook_output": {"result": "ok", "truncated": False}}),
        (1_000_003, 1_000_001, None, None, task_doc(1_000_003, 1_000_001, "b", failed),
         {"notebook_output": {}, "error": "ValueError: boom"}),
        (1_000_004, None, None, None, run_doc(1_000_004, "in flight", running), None),
        (1_000_005, 1_000_004, None, None, task_doc(1_000_005, 1_000_004, "t", running), None),
    ]
    for run_id, parent, job_id, token, doc, output in rows:
        state = doc["state"]["life_cycle_state"]
        db.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (run_id, parent, job_id, token, state, json.dumps(doc), json.dumps(output) if output else None))
    db.execute("UPDATE sqlite_sequence SET seq = 1000005 WHERE name = 'runs'")
    db.close()


def test_a_version_0_data_dir_keeps_its_runs(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    write_v0(data_dir)
    with LocalWorkspace(data_dir, spark=False) as ws:
        client = ws.client
        raw = client.api_client.do("GET", "/api/2.1/jobs/runs/get", query={"run_id": 1_000_001})
        assert isinstance(raw, dict) and raw["timeout_seconds"] == 600
        run = client.jobs.get_run(1_000_001)
        assert run.run_name == "finished"
        assert run.state.result_state == R.FAILED and run.state.state_message == "ValueError: boom"
        assert (run.start_time, run.end_time, run.run_duration) == (TIMES["start_time"], TIMES["end_time"], 9000)
        assert run.run_page_url == f"{ws.host}/runs/1000001"  # rendered on read: today's host
        tasks = {t.task_key: t for t in run.tasks}
        assert tasks["a"].notebook_task.base_parameters == {"rows": "3"}
        assert tasks["b"].state.result_state == R.FAILED
        assert tasks["a"].setup_duration == 1000 and tasks["a"].cluster_instance.cluster_id == "local"
        assert client.jobs.get_run_output(1_000_002).notebook_output.result == "ok"
        assert client.jobs.get_run_output(1_000_003).error == "ValueError: boom"

        ended = client.jobs.get_run(1_000_004)
        assert ended.state.life_cycle_state == L.INTERNAL_ERROR
        assert ended.state.state_message == RESTART_MESSAGE

        assert [r.run_id for r in client.jobs.list_runs()] == [1_000_004, 1_000_001]
        assert [r.run_id for r in client.jobs.list_runs(completed_only=True, start_time_from=TIMES["start_time"])] \
            == [1_000_004, 1_000_001]
        again = client.api_client.do("POST", "/api/2.1/jobs/runs/submit", body={
            "run_name": "again", "idempotency_token": "token-1", "tasks": [
                {"task_key": "t", "existing_cluster_id": "local", "notebook_task": {"notebook_path": "/Users/me/nb"}}]})
        assert again == {"run_id": 1_000_001}  # the token still names its run
        fresh = client.api_client.do("POST", "/api/2.1/jobs/runs/submit", body={
            "run_name": "fresh", "tasks": [
                {"task_key": "t", "existing_cluster_id": "local", "notebook_task": {"notebook_path": "/Users/me/nb"}}]})
        assert isinstance(fresh, dict) and fresh["run_id"] == 1_000_006  # ids continue, never reused
    with sqlite3.connect(data_dir / "workspace.db") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        columns = {r[1] for r in db.execute("PRAGMA table_info(runs)")}
        assert "doc" not in columns and "record" in columns
