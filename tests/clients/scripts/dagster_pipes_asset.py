"""dagster-databricks' Pipes clients, unchanged, materialising an asset on the workspace at $DATABRICKS_HOST.

Run in the Dagster venv (tests/clients/venvs.py): `python dagster_pipes_asset.py SCENARIO CODE_PATH`.
- `classic`: `PipesDatabricksClient` (context and messages in a DBFS temp folder) runs CODE_PATH, a
  `dbfs:/` Python file, as a `spark_python_task` on a new cluster whose `spark_env_vars` carry the
  Pipes parameters, with `dagster-pipes` as a PyPI library and cluster logs delivered to DBFS (which
  the client forwards as the run's stdout/stderr), as Dagster's guide does it.
- `notebook`: the same client runs CODE_PATH, a workspace notebook, on the existing cluster `local`;
  the Pipes parameters arrive as `base_parameters` (widgets).
- `serverless`: `PipesDatabricksServerlessClient` (context and messages on a `/Volumes` path through the
  Files API) runs CODE_PATH as a serverless `spark_python_task` with `dagster-pipes` in its environment.
Prints one JSON line: the materialisation's metadata and data version, and what the run logged through
Pipes (and, for `classic`, the stdout the client forwarded from the cluster logs).
"""

import contextlib
import importlib.metadata
import io
import json
import os
import sys

from dagster import AssetExecutionContext, DagsterInstance, asset, materialize
from dagster_databricks import PipesDatabricksClient
from dagster_databricks.pipes import PipesDatabricksServerlessClient  # not exported at the top (0.29)
from databricks.sdk import WorkspaceClient
from databricks.sdk.service import compute, jobs

PIPES_LIBRARY = "dagster-pipes==" + importlib.metadata.version("dagster-pipes")
VOLUME = "/Volumes/main/default/pipes"


def classic_task(code):
    return {
        "task_key": "dagster-classic",
        "new_cluster": {"spark_version": "15.4.x-scala2.12", "node_type_id": "Standard_DS3_v2", "num_workers": 0,
                        "cluster_log_conf": {"dbfs": {"destination": "dbfs:/cluster-logs"}}},
        "libraries": [{"pypi": {"package": PIPES_LIBRARY}}],
        "spark_python_task": {"python_file": code, "source": "WORKSPACE"},
    }


def notebook_task(code):
    return {"task_key": "dagster-notebook", "existing_cluster_id": "local",
            "libraries": [{"pypi": {"package": PIPES_LIBRARY}}],
            "notebook_task": {"notebook_path": code, "base_parameters": {"greeting": "hello"}}}


def serverless_task(code):
    return {"task_key": "dagster-serverless", "environment_key": "pipes",
            "spark_python_task": {"python_file": code, "source": "WORKSPACE"}}


def main(scenario, code):
    workspace = WorkspaceClient(host=os.environ["DATABRICKS_HOST"], token=os.environ["DATABRICKS_TOKEN"])
    submit_args = {"run_name": f"dagster {scenario}"}
    if scenario == "serverless":
        pipes = PipesDatabricksServerlessClient(client=workspace, volume_path=VOLUME, poll_interval_seconds=1)
        task = serverless_task(code)
        submit_args["environments"] = [jobs.JobEnvironment(
            environment_key="pipes", spec=compute.Environment(client="2", dependencies=[PIPES_LIBRARY]))]
    else:
        pipes = PipesDatabricksClient(client=workspace, poll_interval_seconds=1)
        task = classic_task(code) if scenario == "classic" else notebook_task(code)

    @asset(name=f"databricks_{scenario}")
    def databricks_asset(context: AssetExecutionContext):
        return pipes.run(task=jobs.SubmitTask.from_dict(task), context=context, submit_args=submit_args,
                         extras={"some_parameter": 41}).get_materialize_result()

    instance = DagsterInstance.ephemeral()
    forwarded = io.StringIO()  # what the client copies to its own stdout from the cluster's log files
    with contextlib.redirect_stdout(forwarded):
        result = materialize([databricks_asset], instance=instance, raise_on_error=False)
    sys.stdout.write(forwarded.getvalue())
    if not result.success:
        failures = [str(e.event_specific_data.error) for e in result.all_events if e.is_failure]
        raise SystemExit("materialisation failed:\n" + "\n".join(failures))
    [materialization] = result.asset_materializations_for_node(databricks_asset.op.name)
    messages = [record.user_message for record in instance.all_logs(result.run_id)]
    return {
        "metadata": {key: value.value for key, value in materialization.metadata.items()},
        "data_version": materialization.tags.get("dagster/data_version"),
        "logged": [m for m in messages if m.startswith("from databricks:")],
        "forwarded_stdout": [line for line in forwarded.getvalue().splitlines() if "printed on databricks" in line],
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2]), default=str))
