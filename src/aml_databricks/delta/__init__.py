"""Delta Lake tables in the local workspace, without Delta's jars.

Databricks makes every table a Delta table. Here the Delta log is read and written by delta-rs
(the `deltalake` package) and Spark reaches it through three parts:

- `source.py` — a PySpark Python data source named `delta` that runs in the Spark Connect
  server's Python workers: reads pin one table version and read one data file per partition;
  writes put one parquet file per task and make ONE Delta commit from all tasks (`commit.py`).
  `server_path/pyspark_aml_delta.py` registers it on every server (Spark imports each top-level
  `pyspark_*` module on its Python path).
- `catalog.py` + `catalog/*.java` — a small `DelegatingCatalogExtension`, compiled with javac
  once and cached, that gives catalog tables with `USING delta` their location as the source's
  `path` option, so `saveAsTable`, `CREATE TABLE`, CTAS, INSERT and ``delta.`/path` `` work.
- `notebook.py` — the driver side: save modes Spark can't pass to a Python data source
  (errorifexists, ignore), `partitionBy`, paths mapped to local folders (`context.py`),
  `delta.tables.DeltaTable` (`shim/delta/tables.py` -> `deltatable.py`) and the SQL statements the
  engine can't run (`sql.py`); both do their work through delta-rs in `operations.py`.

`server.py` holds what a Spark Connect server needs (confs, environment), the one hook of
`compute/host/jvm.py`.
"""
