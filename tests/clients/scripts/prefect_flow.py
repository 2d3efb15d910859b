"""prefect-databricks' `jobs_runs_submit_and_wait_for_completion`, unchanged, against $DATABRICKS_HOST.

Run in the Prefect venv (tests/clients/venvs.py): `python prefect_flow.py NOTEBOOK`. prefect-databricks
builds `https://{databricks_instance}/api/` and offers no setting for the scheme; the workspace serves
plain HTTP on loopback, so `DatabricksCredentials.client_kwargs` (passed to httpx.AsyncClient as they
are, a documented field) carries an httpx request hook that sends each request over http instead.
Prints one JSON line: the task outputs and run metadata the flow returned.
"""

import asyncio
import json
import os
import sys
from urllib.parse import urlsplit

from prefect_databricks import DatabricksCredentials
from prefect_databricks.flows import jobs_runs_submit_and_wait_for_completion
from prefect_databricks.models.jobs import NotebookTask, RunSubmitTaskSettings

host = urlsplit(os.environ["DATABRICKS_HOST"])


async def plain_http(request):
    request.url = request.url.copy_with(scheme=host.scheme)


def main(notebook):
    credentials = DatabricksCredentials(databricks_instance=host.netloc, token=os.environ["DATABRICKS_TOKEN"],
                                        client_kwargs={"event_hooks": {"request": [plain_http]}})
    task = RunSubmitTaskSettings(task_key="prefect", existing_cluster_id="local",
                                 notebook_task=NotebookTask(notebook_path=notebook,
                                                            base_parameters={"who": "prefect"}))
    outputs, metadata = asyncio.run(jobs_runs_submit_and_wait_for_completion(
        databricks_credentials=credentials, run_name="prefect run", tasks=[task], poll_frequency_seconds=1,
        max_wait_seconds=120, return_metadata=True))
    return {"outputs": outputs, "metadata": metadata}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1]), default=str))
