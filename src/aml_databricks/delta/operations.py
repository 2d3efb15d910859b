"""Delta operations the Spark engine can't run here, done by delta-rs in the driver process.

Shared by `delta.tables.DeltaTable` and the SQL statements of `sql.py`. Each returns what
Databricks returns (a small Spark DataFrame of metrics, history or detail rows, with Databricks'
column names). A data frame used as a MERGE source is collected to Arrow in the driver: fine for
the sizes a local workspace handles. Never `to_pyarrow_dataset().to_table()`: with deltalake 1.6.6
a process that called it aborts at exit ("terminate called without an active exception", exit 134,
measured); `to_pyarrow_table()`, `to_pandas()`, `history()` and per-file reads do not.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aml_databricks.delta import context
from aml_databricks.delta.errors import DeltaError, DeltaNotATable, DeltaUnsupported
from aml_databricks.delta.files import arrow_table

HISTORY_COLUMNS = (
    "version BIGINT, timestamp TIMESTAMP, userId STRING, userName STRING, operation STRING, "
    "operationParameters MAP<STRING, STRING>, job STRUCT<jobId: STRING>, notebook STRUCT<notebookId: STRING>, "
    "clusterId STRING, readVersion BIGINT, isolationLevel STRING, isBlindAppend BOOLEAN, "
    "operationMetrics MAP<STRING, STRING>, userMetadata STRING, engineInfo STRING"
)
DETAIL_COLUMNS = (
    "format STRING, id STRING, name STRING, description STRING, location STRING, createdAt TIMESTAMP, "
    "lastModified TIMESTAMP, partitionColumns ARRAY<STRING>, clusteringColumns ARRAY<STRING>, numFiles BIGINT, "
    "sizeInBytes BIGINT, properties MAP<STRING, STRING>, minReaderVersion INT, minWriterVersion INT, "
    "tableFeatures ARRAY<STRING>"
)
_OPERATION_NAMES = {"CREATE TABLE": "CREATE TABLE", "WRITE": "WRITE", "DELETE": "DELETE", "UPDATE": "UPDATE"}


def open_delta(local: Path, shown: str) -> Any:
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(str(local))
    except TableNotFoundError:
        raise DeltaNotATable(shown) from None


def _frame(rows: list[tuple[Any, ...]], schema: str) -> Any:
    return context.spark().createDataFrame(rows, schema)


def _text_map(values: Any) -> dict[str, str]:
    if not isinstance(values, dict):
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def history(local: Path, shown: str, limit: int | None = None) -> Any:
    table = open_delta(local, shown)
    rows = []
    for entry in table.history(limit):
        stamp = entry.get("timestamp")
        rows.append(
            (
                int(entry["version"]),
                datetime.fromtimestamp(stamp / 1000, UTC) if stamp else None,
                None,
                None,
                str(entry.get("operation", "")),
                _text_map(entry.get("operationParameters")),
                None,
                None,
                None,
                entry.get("readVersion"),
                entry.get("isolationLevel"),
                entry.get("isBlindAppend"),
                _text_map(entry.get("operationMetrics")),
                entry.get("userMetadata"),
                entry.get("engineInfo") or entry.get("clientVersion"),
            )
        )
    return _frame(rows, HISTORY_COLUMNS)


def detail(local: Path, shown: str, name: str | None = None) -> Any:
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(str(local)):
        return _plain_detail(local, name)
    table = open_delta(local, shown)
    metadata = table.metadata()
    protocol = table.protocol()
    actions = _add_actions(table)
    sizes = actions.get("size_bytes", [])
    history = table.history(1)
    last = history[0].get("timestamp") if history else None
    features = sorted({*(protocol.reader_features or []), *(protocol.writer_features or [])})
    row: tuple[Any, ...] = (
        "delta",
        metadata.id,
        name,
        metadata.description,
        local.as_uri(),
        datetime.fromtimestamp(metadata.created_time / 1000, UTC),
        datetime.fromtimestamp(last / 1000, UTC) if last else None,
        list(metadata.partition_columns),
        [],
        len(sizes),
        int(sum(sizes)),
        {k: str(v) for k, v in metadata.configuration.items()},
        protocol.min_reader_version,
        protocol.min_writer_version,
        features or ["appendOnly", "invariants"],
    )
    return _frame([row], DETAIL_COLUMNS)


def _plain_detail(local: Path, name: str | None) -> Any:
    files = [p for p in local.rglob("*") if p.is_file() and not p.name.startswith(("_", "."))] if local.is_dir() else []
    modified = max((p.stat().st_mtime for p in files), default=None)
    row: tuple[Any, ...] = (
        "parquet",
        None,
        name,
        None,
        local.as_uri(),
        None,
        datetime.fromtimestamp(modified, UTC) if modified else None,
        [],
        [],
        len(files),
        sum(p.stat().st_size for p in files),
        {},
        None,
        None,
        [],
    )
    return _frame([row], DETAIL_COLUMNS)


def _add_actions(table: Any) -> dict[str, list[Any]]:

    actions = arrow_table(table.get_add_actions(flatten=True))
    return {name: actions.column(name).to_pylist() for name in ("path", "size_bytes")}


def delete(local: Path, shown: str, condition: str | None) -> Any:
    metrics = open_delta(local, shown).delete(condition or None)
    return _frame([(int(metrics.get("num_deleted_rows", 0)),)], "num_affected_rows BIGINT")


def update(local: Path, shown: str, assignments: dict[str, str], condition: str | None) -> Any:
    metrics = open_delta(local, shown).update(updates=assignments, predicate=condition or None)
    return _frame([(int(metrics.get("num_updated_rows", 0)),)], "num_affected_rows BIGINT")


@dataclass
class MergeClause:
    """One WHEN clause: kind is matched_update(_all) / matched_delete / insert(_all) / source_update / source_delete."""

    kind: str
    condition: str | None = None
    assignments: dict[str, str] = field(default_factory=dict)


MERGE_COLUMNS = "num_affected_rows BIGINT, num_updated_rows BIGINT, num_deleted_rows BIGINT, num_inserted_rows BIGINT"


def merge(
    local: Path,
    shown: str,
    source: Any,
    condition: str,
    clauses: list[MergeClause],
    *,
    target_alias: str | None,
    source_alias: str | None,
    merge_schema: bool = False,
) -> Any:
    """MERGE `source` (a Spark DataFrame, collected to Arrow here) into the table."""
    if not clauses:
        raise DeltaError("MERGE needs at least one WHEN clause")
    table = open_delta(local, shown)
    data = source.toArrow()
    merger = table.merge(
        data,
        condition,
        source_alias=source_alias or "source",
        target_alias=target_alias or "target",
        merge_schema=merge_schema,
    )
    for clause in clauses:
        merger = _apply(merger, clause)
    metrics = merger.execute()
    updated = int(metrics.get("num_target_rows_updated", 0))
    deleted = int(metrics.get("num_target_rows_deleted", 0))
    inserted = int(metrics.get("num_target_rows_inserted", 0))
    return _frame([(updated + deleted + inserted, updated, deleted, inserted)], MERGE_COLUMNS)


def _apply(merger: Any, clause: MergeClause) -> Any:
    kind, condition, values = clause.kind, clause.condition, clause.assignments
    if kind == "matched_update":
        return merger.when_matched_update(values, predicate=condition)
    if kind == "matched_update_all":
        return merger.when_matched_update_all(predicate=condition)
    if kind == "matched_delete":
        return merger.when_matched_delete(predicate=condition)
    if kind == "insert":
        return merger.when_not_matched_insert(values, predicate=condition)
    if kind == "insert_all":
        return merger.when_not_matched_insert_all(predicate=condition)
    if kind == "source_update":
        return merger.when_not_matched_by_source_update(values, predicate=condition)
    if kind == "source_delete":
        return merger.when_not_matched_by_source_delete(predicate=condition)
    raise DeltaUnsupported(f"MERGE clause {kind}")


OPTIMIZE_COLUMNS = "path STRING, metrics STRUCT<numFilesAdded: BIGINT, numFilesRemoved: BIGINT>"


def optimize(local: Path, shown: str, partition_filter: str | None = None, zorder: list[str] | None = None) -> Any:
    if partition_filter:
        raise DeltaUnsupported("OPTIMIZE ... WHERE")
    table = open_delta(local, shown)
    metrics = table.optimize.z_order(zorder) if zorder else table.optimize.compact()
    row = (local.as_uri(), (int(metrics.get("numFilesAdded", 0)), int(metrics.get("numFilesRemoved", 0))))
    return _frame([row], OPTIMIZE_COLUMNS)


def vacuum(local: Path, shown: str, retention_hours: float | None = None, dry_run: bool = False) -> Any:
    table = open_delta(local, shown)
    check = str(context.spark().conf.get("spark.databricks.delta.retentionDurationCheck.enabled", "true")).lower()
    hours = None if retention_hours is None else int(retention_hours)
    if hours is not None and hours < 168 and check != "false":
        raise DeltaError(
            "[DELTA_VACUUM_RETENTION_PERIOD_TOO_SHORT] Are you sure you would like to vacuum files with such a low "
            "retention period? To disable this check set spark.databricks.delta.retentionDurationCheck.enabled = false."
        )
    removed = table.vacuum(retention_hours=hours, dry_run=dry_run, enforce_retention_duration=False)
    return _frame([(os.path.join(str(local), p),) for p in removed], "path STRING")


RESTORE_COLUMNS = (
    "table_size_after_restore BIGINT, num_of_files_after_restore BIGINT, num_removed_files BIGINT, "
    "num_restored_files BIGINT, removed_files_size BIGINT, restored_files_size BIGINT"
)


def restore(local: Path, shown: str, version: int | None = None, timestamp: str | None = None) -> Any:
    table = open_delta(local, shown)
    target: int | datetime
    if version is not None:
        target = int(version)
    else:
        moment = datetime.fromisoformat(str(timestamp).strip().replace(" ", "T"))
        target = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    metrics = table.restore(target)
    after = open_delta(local, shown)
    sizes = _add_actions(after)["size_bytes"]
    row = (
        int(sum(sizes)),
        len(sizes),
        int(metrics.get("num_removed_file", metrics.get("num_removed_files", 0))),
        int(metrics.get("num_restored_file", metrics.get("num_restored_files", 0))),
        None,
        None,
    )
    return _frame([row], RESTORE_COLUMNS)
