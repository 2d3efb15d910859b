"""aml-databricks: Azure Databricks runs as Azure ML pipeline steps, and a local workspace to run them offline."""

__version__ = "0.1.0"
