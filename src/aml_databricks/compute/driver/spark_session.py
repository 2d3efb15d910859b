"""The run's SparkSession: a Spark Connect client on the lease's server, seeing DBFS like `dbutils.fs`.

Imported only by runs that have a cluster: importing pyspark's Connect client costs about a second.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from typing import Any

from aml_databricks.compute.driver.paths import PathMapper

# Reader and writer methods whose path arguments may carry `dbfs:` or storage URIs.
_READER_METHODS = ("load", "parquet", "csv", "json", "text", "orc", "xml")
_WRITER_METHODS = ("save", "parquet", "csv", "json", "text", "orc", "xml", "saveAsTable")
_PATH_KEYWORDS = ("path", "paths")
_PATCHED = "_aml_databricks_paths"


def connect(remote: str, paths: PathMapper, confs: Mapping[str, str] | None = None) -> Any:
    """A session on `remote` (sc://host:port/;session_id=...) with the cluster's runtime `confs`
    (its spark_conf, minus what needs a server of its own) and this run's mounts applied."""
    # User code calling SparkSession.builder.getOrCreate() (Python files do) gets this same session.
    os.environ["SPARK_REMOTE"] = remote
    from pyspark.sql import SparkSession

    session = SparkSession.builder.remote(remote).getOrCreate()
    apply_mounts(session, paths, confs)
    rewrite_reader_writer_paths(paths)
    return session


def apply_mounts(session: Any, paths: PathMapper, extra: Mapping[str, str] | None = None) -> None:
    """Session confs for ViewFS: mounts made at run time reach Spark without a server restart."""
    confs = {**(extra or {}), **paths.viewfs_session_confs()}
    setter = getattr(session.conf, "_set_all", None)  # one round trip instead of one per conf
    if setter is not None:
        setter(confs, silent=True)
    else:
        for key, value in confs.items():
            session.conf.set(key, value)


def rewrite_reader_writer_paths(paths: PathMapper) -> None:
    """Make `spark.read...("dbfs:/x")` and `df.write...("abfss://...")` resolve through `paths`.

    Hadoop has no file system for `dbfs:` (or Azure storage) here, so those arguments are rewritten
    in this driver process before they reach Spark. Patches only this process's Connect classes.
    """
    from pyspark.sql.connect.readwriter import DataFrameReader, DataFrameWriter

    for cls, names in ((DataFrameReader, _READER_METHODS), (DataFrameWriter, _WRITER_METHODS)):
        for name in names:
            method = getattr(cls, name, None)
            if method is not None and not getattr(method, _PATCHED, False):
                setattr(cls, name, _with_mapped_paths(method, paths.spark_path))


def _with_mapped_paths(method: Callable[..., Any], spark_path: Callable[[str], str]) -> Callable[..., Any]:
    def mapped(value: Any) -> Any:
        if isinstance(value, str):
            return spark_path(value)
        if isinstance(value, list | tuple):
            return type(value)(mapped(v) for v in value)
        return value

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        # saveAsTable's first argument is a table name; only its `path` option is a path.
        if method.__name__ != "saveAsTable":
            args = tuple(mapped(a) for a in args)
        kwargs = {k: mapped(v) if k in _PATH_KEYWORDS else v for k, v in kwargs.items()}
        return method(self, *args, **kwargs)

    setattr(wrapper, _PATCHED, True)
    return wrapper
