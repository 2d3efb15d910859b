"""The demo's pipeline written with azure-ai-ml's DSL: a Databricks notebook, then a training job.

    python examples/pipeline/pipeline.py                    # build and validate offline, print the YAML
    python examples/pipeline/pipeline.py --submit --config config.json \
        --databricks-host https://adb-<id>.<n>.azuredatabricks.net \
        --kv-url https://<vault>.vault.azure.net/ --kv-secret-name ADBPAT
    aml-databricks pipeline run examples/pipeline/pipeline.py:build_pipeline   # run it locally

Offline, the Databricks component comes from the installed package; when submitting, it is the one
registered in the workspace (`az ml component create`), exactly as the demo does.
"""

# No `from __future__ import annotations`: the DSL reads the pipeline function's annotations as types.
import argparse
from pathlib import Path
from typing import Any

from azure.ai.ml import load_component
from azure.ai.ml.dsl import pipeline
from azure.ai.ml.entities import PipelineJob

from aml_databricks.component import COMPONENT_FILE, COMPONENT_NAME

HERE = Path(__file__).resolve().parent
TRAIN_COMPONENT = HERE.parent / "train" / "train.yml"


def build_pipeline(
    databricks: Any = None,
    databricks_host: str | None = None,
    kv_url: str | None = None,
    kv_secret_name: str | None = None,
    compute: str = "cpu-cluster",
) -> PipelineJob:
    """The pipeline job; `databricks` is the component to use (default: the packaged one)."""
    databricks = databricks or load_component(COMPONENT_FILE)
    train_model = load_component(TRAIN_COMPONENT)

    @pipeline(default_compute=compute, experiment_name="aml-databricks-demo")  # type: ignore[untyped-decorator]
    def my_pipeline_with_databricks(notebook_path: str = "/Shared/aml-databricks/export_table") -> Any:
        adb = databricks(
            databricks_host=databricks_host,  # unset: the step reads DATABRICKS_HOST
            notebook_path=notebook_path,
            kv_url=kv_url,
            kv_secret_name=kv_secret_name,
            num_workers=2,
            node_type_id="Standard_D3_v2",
            spark_version="15.4.x-scala2.12",
            notebook_params="table=samples.iris",
        )
        adb.outputs.output_path.mode = "upload"

        train = train_model(data=adb.outputs.output_path, target="target", max_depth=3)
        return {"model": train.outputs.model}

    job: PipelineJob = my_pipeline_with_databricks()
    return job


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--submit", action="store_true", help="submit to the Azure ML workspace of --config")
    parser.add_argument("--config", help="the workspace's config.json (default: found from the cwd up)")
    parser.add_argument("--component-version", default="1", help="version of the registered component")
    parser.add_argument("--compute", default="cpu-cluster")
    parser.add_argument("--databricks-host")
    parser.add_argument("--kv-url")
    parser.add_argument("--kv-secret-name")
    args = parser.parse_args()
    options: dict[str, Any] = {
        "databricks_host": args.databricks_host,
        "kv_url": args.kv_url,
        "kv_secret_name": args.kv_secret_name,
        "compute": args.compute,
    }

    if not args.submit:
        job = build_pipeline(**options)
        result = job._validate()
        if not result.passed:
            raise SystemExit(f"pipeline is invalid: {result.error_messages}")
        print(job._to_yaml() if hasattr(job, "_to_yaml") else job)
        return

    # Imported here so that building offline needs no Azure credentials.
    from azure.ai.ml import MLClient
    from azure.identity import DefaultAzureCredential

    ml_client = MLClient.from_config(DefaultAzureCredential(), path=args.config)
    databricks = ml_client.components.get(name=COMPONENT_NAME, version=args.component_version)
    job = build_pipeline(databricks=databricks, **options)
    submitted = ml_client.jobs.create_or_update(job)
    print(f"submitted {submitted.name}: {submitted.studio_url}")


if __name__ == "__main__":
    main()
