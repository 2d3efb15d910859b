"""Delta writes without Spark: task files -> one commit, save modes and schema rules, read back by delta-rs."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from aml_databricks.delta.catalog import jar_or_reason
from aml_databricks.delta.commit import PARTITION_BY_OPTION, SAVE_MODE_OPTION, commit_write
from aml_databricks.delta.errors import DeltaPathExists, DeltaSchemaMismatch
from aml_databricks.delta.files import write_batches
from aml_databricks.delta.server import server_setup
from aml_databricks.delta.sql import _merge_clause, _split_top_level

PEOPLE = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("name", pa.string())])


def batch(ids: list[int], schema: pa.Schema = PEOPLE) -> pa.RecordBatch:
    columns = {"id": pa.array(ids, pa.int64()), "name": [f"n{i}" for i in ids], "extra": ["x"] * len(ids)}
    return pa.RecordBatch.from_arrays([columns[f.name] for f in schema], schema=schema)


def write(
    folder: Path, tasks: list[list[int]], schema: pa.Schema = PEOPLE, overwrite: bool = False, **options: str
) -> None:
    """What the data source does: each task writes its files, then one commit on the driver."""
    partition_by = json.loads(options.get(PARTITION_BY_OPTION, "[]"))
    files = []
    for task, ids in enumerate(tasks):
        files += write_batches(str(folder), [batch(ids, schema)], schema, partition_by, task)
    commit_write(str(folder), schema, files, overwrite=overwrite, options=options)


def test_all_tasks_make_one_commit_with_stats_and_nullable_columns(tmp_path: Path) -> None:
    write(tmp_path, [[1, 2], [3], [4, 5, 6]])

    table = DeltaTable(str(tmp_path))
    assert table.version() == 0
    assert len(table.file_uris()) == 3
    assert table.count() == 6
    assert all(f.nullable for f in table.schema().fields)
    actions = pa.table(table.get_add_actions(flatten=True))
    assert sorted(actions.column("num_records").to_pylist()) == [1, 2, 3]
    assert sorted(actions.column("min.id").to_pylist()) == [1, 3, 4]  # stats delta-rs skips files by


def test_save_modes_and_schema_rules(tmp_path: Path) -> None:
    write(tmp_path, [[1]])
    with pytest.raises(DeltaPathExists, match=r"^\[DELTA_PATH_EXISTS\] Cannot write to already existent path"):
        write(tmp_path, [[2]], **{SAVE_MODE_OPTION: "errorifexists"})
    write(tmp_path, [[3]], **{SAVE_MODE_OPTION: "ignore"})
    wider = pa.schema([*PEOPLE, pa.field("extra", pa.string())])
    with pytest.raises(DeltaSchemaMismatch, match=r"^\[_LEGACY_ERROR_TEMP_DELTA_0007\] A schema mismatch"):
        write(tmp_path, [[4]], wider)
    assert DeltaTable(str(tmp_path)).version() == 0
    assert list(tmp_path.glob("*.parquet")) == [Path(DeltaTable(str(tmp_path)).file_uris()[0])]

    write(tmp_path, [[5]], wider, mergeSchema="true")
    assert [f.name for f in DeltaTable(str(tmp_path)).schema().fields] == ["id", "name", "extra"]
    write(tmp_path, [[7, 8]], overwrite=True, overwriteSchema="true")
    table = DeltaTable(str(tmp_path))
    assert [f.name for f in table.schema().fields] == ["id", "name"]
    assert table.count() == 2


def test_partitioned_write_puts_partition_values_in_folders_and_log(tmp_path: Path) -> None:
    schema = pa.schema([pa.field("id", pa.int64()), pa.field("name", pa.string())])
    write(tmp_path, [[1, 2], [3]], schema, **{PARTITION_BY_OPTION: '["name"]'})

    table = DeltaTable(str(tmp_path))
    assert table.metadata().partition_columns == ["name"]
    assert sorted(p.name for p in tmp_path.glob("name=*")) == ["name=n1", "name=n2", "name=n3"]
    assert sorted(table.to_pandas()["id"]) == [1, 2, 3]


def test_without_a_jdk_the_server_starts_without_the_catalog_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    jar, reason = jar_or_reason(tmp_path)
    env: dict[str, str] = {}
    confs = server_setup(tmp_path, env)

    assert jar is None
    assert "\n" not in reason and "javac was not found" in reason and "openjdk-17-jdk-headless" in reason
    assert "spark.sql.catalog.spark_catalog" not in confs and "spark.sql.sources.default" not in confs
    assert env["PYTHONPATH"].endswith("server_path")


def test_merge_sql_clauses_split_at_top_level() -> None:
    text = "t.id = s.id WHEN MATCHED AND s.v = 'WHEN x' THEN DELETE WHEN NOT MATCHED THEN INSERT *"
    parts = _split_top_level(text, "WHEN")
    clauses = [_merge_clause(p) for p in parts[1:]]

    assert parts[0].strip() == "t.id = s.id"
    assert [(c.kind, c.condition) for c in clauses] == [("matched_delete", "s.v = 'WHEN x'"), ("insert_all", None)]
