"""Local tables: name mapping, loading a file as a table, and the sample tables.

Used on both sides: the pool installs the samples (host), `workspace load-table` runs `load_table` as a
task (compute/driver/load_table_task.py). Only the standard library at import time; pyspark comes as an argument.

Tables live in the Hive catalog of the shared Spark server (Derby metastore in the data dir,
parquet files under `dbfs/user/hive/warehouse`): there is no Delta Lake offline.

Names. Spark's session catalog has one level of databases, Databricks has catalogs above them.
A three-part name whose catalog is one of `DEFAULT_CATALOGS` maps to the two-part `schema.table`
(so `hive_metastore.db.t`, `main.db.t` and `db.t` are one table); any other catalog is refused
rather than silently merged. Spark on the workspace's servers resolves `main.db.t` and
`hive_metastore.db.t` itself (delta/catalog/CatalogAlias.java); `local_table_name` gives the
two-part name that also works on a server without them (no JDK).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

DEFAULT_CATALOGS = ("hive_metastore", "main", "spark_catalog")
DEFAULT_SCHEMA = "default"
SAMPLES_SCHEMA = "samples"

_PART = re.compile(r"`([^`]+)`|([A-Za-z0-9_]+)")
_COLUMN_JUNK = re.compile(r"[^0-9A-Za-z]+")


def split_table_name(name: str) -> tuple[str, str]:
    """`t`, `schema.t` or `catalog.schema.t` (backticks allowed) -> (schema, table)."""
    parts = _split(name)
    if len(parts) == 1:
        return DEFAULT_SCHEMA, parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    if len(parts) == 3:
        catalog, schema, table = parts
        if catalog.lower() not in DEFAULT_CATALOGS:
            raise ValueError(
                f"catalog {catalog!r} of table {name!r} does not exist locally; "
                f"use one of {', '.join(DEFAULT_CATALOGS)} or a two-part name"
            )
        return schema, table
    raise ValueError(f"table name {name!r} must have one to three parts: [catalog.]schema.table")


def _split(name: str) -> list[str]:
    parts: list[str] = []
    position = 0
    while True:
        match = _PART.match(name, position)
        if match is None:
            raise ValueError(f"table name {name!r} is not a valid name like 'schema.table'")
        parts.append(match.group(1) or match.group(2))
        position = match.end()
        if position == len(name):
            return parts
        if name[position] != ".":
            raise ValueError(f"table name {name!r} is not a valid name like 'schema.table'")
        position += 1


def local_table_name(name: str) -> str:
    """The quoted two-part name Spark's session catalog understands."""
    schema, table = split_table_name(name)
    return f"`{schema}`.`{table}`"


def load_table(spark: Any, name: str, file: str | Path, *, mode: str = "overwrite") -> int:
    """Save a local parquet or CSV file (or a folder of them) as a table; return its row count.

    CSV files are read with a header row and inferred types. The path is given to Spark as a
    `file://` URI: a bare absolute path would resolve inside DBFS (the server's default FS).
    """
    path = Path(file).resolve()
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    kind = _file_kind(path)
    reader = spark.read
    if kind == "csv":
        df = reader.option("header", "true").option("inferSchema", "true").csv(path.as_uri())
    else:
        df = reader.parquet(path.as_uri())
    schema, table = split_table_name(name)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS `{schema}`")
    df.write.mode(mode).format("parquet").saveAsTable(f"`{schema}`.`{table}`")
    count: int = spark.table(f"`{schema}`.`{table}`").count()
    return count


def _file_kind(path: Path) -> str:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    suffixes = {p.suffix.lower() for p in files if not p.name.startswith(("_", "."))}
    if suffixes <= {".parquet", ""} and suffixes:
        return "parquet"
    if suffixes <= {".csv"} and suffixes:
        return "csv"
    raise ValueError(f"{path} is neither parquet nor CSV (found {', '.join(sorted(suffixes)) or 'no files'})")


def sample_frames() -> dict[str, Any]:
    """pandas frames of datasets bundled inside scikit-learn (no download), by table name."""
    from sklearn import datasets

    frames: dict[str, Any] = {}
    iris = datasets.load_iris(as_frame=True)
    frame = iris.frame.copy()
    frame["species"] = [str(iris.target_names[i]) for i in iris.target]
    frames["iris"] = frame
    frames["diabetes"] = datasets.load_diabetes(as_frame=True, scaled=False).frame
    frames["wine"] = datasets.load_wine(as_frame=True).frame
    for frame in frames.values():
        # Parquet refuses spaces and brackets in column names: 'sepal length (cm)' -> sepal_length_cm.
        frame.columns = [_COLUMN_JUNK.sub("_", str(c)).strip("_").lower() for c in frame.columns]
    return frames


def install_samples(spark: Any) -> list[str]:
    """Create `samples.iris`, `samples.diabetes`, `samples.wine` where missing; return the names made."""
    spark.sql(f"CREATE DATABASE IF NOT EXISTS `{SAMPLES_SCHEMA}`")
    existing = {row.tableName for row in spark.sql(f"SHOW TABLES IN `{SAMPLES_SCHEMA}`").collect()}
    made = []
    for table, frame in sample_frames().items():
        if table in existing:
            continue
        name = f"{SAMPLES_SCHEMA}.{table}"
        spark.createDataFrame(frame).write.mode("overwrite").format("parquet").saveAsTable(name)
        made.append(name)
    return made
