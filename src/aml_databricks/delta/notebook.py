"""The driver side of Delta tables: one `install(spark, paths)` call when a run's session opens.

- `from delta.tables import DeltaTable` imports our delta-rs backed module (`shim/delta`).
- `df.write.format("delta").save(p)` / `spark.read.format("delta").load(p)` (and the format-less
  forms: Delta is the default source): the path is mapped to its local folder here, where the
  run's mounts are known; the save modes Spark can't hand a Python data source (errorifexists,
  the default, and ignore) and `partitionBy` are decided or passed on as options; a Delta error
  raised in the server comes back as its one line instead of a Python worker's traceback.
- `spark.sql` runs the Delta statements the engine can't (`sql.py`) through delta-rs.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aml_databricks.compute.driver.paths import PathMapper
from aml_databricks.delta import context
from aml_databricks.delta.commit import PARTITION_BY_OPTION, SAVE_MODE_OPTION, SHOWN_PATH_OPTION
from aml_databricks.delta.errors import DeltaError, DeltaPathExists, DeltaUnsupported

SHIM_PATH = Path(__file__).resolve().parent / "shim"
_PATCHED = "_aml_databricks_delta"
_ERROR_MODES = ("error", "errorifexists", "default")
_DELTA_ERROR_LINE = re.compile(r"aml_databricks\.delta\.errors\.\w+: (\[[A-Za-z0-9_]+\] [^\n]*)")


def install(spark: Any, paths: PathMapper) -> None:
    """Make this driver's session speak Delta as a Databricks notebook does."""
    if str(SHIM_PATH) not in sys.path:
        sys.path.insert(0, str(SHIM_PATH))
    context.configure(spark, paths)
    _patch_reader_writer(paths)
    from aml_databricks.delta.sql import route_sql

    spark.sql = route_sql(spark, spark.sql)


def is_delta(source: str | None) -> bool:
    return default_is_delta() if source is None else source.lower() == "delta"


@functools.cache
def default_is_delta() -> bool:
    """Delta is the default source when the server has the Delta catalog (a JDK built it); else parquet.
    Asked once, at the first format-less save or load, to keep the round trip off every run's start."""
    value = context.spark().conf.get("spark.sql.sources.default", "parquet")
    return str(value).lower() == "delta"


def table_exists(local: Path) -> bool:
    return (local / "_delta_log").is_dir() and any((local / "_delta_log").glob("*.json"))


@contextmanager
def one_line_delta_errors() -> Iterator[None]:
    """A DeltaError raised in the server's Python worker, re-raised here as its own one line."""
    try:
        yield
    except DeltaError:
        raise
    except Exception as error:
        found = _DELTA_ERROR_LINE.search(str(error))
        if found is None:
            raise
        from pyspark.errors import AnalysisException

        raise AnalysisException(message=found.group(1)) from None


def _patch_reader_writer(paths: PathMapper) -> None:
    from pyspark.sql.connect.readwriter import DataFrameReader, DataFrameWriter

    if getattr(DataFrameWriter.save, _PATCHED, False):
        return
    DataFrameWriter.save = _delta_save(DataFrameWriter.save, paths)  # type: ignore[method-assign]
    DataFrameReader.load = _delta_load(DataFrameReader.load, paths)  # type: ignore[method-assign]
    DataFrameWriter.saveAsTable = _with_clean_errors(DataFrameWriter.saveAsTable)  # type: ignore[method-assign]
    DataFrameWriter.insertInto = _with_clean_errors(DataFrameWriter.insertInto)  # type: ignore[method-assign]


def _with_clean_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with one_line_delta_errors():
            return method(*args, **kwargs)

    return wrapper


def _delta_save(save: Callable[..., Any], paths: PathMapper) -> Callable[..., Any]:
    @functools.wraps(save)
    def wrapper(self: Any, path: str | None = None, format: str | None = None, mode: str | None = None,
                partitionBy: Any = None, **options: Any) -> None:
        self.mode(mode).options(**options)
        if partitionBy is not None:
            self.partitionBy(partitionBy)
        if format is not None:
            self.format(format)
        path = path if path is not None else self._write.options.get("path")
        if not is_delta(self._write.source) or path is None:
            save(self, path)
            return
        local = paths.local(str(path))
        save_mode = (self._write.mode or "error").lower()
        if save_mode in (*_ERROR_MODES, "ignore"):
            if table_exists(local):
                if save_mode == "ignore":
                    return
                raise DeltaPathExists(str(path))
            self.option(SAVE_MODE_OPTION, save_mode)
            self._write.mode = "append"
        columns = list(self._write.partitioning_cols or [])
        if columns:
            self.option(PARTITION_BY_OPTION, json.dumps(columns))
            self._write.partitioning_cols = []
        self.option(SHOWN_PATH_OPTION, str(path))
        self._write.options.pop("path", None)
        with one_line_delta_errors():
            save(self, local.as_uri())

    setattr(wrapper, _PATCHED, True)
    return wrapper


def _delta_load(load: Callable[..., Any], paths: PathMapper) -> Callable[..., Any]:
    @functools.wraps(load)
    def wrapper(self: Any, path: Any = None, format: str | None = None, schema: Any = None, **options: Any) -> Any:
        if format is not None:
            self.format(format)
        self.options(**options)
        path = path if path is not None else self._options.get("path")
        if not is_delta(self._format) or not isinstance(path, str):
            return load(self, path, schema=schema)
        from aml_databricks.delta.source import open_table

        if str(self._options.get("readChangeFeed", "")).lower() == "true":
            raise DeltaUnsupported("Change data feed")
        local = paths.local(path)
        open_table(str(local), path, self._options)  # a missing table or version fails here, in one line
        self._options.setdefault(SHOWN_PATH_OPTION, path)
        self._options.pop("path", None)
        self.format("delta")
        if schema is None and default_is_delta():
            # Through the catalog as the path table delta.`uri`: Spark's parquet scan reads the snapshot's
            # files, pruning columns (DeltaCatalog.java); versionAsOf/timestampAsOf are Spark's time travel options.
            return self.table("delta.`" + local.as_uri().replace("`", "``") + "`")
        return load(self, local.as_uri(), schema=schema)

    setattr(wrapper, _PATCHED, True)
    return wrapper
