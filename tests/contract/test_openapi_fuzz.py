"""The OpenAPI description covers every route, and generated requests from it never get a 5xx.

schemathesis generates requests from /openapi.json (valid and invalid bodies, parameters, types) and
checks every answer: no server error, and the body matches the description. Over all operations
this is > 2,000 requests a run (FUZZ_EXAMPLES per operation).
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from aml_databricks.workspace.openapi import check_described, describe
from aml_databricks.workspace.server import LocalWorkspace
from tests.fixtures_workspace import upload_notebook

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402

pytestmark = [pytest.mark.server, pytest.mark.fuzz]

FUZZ_EXAMPLES = 35
# Not fuzzed: fault injection answers 503 by design, injected states and mounts of arbitrary local
# folders would let generated requests write anywhere on the machine.
NOT_FUZZED = r"/local/(admin|mounts)"


@pytest.fixture(scope="module")
def fuzzed_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalWorkspace]:
    with LocalWorkspace(tmp_path_factory.mktemp("fuzz"), spark=False, max_concurrent_tasks=2) as ws:
        yield ws


def test_the_description_is_built_from_the_served_route_table(fuzzed_workspace: LocalWorkspace) -> None:
    # The app checks its route table against the description when it is built (and builds /openapi.json
    # from it on the first request): a new route without a description fails every test that starts a
    # workspace.
    with pytest.raises(KeyError, match="no description"):
        check_described([("GET", "/api/2.0/something/new")])  # what the app checks when it is built
    with pytest.raises(KeyError, match="no description"):
        describe([("GET", "/api/2.0/something/new")])
    served = httpx.get(f"{fuzzed_workspace.host}/openapi.json").json()
    operations = {(m.upper(), p) for p, ops in served["paths"].items() for m in ops}
    for route in [("POST", "/api/2.1/jobs/runs/submit"), ("GET", "/api/2.0/jobs/runs/get"),
                  ("POST", "/api/2.0/dbfs/put"), ("GET", "/api/2.0/secrets/list"), ("GET", "/runs/{run_id}")]:
        assert route in operations
    assert httpx.get(f"{fuzzed_workspace.host}/api/2.1/jobs/runs/get",
                     params={"run_id": 1}, headers={}).status_code == 401  # the API still needs a token


def test_generated_requests_never_get_a_server_error(fuzzed_workspace: LocalWorkspace) -> None:
    loaded = schemathesis.openapi.from_url(f"{fuzzed_workspace.host}/openapi.json")
    loaded.config.update(base_url=fuzzed_workspace.host,
                         headers={"Authorization": f"Bearer {fuzzed_workspace.token}"})
    api = loaded.exclude(path_regex=NOT_FUZZED)
    sent = 0
    failures: list[str] = []
    for result in api.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None, phases=[Phase.explicit, Phase.generate])
        def exercise(case: Any) -> None:
            nonlocal sent
            response = case.call()
            sent += 1
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

        try:
            exercise()
        except Exception as failure:  # every operation is tried; all failures are reported together
            failures.append(f"{operation.label}: {str(failure)[:600]}")

    assert failures == []
    assert sent >= 2000


# The operations a run and a job go through, linked in the description (openapi.LINKS).
LIFECYCLE = r"/api/2\.1/jobs/(runs/(submit|get|get-output|cancel|delete|export|list)|create|run-now|get|delete)$"
STATEFUL_SCENARIOS = 40
STATEFUL_STEPS = 8
NOTEBOOK = "/Users/fuzz/lifecycle"


def runnable(body: Any) -> dict[str, Any]:
    """A submit/create body that starts a real run: generated ones are almost never valid (the stateless
    test covers those), and a sequence needs ids that exist. A generated `run_name`/`name` is kept."""
    settings_: dict[str, Any] = {"tasks": [{"task_key": "t", "existing_cluster_id": "local",
                                            "notebook_task": {"notebook_path": NOTEBOOK}}]}
    if isinstance(body, dict):
        for key in ("run_name", "name"):
            if isinstance(body.get(key), str):
                settings_[key] = body[key]
    return settings_


def test_linked_sequences_never_get_a_server_error(fuzzed_workspace: LocalWorkspace) -> None:
    # schemathesis follows the description's links: a submitted run is read, its task's output read,
    # cancelled, exported, deleted; a created job is run, its runs listed, the job deleted. Each step's
    # answer is checked as in the stateless test.
    upload_notebook(fuzzed_workspace.client, NOTEBOOK,
                    "import time\ntime.sleep(0.3)\ndbutils.notebook.exit('done')\n")
    loaded = schemathesis.openapi.from_url(f"{fuzzed_workspace.host}/openapi.json")
    loaded.config.update(base_url=fuzzed_workspace.host,
                         headers={"Authorization": f"Bearer {fuzzed_workspace.token}"})
    api = loaded.include(path_regex=LIFECYCLE)
    followed: list[str] = []

    class Lifecycle(api.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Any) -> None:
            if case.operation.path.endswith(("/runs/submit", "/jobs/create")):
                case.body = runnable(case.body)
            elif case.operation.path.endswith("/run-now") and isinstance(case.body, dict):
                case.body = {"job_id": case.body.get("job_id")}  # the linked job; other fields are fuzzed stateless

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any) -> None:
            followed.append(f"{case.operation.path.rsplit('/jobs/', 1)[1]} {response.status_code}")
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

    # derandomize: the same scenarios every run, so which operations a run reaches does not vary by luck
    Lifecycle.run(settings=settings(max_examples=STATEFUL_SCENARIOS, stateful_step_count=STATEFUL_STEPS,
                                    deadline=None, suppress_health_check=list(HealthCheck), database=None,
                                    derandomize=True))
    answered = {step for step in followed if step.endswith(" 200")}
    if os.environ.get("FUZZ_SHOW"):
        print(collections.Counter(followed).most_common())
    for reached in ("runs/submit 200", "runs/get 200", "runs/get-output 200", "runs/cancel 200", "create 200",
                    "run-now 200"):
        assert reached in answered, f"never reached: {reached} ({sorted(set(followed))})"
