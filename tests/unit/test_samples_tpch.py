"""TPC-H generated offline by the real generator (tpchgen-cli), and one line for samples that can't be made."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from aml_databricks.compute import samples_tpch
from aml_databricks.compute.driver.error_text import one_line


def test_generates_every_tpch_table_once_at_the_scale_factor_asked(tmp_path: Path) -> None:
    files = samples_tpch.generate(tmp_path, scale_factor=0.001)

    assert sorted(files) == sorted(samples_tpch.TABLES)
    rows = {table: pq.read_metadata(path).num_rows for table, path in files.items()}
    # fixed by the TPC-H specification: 5 regions, 25 nations, 150 000 customers per scale factor unit
    assert rows["region"] == 5 and rows["nation"] == 25 and rows["customer"] == 150
    assert pq.read_schema(files["orders"]).names[:3] == ["o_orderkey", "o_custkey", "o_orderstatus"]
    again = samples_tpch.generate(tmp_path, scale_factor=0.001)
    assert again == files and not list(tmp_path.glob("*.partial"))


def test_a_scale_factor_out_of_range_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"scale factor must be in \(0, 100\]"):
        samples_tpch.generate(tmp_path, scale_factor=0)


@pytest.mark.parametrize(("message", "expected"), [
    ("[TABLE_OR_VIEW_NOT_FOUND] The table or view `samples`.`nyctaxi`.`trips` cannot be found.",
     "AnalysisException: samples.nyctaxi.trips is not available: the NYC taxi trips are recorded data"),
    ("catalog 'samples' of table 'samples.tpch.orders' does not exist locally",
     "AnalysisException: samples.tpch.orders is not installed: TPC-H is generated offline"),
])
def test_a_missing_sample_table_is_one_line_saying_how_to_provide_it(message: str, expected: str) -> None:
    class AnalysisException(Exception):
        pass

    line = one_line(AnalysisException(message))

    assert line.startswith(expected), line
    assert "\n" not in line and "load-table" in line
