"""The driver side of compute: what runs inside one task run's driver process.

runner.py (the task: cells, %run, %sql, %sh, python files), cells.py, dbutils.py, api.py (calls back to
the workspace), paths.py (Databricks paths -> local folders), spark_session.py, redaction.py (the
driver's half). Nothing here imports the host side (compute/host/).
"""
