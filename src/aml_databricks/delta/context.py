"""The run's Spark session and path mapping, for the driver-side Delta code (DeltaTable, SQL).

Set once by `notebook.install`; `table_location` turns what a user names a Delta table by — a
path (`dbfs:/x`, `/mnt/...`, `abfss://...`), ``delta.`path` `` or a catalog table name — into its
local folder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from aml_databricks.compute.driver.paths import PathMapper
from aml_databricks.delta.errors import DeltaError

_session: Any = None
_paths: PathMapper | None = None
_PATH_TABLE = re.compile(r"^\s*delta\s*\.\s*`([^`]+)`\s*$", re.IGNORECASE)


def configure(spark: Any, paths: PathMapper) -> None:
    global _session, _paths
    _session, _paths = spark, paths


def spark() -> Any:
    if _session is None:
        from pyspark.sql import SparkSession

        return SparkSession.getActiveSession() or SparkSession.builder.getOrCreate()
    return _session


def paths() -> PathMapper:
    if _paths is None:
        raise RuntimeError("Delta tables need a run of the local workspace (its paths are unknown here)")
    return _paths


def path_location(path: str) -> Path:
    """The local folder of a table path as a notebook writes it."""
    return paths().local(path)


def table_location(name: str) -> tuple[Path, str]:
    """(local folder, name as shown) of ``delta.`path` `` or a catalog table."""
    found = _PATH_TABLE.match(name)
    if found:
        return path_location(found.group(1)), found.group(1)
    from aml_databricks.compute.tables import local_table_name

    try:
        quoted = local_table_name(name.strip())
    except ValueError as error:
        raise DeltaError(str(error)) from None
    rows = spark().sql(f"DESCRIBE TABLE EXTENDED {quoted}").collect()
    details = {str(r[0]).strip(): str(r[1]).strip() for r in rows if r[0] is not None and r[1] is not None}
    location = details.get("Location")
    if not location:
        raise DeltaError(f"table {name} has no location")
    return location_to_local(location), name


def location_to_local(location: str) -> Path:
    """A catalog location (`viewfs://dbfs/...`, `file:/...`) as a local folder."""
    parts = urlsplit(location)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    if parts.scheme in ("viewfs", "dbfs", ""):
        return paths().local(unquote(parts.path))
    return paths().local(location)
