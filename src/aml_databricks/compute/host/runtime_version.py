"""Which Databricks Runtime the local Spark stands in for: the `spark_version` a cluster reports.

A Databricks cluster reports its runtime (`"17.3.x-scala2.13"`), not Apache Spark's version, and
clients check it: databricks-connect reads the first `N.M.x` / `N.x` in `clusters/get`'s
`spark_version` as the runtime and refuses a runtime older than itself (so the PySpark version
"4.3.x-scala2.13" read as runtime 4.3 was refused by every release). `runtime_spark_version` maps
the local Spark's `major.minor` to the newest Databricks Runtime built on that Spark line, from
Databricks' release notes ("Databricks Runtime release notes versions and compatibility"):

    Spark 3.3 -> 12.2 LTS    Spark 3.4 -> 13.3 LTS    Spark 3.5 -> 16.4 LTS
    Spark 4.0 -> 17.3 LTS    Spark 4.1 -> 18          Spark 4.2 -> 19

From runtime 18 on, Databricks ships one release line per major version ("Databricks Runtime 19",
updated in place; databricks-connect 19.x all target it), so those are reported as `N.x`, the
shape databricks-connect's version check reads as "any 19". A Spark newer than the table (the
pinned pyspark 4.3 has no runtime in the notes yet) continues the pattern of one runtime major
per Spark 4 minor: Spark 4.3 -> `20.x-scala2.13`. Spark 4 builds only for Scala 2.13.
"""

from __future__ import annotations

import re

# Spark (major, minor) -> the newest Databricks Runtime on that Spark line, as its version key names it.
RUNTIME_OF_SPARK: dict[tuple[int, int], str] = {
    (3, 3): "12.2.x-scala2.12",
    (3, 4): "13.3.x-scala2.12",
    (3, 5): "16.4.x-scala2.12",
    (4, 0): "17.3.x-scala2.13",
    (4, 1): "18.x-scala2.13",
    (4, 2): "19.x-scala2.13",
}
# Past the table, runtime majors follow Spark 4 minors: 4.1 -> 18, 4.2 -> 19, so 4.N -> 17 + N.
_SPARK4_RUNTIME_OFFSET = 17

_MAJOR_MINOR = re.compile(r"^(\d+)\.(\d+)")


def runtime_spark_version(spark_version: str) -> str:
    """The Databricks Runtime version key (`"17.3.x-scala2.13"`) for an Apache Spark version (`"4.0.1"`)."""
    match = _MAJOR_MINOR.match(spark_version)
    if match is None:
        raise ValueError(f"{spark_version!r} is not a Spark version like '4.0.1'")
    major, minor = int(match.group(1)), int(match.group(2))
    known = RUNTIME_OF_SPARK.get((major, minor))
    if known is not None:
        return known
    if major == 4 and minor > max(m for (big, m) in RUNTIME_OF_SPARK if big == 4):
        return f"{_SPARK4_RUNTIME_OFFSET + minor}.x-scala2.13"
    raise ValueError(f"no Databricks Runtime is known for Apache Spark {major}.{minor}")

