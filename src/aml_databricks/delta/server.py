"""What a Spark Connect server needs for Delta tables: its environment and its confs.

The one hook of `compute/host/jvm.py`: `server_setup(data_dir, env)` adds to the server
process's environment and returns the confs to add to its command line.
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping
from pathlib import Path

from aml_databricks.delta.catalog import ALIAS_CLASS, CATALOG_CLASS, jar_or_reason
from aml_databricks.delta.locations import DBFS_ROOT_ENV, VOLUMES_ROOT_ENV

log = logging.getLogger(__name__)

SERVER_PATH = Path(__file__).resolve().parent / "server_path"
CATALOG_ALIASES = ("hive_metastore", "main")


def server_setup(data_dir: Path, env: MutableMapping[str, str]) -> dict[str, str]:
    """Environment for the server's Python workers (in `env`) and the confs (returned)."""
    env["PYTHONPATH"] = os.pathsep.join([str(SERVER_PATH), *filter(None, [env.get("PYTHONPATH")])])
    env[DBFS_ROOT_ENV] = str(Path(data_dir) / "dbfs")
    env[VOLUMES_ROOT_ENV] = str(Path(data_dir) / "volumes")
    confs = {
        # A DataFrame reused after a write must see the new version, as on Databricks: Spark Connect's
        # plan cache would keep the analyzed plan (and the Delta snapshot in it) of the first use.
        "spark.connect.session.planCache.enabled": "false",
    }
    jar, reason = jar_or_reason(data_dir)
    if jar is None:
        log.warning("%s", reason)
        return confs
    confs["spark.sql.sources.default"] = "delta"  # as on Databricks; without the catalog, tables stay parquet
    confs["spark.driver.extraClassPath"] = str(jar)
    confs["spark.sql.catalog.spark_catalog"] = CATALOG_CLASS
    for alias in CATALOG_ALIASES:  # Databricks' names of the one local catalog, in SQL and the DataFrame API
        confs[f"spark.sql.catalog.{alias}"] = ALIAS_CLASS
    return confs
