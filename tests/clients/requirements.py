"""The pinned client versions the `clients` tests prove, one list per cached venv (venvs.py)."""

AIRFLOW = ["apache-airflow==3.3.2", "apache-airflow-providers-databricks==7.23.0"]
PREFECT = ["prefect==3.9.1", "prefect-databricks==0.4.2"]
# The newest release on the index (no 17.x, the line for Spark 4, is there): it bundles pyspark 3.5's Spark
# Connect client, which talks to our Spark 4 server. Its pyspark wants numpy < 2, so pyarrow and pandas
# are held at releases that still support numpy 1.
DATABRICKS_CONNECT = ["databricks-connect==16.1.7", "pyarrow==17.0.0", "pandas==2.2.3"]
DAGSTER = ["dagster==1.13.27", "dagster-databricks==0.29.27", "dagster-pipes==1.13.27"]
