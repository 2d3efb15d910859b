"""Spark SQL's double-quoted strings reach delta-rs as strings, not as column names."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from aml_databricks.delta.sql import single_quoted_strings


@pytest.mark.parametrize(("spark_sql", "delta_rs_sql"), [
    ('UPDATE t SET v = "x" WHERE name LIKE "A%"', "UPDATE t SET v = 'x' WHERE name LIKE 'A%'"),
    ("""DELETE FROM t WHERE name = "O'Brien\"""", "DELETE FROM t WHERE name = 'O''Brien'"),
    ('DELETE FROM t WHERE name = "say \\"hi\\""', "DELETE FROM t WHERE name = 'say \"hi\"'"),
    ("DELETE FROM t WHERE name = 'keep \"this\"'", "DELETE FROM t WHERE name = 'keep \"this\"'"),
    ('DELETE FROM delta.`/mnt/a"b` WHERE x = 1', 'DELETE FROM delta.`/mnt/a"b` WHERE x = 1'),
])
def test_double_quoted_strings_become_single_quoted(spark_sql: str, delta_rs_sql: str) -> None:
    assert single_quoted_strings(spark_sql) == delta_rs_sql


def test_a_like_pattern_in_double_quotes_updates_the_matching_rows(tmp_path: Path) -> None:
    write_deltalake(tmp_path, pa.table({"name": ["Ann", "Bob", "Al"], "n": [0, 0, 0]}))
    predicate = single_quoted_strings('name LIKE "A%"')
    DeltaTable(tmp_path).update(updates={"n": "1"}, predicate=predicate)
    rows = DeltaTable(tmp_path).to_pyarrow_table().sort_by("name").to_pylist()
    assert rows == [{"name": "Al", "n": 1}, {"name": "Ann", "n": 1}, {"name": "Bob", "n": 0}]
