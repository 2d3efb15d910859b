"""Cluster log delivery: a cluster spec's `cluster_log_conf` makes the driver's log land in DBFS or a volume.

On Databricks, `new_cluster.cluster_log_conf` = `{"dbfs": {"destination": "dbfs:/logs"}}` (or `volumes`)
delivers the driver's logs to `<destination>/<cluster id>/driver/` (`stdout`, `stderr`, ...) every few
minutes and when the cluster terminates, and the cluster's sessions say so in
`spark.databricks.clusterUsageTags.clusterLogDeliveryEnabled` / `clusterLogDestination`; tools read the
files from there (Dagster Pipes forwards them as the run's stdout and stderr). Here a job cluster lives
for one task run, so the log is delivered once, when the task run ends. The driver's stdout and stderr
are one stream locally (output.log, already redacted): all of it is delivered as `stdout`, and `stderr`
holds one line saying so (`STDERR_NOTE`). Both files are there, and neither is empty, as on Databricks, whose
driver always writes to both: readers wait for both and some refuse an empty one (Dagster Pipes asserts).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aml_databricks.compute.protocol import FileSystem

DESTINATION_KINDS = ("dbfs", "volumes")
STDERR_NOTE = b"aml-databricks: this local cluster's driver writes stdout and stderr as one stream: see stdout\n"
log = logging.getLogger(__name__)


def log_destination(cluster: Mapping[str, Any]) -> str | None:
    """`cluster_log_conf`'s DBFS or volume destination (`dbfs:/x`, `/Volumes/...`), or None."""
    conf = cluster.get("cluster_log_conf")
    if not isinstance(conf, Mapping):
        return None
    for kind in DESTINATION_KINDS:
        target = conf.get(kind)
        if isinstance(target, Mapping) and isinstance(target.get("destination"), str) and target["destination"]:
            return str(target["destination"]).rstrip("/")
    return None


def deliver(cluster: Mapping[str, Any], cluster_id: str, fs: FileSystem, output_log: Path) -> Path | None:
    """Copy the task run's driver log to `<destination>/<cluster id>/driver/`; the folder, or None."""
    from aml_databricks.compute.driver.paths import PathMapper

    destination = log_destination(cluster)
    if destination is None:
        return None
    folder = PathMapper.from_config(fs).local(f"{destination}/{cluster_id}/driver")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        content = output_log.read_bytes()
    except FileNotFoundError:
        content = b""
    for name, data in (("stdout", content), ("stderr", STDERR_NOTE)):
        staged = folder / f".{name}.{os.getpid()}"
        staged.write_bytes(data)
        staged.replace(folder / name)  # a reader never sees half a file
    log.debug("delivered the driver log of cluster %s to %s", cluster_id, destination)
    return folder
