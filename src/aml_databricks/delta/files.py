"""Data files of a Delta table: one task's record batches -> parquet files + their add actions.

A task writes one file per partition value it meets (one file in all for an unpartitioned table),
named as Delta names them (`[col=value/]part-<task>-<uuid>.c000.snappy.parquet`). Partition
columns are left out of the files, as the Delta protocol says. The add action carries
`numRecords`, and `minValues`/`maxValues`/`nullCount` for columns whose statistics are exact in
JSON (integers, dates, strings up to 32 characters): delta-rs skips files by them in MERGE,
UPDATE and DELETE, so a wrong bound would lose rows — other types get null counts only.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

_STRING_STATS_MAX = 32
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


@dataclass
class AddedFile:
    """One data file written by a task, relative to the table folder (picklable: a commit message)."""

    path: str
    size: int
    partition_values: dict[str, str | None]
    modification_time: int
    stats: str


@dataclass
class _OpenFile:
    relative: str
    writer: pq.ParquetWriter
    partition_values: dict[str, str | None]
    rows: int = 0
    stats: dict[str, Any] = field(default_factory=dict)


def write_batches(
    table_dir: str, batches: Iterable[pa.RecordBatch], schema: pa.Schema, partition_by: list[str], task: int
) -> list[AddedFile]:
    """Write the batches under `table_dir`; return the files written (none for no rows)."""
    data_schema = pa.schema([f for f in schema if f.name not in partition_by])
    open_files: dict[tuple[str | None, ...], _OpenFile] = {}
    try:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            batch = _conform(batch, schema)
            for key, part in _split_by_partition(batch, partition_by):
                handle = open_files.get(key)
                if handle is None:
                    handle = _open(table_dir, data_schema, dict(zip(partition_by, key, strict=True)), task)
                    open_files[key] = handle
                data = part.select([f.name for f in data_schema])
                handle.writer.write_batch(data)
                handle.rows += data.num_rows
                _update_stats(handle.stats, data)
    except BaseException:
        for handle in open_files.values():
            handle.writer.close()
            _remove(os.path.join(table_dir, handle.relative))
        raise
    added = []
    for handle in open_files.values():
        handle.writer.close()
        full = os.path.join(table_dir, handle.relative)
        stat = os.stat(full)
        added.append(
            AddedFile(
                path=handle.relative,
                size=stat.st_size,
                partition_values=handle.partition_values,
                modification_time=int(stat.st_mtime * 1000),
                stats=json.dumps({"numRecords": handle.rows, **_finish_stats(handle.stats)}),
            )
        )
    return added


def arrow_table(exported: Any) -> pa.Table:
    """A pyarrow Table from delta-rs' Arrow results (arro3) through the C stream interface.

    Not `pa.table(...)`: its first call imports pandas (0.3-0.7 s) to check for a DataFrame, and that
    would be paid by every query's planning in a fresh Python worker.
    """
    return pa.RecordBatchReader.from_stream(exported).read_all()


def remove_files(table_dir: str, files: Iterable[AddedFile]) -> None:
    """Delete the files of a write that will not be committed (its abort)."""
    for added in files:
        _remove(os.path.join(table_dir, added.path))


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    if batch.schema.equals(schema, check_metadata=False):
        return batch
    columns = [batch.column(f.name).cast(f.type) for f in schema]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _split_by_partition(
    batch: pa.RecordBatch, partition_by: list[str]
) -> Iterator[tuple[tuple[str | None, ...], pa.RecordBatch]]:
    if not partition_by:
        yield (), batch
        return
    table = pa.Table.from_batches([batch])
    as_text = [pc.cast(table.column(c), pa.string()) for c in partition_by]
    keys = list(zip(*(column.to_pylist() for column in as_text), strict=True))
    groups: dict[tuple[str | None, ...], list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    for key, rows in groups.items():
        yield key, batch.take(pa.array(rows, pa.int64()))


def _open(table_dir: str, schema: pa.Schema, partition_values: dict[str, str | None], task: int) -> _OpenFile:
    folder = "/".join(
        f"{quote(k, safe='')}={quote(v if v is not None else HIVE_NULL, safe='')}" for k, v in partition_values.items()
    )
    name = f"part-{task:05d}-{uuid.uuid4()}.c000.snappy.parquet"
    relative = f"{folder}/{name}" if folder else name
    full = os.path.join(table_dir, relative)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    writer = pq.ParquetWriter(full, schema, compression="snappy")
    return _OpenFile(relative=relative, writer=writer, partition_values=partition_values)


def _stats_kind(data_type: pa.DataType) -> str:
    if pa.types.is_integer(data_type):
        return "int"
    if pa.types.is_date32(data_type):
        return "date"
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        return "string"
    if pa.types.is_nested(data_type):
        return "none"
    return "nulls"


def _update_stats(stats: dict[str, Any], batch: pa.RecordBatch) -> None:
    for column_field, column in zip(batch.schema, batch.columns, strict=True):
        kind = _stats_kind(column_field.type)
        if kind == "none":
            continue
        entry = stats.setdefault(column_field.name, {"kind": kind, "nulls": 0, "min": None, "max": None, "exact": True})
        entry["nulls"] += column.null_count
        if kind == "nulls" or column.null_count == len(column):
            continue
        low, high = pc.min_max(column).values()
        low, high = low.as_py(), high.as_py()
        if kind == "string" and (len(low) > _STRING_STATS_MAX or len(high) > _STRING_STATS_MAX):
            entry["exact"] = False
        entry["min"] = low if entry["min"] is None else min(entry["min"], low)
        entry["max"] = high if entry["max"] is None else max(entry["max"], high)


def _finish_stats(stats: dict[str, Any]) -> dict[str, Any]:
    minimum, maximum, nulls = {}, {}, {}
    for name, entry in stats.items():
        nulls[name] = entry["nulls"]
        if entry["kind"] == "nulls" or entry["min"] is None or not entry["exact"]:
            continue
        low, high = entry["min"], entry["max"]
        if entry["kind"] == "date":
            low, high = low.isoformat(), high.isoformat()
        minimum[name], maximum[name] = low, high
    return {"minValues": minimum, "maxValues": maximum, "nullCount": nulls}

