"""SQLite persistence of the local workspace: schema and queries, nothing else.

One connection guarded by a lock: SQLite serialises writers anyway, every query here is a
point lookup or a short scan, and a single connection keeps WAL checkpoints cheap. Runs are stored
as the JSON of their typed record (runs.py), never as the documents the API renders from them, with
the columns that queries filter on pulled out beside it. Job settings are stored as submitted.

Schema versions (PRAGMA user_version): 0 stored each run's rendered API document in `runs.doc`;
1 stores the record in `runs.record`. Opening a version-0 file migrates it once, in one transaction.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aml_databricks.workspace.runs import Run, TaskRun, run_from_document, task_run_from_document

RUNS_TABLE = """
CREATE TABLE IF NOT EXISTS runs (
    run_id            INTEGER PRIMARY KEY AUTOINCREMENT,
    parent_run_id     INTEGER,             -- NULL for a run; the run's id for each of its task runs
    job_id            INTEGER,
    idempotency_token TEXT UNIQUE,
    life_cycle_state  TEXT NOT NULL,
    run_type          TEXT,
    start_time        INTEGER NOT NULL DEFAULT 0,
    record            TEXT NOT NULL,       -- runs.Run or runs.TaskRun as JSON
    output            TEXT                 -- a task run's output: notebook_output, error, error_trace, logs
);"""

SCHEMA = RUNS_TABLE + """
CREATE TABLE IF NOT EXISTS jobs (
    job_id        INTEGER PRIMARY KEY AUTOINCREMENT,
    created_time  INTEGER NOT NULL,
    settings      TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS runs_by_parent ON runs(parent_run_id);
CREATE INDEX IF NOT EXISTS runs_by_job ON runs(job_id, run_id);
CREATE TABLE IF NOT EXISTS objects (
    path         TEXT PRIMARY KEY,
    object_id    INTEGER NOT NULL UNIQUE,
    object_type  TEXT NOT NULL,            -- NOTEBOOK | DIRECTORY | FILE
    language     TEXT,
    content      BLOB,
    created_at   INTEGER NOT NULL,
    modified_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS secret_scopes (
    scope         TEXT PRIMARY KEY,
    backend_type  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS secrets (
    scope        TEXT NOT NULL REFERENCES secret_scopes(scope) ON DELETE CASCADE,
    key          TEXT NOT NULL,
    value        BLOB NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE TABLE IF NOT EXISTS task_values (
    run_id    INTEGER NOT NULL,               -- the parent run
    task_key  TEXT NOT NULL,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,                  -- JSON
    PRIMARY KEY (run_id, task_key, key)
);
CREATE TABLE IF NOT EXISTS mounts (
    mount_point  TEXT PRIMARY KEY,
    source       TEXT NOT NULL,
    local_path   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name   TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
);
"""

# Ids start high so that they look like Databricks ids and never collide with small test literals.
FIRST_RUN_ID = 1_000_001
FIRST_JOB_ID = 101
SCHEMA_VERSION = 1


def now_ms() -> int:
    return int(time.time() * 1000)


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.exists()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        if fresh:
            os.chmod(path, 0o600)  # secrets live here
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._stamps: dict[int, int] = {}
        self._parents: dict[int, int] = {}
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate_documents_to_records()
            self._db.executescript(SCHEMA)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.execute(
                "INSERT OR IGNORE INTO sqlite_sequence(name, seq) SELECT 'runs', ? "
                "WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'runs')",
                (FIRST_RUN_ID - 1,),
            )
            self._db.execute(
                "INSERT OR IGNORE INTO sqlite_sequence(name, seq) SELECT 'jobs', ? "
                "WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'jobs')",
                (FIRST_JOB_ID - 1,),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self._db.execute(sql, args).fetchone()
            return row

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, args).fetchall())

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    # -- runs -----------------------------------------------------------------------------

    def next_run_ids(self, db: sqlite3.Connection, count: int) -> list[int]:
        """Reserve `count` consecutive run ids inside an open transaction."""
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'runs'").fetchone()
        first = int(row[0]) + 1
        db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'runs'", (first + count - 1,))
        return list(range(first, first + count))

    def insert_run(self, db: sqlite3.Connection, record: Run | TaskRun, *, idempotency_token: str | None = None
                   ) -> None:
        parent = record.parent_run_id if isinstance(record, TaskRun) else None
        if parent is not None:
            self._parents[record.run_id] = parent
        db.execute(
            "INSERT INTO runs(run_id, parent_run_id, job_id, idempotency_token, life_cycle_state, run_type, "
            "start_time, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (record.run_id, parent, record.job_id, idempotency_token, record.progress.life_cycle.value,
             record.run_type if isinstance(record, Run) else None, record.timing.start_time,
             json.dumps(record.to_json())),
        )

    def run_by_token(self, token: str) -> int | None:
        row = self._one("SELECT run_id FROM runs WHERE idempotency_token = ?", (token,))
        return None if row is None else int(row[0])

    def save_run(self, record: Run | TaskRun) -> None:
        with self._lock:
            self._exec(
                "UPDATE runs SET life_cycle_state = ?, start_time = ?, record = ? WHERE run_id = ?",
                (record.progress.life_cycle.value, record.timing.start_time, json.dumps(record.to_json()),
                 record.run_id),
            )
            self._touch(record.run_id)

    def run_stamp(self, run_id: int) -> int:
        """A counter that moves whenever the run or one of its task runs is written: lets the API reuse a
        rendered runs/get for as long as nothing in it changed."""
        return self._stamps.get(run_id, 0)

    def _touch(self, run_id: int) -> None:
        for changed in (run_id, self._parents.get(run_id)):
            if changed is not None:
                self._stamps[changed] = self._stamps.get(changed, 0) + 1

    def save_output(self, run_id: int, output: dict[str, Any]) -> None:
        with self._lock:
            self._exec("UPDATE runs SET output = ? WHERE run_id = ?", (json.dumps(output), run_id))
            self._touch(run_id)

    def get_run(self, run_id: int) -> Run | TaskRun | None:
        row = self._one("SELECT record, parent_run_id FROM runs WHERE run_id = ?", (run_id,))
        if row is None:
            return None
        return _record(row)

    def get_output(self, run_id: int) -> dict[str, Any]:
        row = self._one("SELECT output FROM runs WHERE run_id = ?", (run_id,))
        return json.loads(row["output"]) if row is not None and row["output"] else {}

    def task_runs(self, parent_run_id: int) -> list[TaskRun]:
        rows = self._all("SELECT record FROM runs WHERE parent_run_id = ? ORDER BY run_id", (parent_run_id,))
        return [TaskRun.from_json(json.loads(r["record"])) for r in rows]

    def list_runs(self, *, job_id: int | None, active_only: bool, completed_only: bool,
                  offset: int, limit: int, terminal_states: tuple[str, ...], run_type: str | None = None,
                  start_time_from: int | None = None, start_time_to: int | None = None) -> list[Run]:
        where = ["parent_run_id IS NULL"]
        args: list[Any] = []
        for clause, value in (
            ("job_id = ?", job_id),
            ("run_type = ?", run_type),
            ("start_time >= ?", start_time_from),
            ("start_time <= ?", start_time_to),
        ):
            if value is not None:
                where.append(clause)
                args.append(value)
        marks = ",".join("?" * len(terminal_states))
        if active_only:
            where.append(f"life_cycle_state NOT IN ({marks})")
            args.extend(terminal_states)
        if completed_only:
            where.append(f"life_cycle_state IN ({marks})")
            args.extend(terminal_states)
        rows = self._all(
            f"SELECT record FROM runs WHERE {' AND '.join(where)} ORDER BY run_id DESC LIMIT ? OFFSET ?",
            (*args, limit, offset),
        )
        return [Run.from_json(json.loads(r["record"])) for r in rows]

    def delete_run(self, run_id: int) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM runs WHERE parent_run_id = ? OR run_id = ?", (run_id, run_id))
            db.execute("DELETE FROM task_values WHERE run_id = ?", (run_id,))
            self._touch(run_id)

    def unfinished_runs(self, terminal_states: tuple[str, ...]) -> list[Run | TaskRun]:
        marks = ",".join("?" * len(terminal_states))
        rows = self._all(f"SELECT record, parent_run_id FROM runs WHERE life_cycle_state NOT IN ({marks})",
                         terminal_states)
        return [_record(r) for r in rows]

    def _migrate_documents_to_records(self) -> None:
        """Schema 0 → 1: each stored API document becomes the record it was rendered from."""
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(runs)").fetchall()}
        if "doc" not in columns:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            seq = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'runs'").fetchone()
            self._db.execute("ALTER TABLE runs RENAME TO runs_v0")
            self._db.execute("DROP INDEX IF EXISTS runs_by_parent")
            self._db.execute("DROP INDEX IF EXISTS runs_by_job")
            self._db.execute(RUNS_TABLE)  # not executescript(SCHEMA): a script commits the transaction
            old = self._db.execute(
                "SELECT run_id, parent_run_id, job_id, idempotency_token, life_cycle_state, doc, output "
                "FROM runs_v0").fetchall()
            for row in old:
                doc = json.loads(row["doc"])
                parent = row["parent_run_id"]
                record: Run | TaskRun = (run_from_document(doc) if parent is None
                                         else task_run_from_document(doc, int(parent)))
                self._db.execute(
                    "INSERT INTO runs(run_id, parent_run_id, job_id, idempotency_token, life_cycle_state, "
                    "run_type, start_time, record, output) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (row["run_id"], parent, row["job_id"], row["idempotency_token"], row["life_cycle_state"],
                     record.run_type if isinstance(record, Run) else None, record.timing.start_time,
                     json.dumps(record.to_json()), row["output"]),
                )
            self._db.execute("DROP TABLE runs_v0")
            self._db.execute("DELETE FROM sqlite_sequence WHERE name IN ('runs', 'runs_v0')")
            if seq is not None:
                self._db.execute("INSERT INTO sqlite_sequence(name, seq) VALUES ('runs', ?)", (seq[0],))
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- jobs -----------------------------------------------------------------------------

    def create_job(self, settings: dict[str, Any]) -> int:
        cur = self._exec("INSERT INTO jobs(created_time, settings) VALUES (?, ?)",
                         (now_ms(), json.dumps(settings)))
        return int(cur.lastrowid or 0)

    def get_job(self, job_id: int) -> tuple[dict[str, Any], int] | None:
        row = self._one("SELECT settings, created_time FROM jobs WHERE job_id = ?", (job_id,))
        return None if row is None else (json.loads(row["settings"]), int(row["created_time"]))

    def replace_job(self, job_id: int, settings: dict[str, Any]) -> bool:
        return self._exec("UPDATE jobs SET settings = ? WHERE job_id = ?", (json.dumps(settings), job_id)).rowcount > 0

    def list_jobs(self, offset: int, limit: int) -> list[tuple[int, dict[str, Any], int]]:
        rows = self._all("SELECT job_id, settings, created_time FROM jobs ORDER BY job_id LIMIT ? OFFSET ?",
                         (limit, offset))
        return [(int(r["job_id"]), json.loads(r["settings"]), int(r["created_time"])) for r in rows]

    def delete_job(self, job_id: int) -> bool:
        return self._exec("DELETE FROM jobs WHERE job_id = ?", (job_id,)).rowcount > 0

    # -- workspace objects ----------------------------------------------------------------

    def get_object(self, path: str) -> sqlite3.Row | None:
        return self._one("SELECT * FROM objects WHERE path = ?", (path,))

    def children(self, path: str) -> list[sqlite3.Row]:
        prefix = path.rstrip("/") + "/"
        rows = self._all(
            "SELECT * FROM objects WHERE path > ? AND path < ? ORDER BY path", (prefix, prefix + "\uffff")
        )
        return [r for r in rows if "/" not in r["path"][len(prefix):]]

    def put_object(self, db: sqlite3.Connection, path: str, object_type: str, language: str | None,
                   content: bytes | None) -> None:
        stamp = now_ms()
        db.execute(
            "INSERT INTO objects(path, object_id, object_type, language, content, created_at, modified_at) "
            "VALUES (?, (SELECT COALESCE(MAX(object_id), 1000) + 1 FROM objects), ?, ?, ?, ?, ?) "
            "ON CONFLICT(path) DO UPDATE SET object_type = excluded.object_type, "
            "language = excluded.language, content = excluded.content, modified_at = excluded.modified_at",
            (path, object_type, language, content, stamp, stamp),
        )

    def delete_objects(self, path: str) -> None:
        prefix = path.rstrip("/") + "/"
        self._exec("DELETE FROM objects WHERE path = ? OR (path > ? AND path < ?)",
                   (path, prefix, prefix + "\uffff"))

    # -- secrets --------------------------------------------------------------------------

    def create_scope(self, scope: str, backend_type: str) -> bool:
        return self._exec("INSERT OR IGNORE INTO secret_scopes(scope, backend_type) VALUES (?, ?)",
                          (scope, backend_type)).rowcount > 0

    def scopes(self) -> list[sqlite3.Row]:
        return self._all("SELECT scope, backend_type FROM secret_scopes ORDER BY scope")

    def scope_exists(self, scope: str) -> bool:
        return self._one("SELECT 1 FROM secret_scopes WHERE scope = ?", (scope,)) is not None

    def delete_scope(self, scope: str) -> bool:
        return self._exec("DELETE FROM secret_scopes WHERE scope = ?", (scope,)).rowcount > 0

    def put_secret(self, scope: str, key: str, value: bytes) -> None:
        self._exec(
            "INSERT INTO secrets(scope, key, value, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(scope, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (scope, key, value, now_ms()),
        )

    def secret_keys(self, scope: str) -> list[sqlite3.Row]:
        return self._all("SELECT key, updated_at FROM secrets WHERE scope = ? ORDER BY key", (scope,))

    def secret_value(self, scope: str, key: str) -> bytes | None:
        row = self._one("SELECT value FROM secrets WHERE scope = ? AND key = ?", (scope, key))
        return None if row is None else bytes(row["value"])

    def delete_secret(self, scope: str, key: str) -> bool:
        return self._exec("DELETE FROM secrets WHERE scope = ? AND key = ?", (scope, key)).rowcount > 0

    # -- task values and mounts -----------------------------------------------------------

    def set_task_value(self, run_id: int, task_key: str, key: str, value_json: str) -> None:
        self._exec(
            "INSERT INTO task_values(run_id, task_key, key, value) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(run_id, task_key, key) DO UPDATE SET value = excluded.value",
            (run_id, task_key, key, value_json),
        )

    def task_value(self, run_id: int, task_key: str, key: str) -> str | None:
        row = self._one("SELECT value FROM task_values WHERE run_id = ? AND task_key = ? AND key = ?",
                        (run_id, task_key, key))
        return None if row is None else str(row["value"])

    def mounts(self) -> dict[str, tuple[str, str]]:
        rows = self._all("SELECT mount_point, source, local_path FROM mounts ORDER BY mount_point")
        return {r["mount_point"]: (r["source"], r["local_path"]) for r in rows}

    def put_mount(self, mount_point: str, source: str, local_path: str) -> None:
        self._exec("INSERT OR REPLACE INTO mounts(mount_point, source, local_path) VALUES (?, ?, ?)",
                   (mount_point, source, local_path))

    def delete_mount(self, mount_point: str) -> bool:
        return self._exec("DELETE FROM mounts WHERE mount_point = ?", (mount_point,)).rowcount > 0


def _record(row: sqlite3.Row) -> Run | TaskRun:
    data = json.loads(row["record"])
    return Run.from_json(data) if row["parent_run_id"] is None else TaskRun.from_json(data)
