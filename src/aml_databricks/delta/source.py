"""The `delta` Python data source: Delta tables read and written through delta-rs, inside Spark.

Spark runs this in the Connect server's Python workers: `schema()` and `reader()` when a query is
planned (on the driver), `read()` in tasks, `writer()` on the driver, `write()` in tasks and
`commit()`/`abort()` on the driver again. A read pins the table version found at planning and
makes one partition per data file (`versionAsOf` / `timestampAsOf` pick another version). A write
gives each task its own parquet files (`files.py`) and turns all of them into one Delta commit
(`commit.py`); when a task fails, Spark calls `abort()` and the files are deleted, so the table's
version stays where it was.

A read through the catalog asks first for the snapshot's files (`SNAPSHOT_FILES_OPTION`): when
they can be read as plain parquet, Spark's own parquet scan reads them (column pruning, filter
pushdown, vectorized), and this source's reader is not used (DeltaCatalog.java).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql.datasource import (
    DataSource,
    DataSourceArrowWriter,
    DataSourceReader,
    InputPartition,
    WriterCommitMessage,
)
from pyspark.sql.types import StringType, StructField, StructType

from aml_databricks.delta.commit import PARTITION_BY_OPTION, SHOWN_PATH_OPTION, commit_write, lowered
from aml_databricks.delta.errors import DeltaNotATable, DeltaPathNotFound, DeltaUnsupported
from aml_databricks.delta.files import HIVE_NULL, AddedFile, arrow_table, remove_files, write_batches
from aml_databricks.delta.locations import local_path

SNAPSHOT_FILES_OPTION = "__aml_snapshot_files"  # schema() answers with the snapshot's files (DeltaCatalog.java)


class DeltaDataSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return "delta"

    def _table_dir(self) -> str:
        return local_path(str(self.options.get("path") or ""))

    def _shown(self) -> str:
        return str(self.options.get(SHOWN_PATH_OPTION) or self.options.get("path") or "")

    def schema(self) -> StructType:
        table = open_table(self._table_dir(), self._shown(), self.options)
        if self.options.get(SNAPSHOT_FILES_OPTION):
            return snapshot_files(self._table_dir(), table)
        return spark_schema(table)

    def reader(self, schema: StructType) -> DataSourceReader:
        return DeltaReader(self._table_dir(), self._shown(), lowered(self.options), schema)

    def writer(self, schema: StructType, overwrite: bool) -> DeltaWriter:
        return DeltaWriter(self._table_dir(), lowered(self.options), schema, overwrite)


def open_table(table_dir: str, shown: str, options: Any) -> Any:
    """The table at the version the options ask for (`versionAsOf`, `timestampAsOf`), else the latest."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    if not os.path.isdir(table_dir):
        raise DeltaPathNotFound(shown)
    try:
        table = DeltaTable(table_dir)
    except TableNotFoundError:
        raise DeltaNotATable(shown) from None
    options = lowered(options)
    version = options.get("versionasof")
    timestamp = options.get("timestampasof")
    if version is not None:
        table.load_as_version(int(version))
    elif timestamp is not None:
        table.load_as_version(_parse_timestamp(str(timestamp)))
    refuse_unsupported(table)
    return table


def _parse_timestamp(text: str) -> datetime:
    from datetime import UTC

    moment = datetime.fromisoformat(text.strip().replace(" ", "T"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


_READER_FEATURES = {
    "deletionVectors": "Deletion vectors",
    "columnMapping": "Column mapping",
    "v2Checkpoint": "V2 checkpoints",
}


def refuse_unsupported(table: Any) -> None:
    protocol = table.protocol()
    for feature in protocol.reader_features or []:
        if feature in _READER_FEATURES:
            raise DeltaUnsupported(_READER_FEATURES[feature] + " (a table feature of this table)")
    configuration = table.metadata().configuration
    if configuration.get("delta.columnMapping.mode", "none") != "none":
        raise DeltaUnsupported("Column mapping (delta.columnMapping.mode of this table)")


def spark_schema(table: Any) -> StructType:
    """Delta's schema JSON is Spark's StructType JSON."""
    return StructType.fromJson(json.loads(table.schema().to_json()))


def snapshot_files(table_dir: str, table: Any) -> StructType:
    """The snapshot's data files, for Spark's parquet scan, as the metadata of a one-field schema.

    The schema is this source's only answer to the JVM's planning call, so the files ride in it:
    `root` (the table's URI), `files` (absolute URIs) and `native`: whether Spark's parquet scan
    reads them exactly, i.e. every file's folders are the Hive-style `column=value` of its partition
    values (Spark takes partition values from paths; Delta's log is the truth).
    """
    from pathlib import Path

    root = Path(table_dir).resolve().as_uri()
    files = _active_files(table)
    partition_columns = list(table.metadata().partition_columns)
    native = bool(files) and all(_hive_layout(path, values, partition_columns) for path, values in files)
    metadata = {"root": root, "files": [f"{root}/{path}" for path, _ in files] if native else [], "native": native}
    return StructType([StructField("files", StringType(), True, metadata)])


def _hive_layout(path: str, values: dict[str, str | None], partition_columns: list[str]) -> bool:
    from urllib.parse import unquote

    folders = path.split("/")[:-1]
    if len(folders) != len(partition_columns):
        return False
    for folder, column in zip(folders, partition_columns, strict=True):
        name, equals, value = folder.partition("=")
        expected = values.get(column)
        if not equals or unquote(name) != column or unquote(value) != (HIVE_NULL if expected is None else expected):
            return False
    return True


@dataclass
class FilePartition(InputPartition):
    path: str
    partition_values: dict[str, str | None]


class DeltaReader(DataSourceReader):
    def __init__(self, table_dir: str, shown: str, options: dict[str, str], schema: StructType) -> None:
        table = open_table(table_dir, shown, options)
        self.table_dir = table_dir
        self.partition_columns = list(table.metadata().partition_columns)
        self.schema_json = schema.json()
        self.files = _active_files(table)

    def partitions(self) -> Sequence[InputPartition]:
        if not self.files:
            return [FilePartition("", {})]
        return [FilePartition(path, values) for path, values in self.files]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        from pyspark.sql.pandas.types import to_arrow_schema

        assert isinstance(partition, FilePartition)
        target = to_arrow_schema(StructType.fromJson(json.loads(self.schema_json)), timezone="UTC")
        if not partition.path:
            return
        data = pq.ParquetFile(f"{self.table_dir}/{partition.path}")
        names = set(data.schema_arrow.names)
        wanted = [f.name for f in target if f.name in names and f.name not in partition.partition_values]
        # Streamed in large batches: the JVM converts one while the next is read.
        for part in data.iter_batches(batch_size=_READ_BATCH_ROWS, columns=wanted):
            yield _conform_read(part, target, partition.partition_values)


_READ_BATCH_ROWS = 131072


def _conform_read(
    data: pa.RecordBatch, target: pa.Schema, partition_values: dict[str, str | None]
) -> pa.RecordBatch:
    """A file's batch in the table's schema: partition values as columns, columns added later as nulls."""
    columns = []
    for target_field in target:
        if target_field.name in partition_values:
            value = partition_values[target_field.name]
            if value == HIVE_NULL:
                value = None
            column = pa.array([value] * data.num_rows, pa.string()).cast(target_field.type)
        elif target_field.name in data.schema.names:
            column = data.column(target_field.name)
            if column.type != target_field.type:
                column = column.cast(target_field.type)
        else:  # a column added by a later schema change: null in older files
            column = pa.nulls(data.num_rows, target_field.type)
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=target)


def _active_files(table: Any) -> list[tuple[str, dict[str, str | None]]]:
    from urllib.parse import unquote

    actions = arrow_table(table.get_add_actions(flatten=True))
    paths = actions.column("path").to_pylist()
    partition_columns = list(table.metadata().partition_columns)
    values = {c: actions.column(f"partition.{c}").to_pylist() for c in partition_columns}
    files = []
    for index, path in enumerate(paths):
        part = {c: (None if values[c][index] is None else str(values[c][index])) for c in partition_columns}
        files.append((unquote(path), part))
    return files


@dataclass
class FilesWritten(WriterCommitMessage):
    files: list[AddedFile]


class DeltaWriter(DataSourceArrowWriter):
    def __init__(self, table_dir: str, options: dict[str, str], schema: StructType, overwrite: bool) -> None:
        self.table_dir = table_dir
        self.options = options
        self.schema_json = schema.json()
        self.overwrite = overwrite
        self.partition_by: list[str] = json.loads(options.get(PARTITION_BY_OPTION) or "[]")
        if not self.partition_by and not overwrite and os.path.isdir(os.path.join(table_dir, "_delta_log")):
            from deltalake import DeltaTable

            self.partition_by = list(DeltaTable(table_dir).metadata().partition_columns)  # appends keep them

    def _arrow_schema(self) -> pa.Schema:
        from pyspark.sql.pandas.types import to_arrow_schema

        return to_arrow_schema(StructType.fromJson(json.loads(self.schema_json)), timezone="UTC")

    def write(self, iterator: Iterator[pa.RecordBatch]) -> FilesWritten:
        from pyspark import TaskContext

        context = TaskContext.get()
        task = context.partitionId() if context is not None else 0
        return FilesWritten(write_batches(self.table_dir, iterator, self._arrow_schema(), self.partition_by, task))

    def commit(self, messages: list[WriterCommitMessage | None]) -> None:
        files = _files(messages)
        commit_write(self.table_dir, self._arrow_schema(), files, overwrite=self.overwrite, options=self.options)

    def abort(self, messages: list[WriterCommitMessage | None]) -> None:
        remove_files(self.table_dir, _files(messages))


def _files(messages: list[WriterCommitMessage | None]) -> list[AddedFile]:
    return [f for m in messages if isinstance(m, FilesWritten) for f in m.files]
