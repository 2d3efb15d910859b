"""`USE CATALOG` and DBFS locations in SQL, as the local workspace's Spark reads them."""

from __future__ import annotations

import pytest

from aml_databricks.compute.driver.sql_names import UnknownCatalog, rewrite


def spark_path(path: str) -> str:
    return path.removeprefix("dbfs:")


@pytest.mark.parametrize(("sql", "expected"), [
    ("USE CATALOG hive_metastore", "SET CATALOG 'hive_metastore'"),
    ("use catalog `Main`;", "SET CATALOG 'main'"),
    # three-part names are Spark's to resolve: the catalog aliases are registered on the server
    ("SELECT * FROM hive_metastore.sales.orders", "SELECT * FROM hive_metastore.sales.orders"),
    ("SELECT * FROM `main`.sales.orders", "SELECT * FROM `main`.sales.orders"),
    ("SELECT 'main.a.b', t.main FROM t -- main.x.y", "SELECT 'main.a.b', t.main FROM t -- main.x.y"),
    ("CREATE TABLE t (id INT) LOCATION 'dbfs:/mnt/demo/t'", "CREATE TABLE t (id INT) LOCATION '/mnt/demo/t'"),
    ("CREATE SCHEMA s LOCATION \"dbfs:/Shared/s.db\"", "CREATE SCHEMA s LOCATION \"/Shared/s.db\""),
    ("INSERT INTO t VALUES ('dbfs:/keep')", "INSERT INTO t VALUES ('dbfs:/keep')"),
])
def test_rewrite(sql: str, expected: str) -> None:
    assert rewrite(sql, spark_path) == expected


def test_an_unknown_catalog_is_one_clear_line() -> None:
    with pytest.raises(UnknownCatalog, match=r"Catalog 'samples' was not found: the local workspace has one catalog"):
        rewrite("USE CATALOG samples", spark_path)
