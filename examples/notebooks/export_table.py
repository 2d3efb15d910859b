# Databricks notebook source
# MAGIC %md
# MAGIC # Export a table to the Azure ML datastore
# MAGIC
# MAGIC The original demo's notebook: read a Spark table and write it as parquet where the Azure ML
# MAGIC pipeline's next step will read it. The `execute_databricks_notebook` step passes
# MAGIC `output_folder` (`azureml/<run id>/output_path`, relative to the blob store mounted at
# MAGIC `/mnt/azuremlblobstore`) and, when it knows the storage account, `output_uri` (an
# MAGIC `abfss://` URI, for workspaces without the mount, e.g. Unity Catalog).

# COMMAND ----------

# ruff: noqa: F821  (spark and dbutils are the notebook's globals)
import json
import os

dbutils.widgets.text("table", "samples.iris", "Table to export")
dbutils.widgets.text("output_folder", "", "Folder under /mnt/azuremlblobstore")
dbutils.widgets.text("output_uri", "", "Full output URI (wins over output_folder)")

# COMMAND ----------

table = dbutils.widgets.get("table")
output_uri = dbutils.widgets.get("output_uri")
output_folder = dbutils.widgets.get("output_folder")
if output_uri:
    output_location = output_uri
elif output_folder:
    output_location = "/mnt/azuremlblobstore/" + output_folder
else:
    raise ValueError("no output_folder or output_uri: run me through the execute_databricks_notebook step")
print(f"exporting {table} to {output_location}")

# COMMAND ----------

df = spark.table(table)
rows = df.count()
df.write.mode("overwrite").parquet(output_location)
print(f"wrote {rows} rows, columns {', '.join(df.columns)}")

# COMMAND ----------

# Log into the Azure ML step's own MLflow run, whose coordinates the step passes to the cluster.
# MlflowClient, not mlflow.start_run(): ending the run here would end the step's run under it.
if os.environ.get("MLFLOW_TRACKING_URI") and os.environ.get("MLFLOW_RUN_ID"):
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        print("mlflow is not installed on this cluster: metrics not logged")
    else:
        try:
            client = MlflowClient()
            client.log_metric(os.environ["MLFLOW_RUN_ID"], "exported_rows", rows)
            client.set_tag(os.environ["MLFLOW_RUN_ID"], "exported_table", table)
        except Exception as exc:  # the export succeeded: a tracking problem must not fail it
            print(f"MLflow logging failed: {exc}")

# COMMAND ----------

summary = {"table": table, "rows": rows, "columns": df.columns, "location": output_location}
dbutils.notebook.exit(json.dumps(summary))
