"""The pinned client versions the `clients` tests prove, one list per cached venv (venvs.py)."""

AIRFLOW = ["apache-airflow==3.3.2", "apache-airflow-providers-databricks==7.23.0"]
PREFECT = ["prefect==3.9.1", "prefect-databricks==0.4.2"]
