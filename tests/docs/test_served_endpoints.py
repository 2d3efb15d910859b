"""docs/local-workspace.md's "What is served" table lists every route the workspace serves.

The routes come from the live app: `/openapi.json` (built from the route table itself, so it can't miss
one) for the REST API and the unauthenticated routes, and mlflow_api.py's prefixes for MLflow's API and UI,
which are forwarded rather than described. For each `/api/<version>/<group>/<rest>` the table must have a
row whose first cell names `/<group>/` and whose endpoints cell has `<rest>` in backticks. The client
test commands the doc gives must name test files that exist.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from aml_databricks.workspace import LocalWorkspace
from aml_databricks.workspace.mlflow_api import MLFLOW_PREFIXES, UI_PREFIX

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "local-workspace.md"
GROUPS_OF_MORE_THAN_ONE_SEGMENT = ("preview/scim/v2",)

pytestmark = pytest.mark.server


def served_section() -> str:
    text = DOC.read_text()
    start = text.index("## What is served\n")
    return text[start:text.index("\nBehaviour real clients depend on", start)]


def table_rows(section: str) -> list[tuple[str, str]]:
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 2 and not set(cells[0]) <= {"-"}:
            rows.append((cells[0], cells[1]))
    return rows


def group_and_rest(path: str) -> tuple[str, str]:
    """`/api/2.1/jobs/runs/submit` -> ("jobs", "runs/submit"); the Files API's `{path}` tail is cut."""
    short = re.sub(r"^/api/[^/]+/", "", path).split("/Volumes/{path}")[0]
    for group in GROUPS_OF_MORE_THAN_ONE_SEGMENT:
        if short.startswith(group + "/"):
            return group, short[len(group) + 1:]
    group, _, rest = short.partition("/")
    return group, rest


@pytest.fixture(scope="module")
def served(workspace: LocalWorkspace) -> list[str]:
    answer = requests.get(f"{workspace.host}/openapi.json", timeout=30)
    answer.raise_for_status()
    return sorted(answer.json()["paths"])


def test_every_api_route_is_in_the_table(served: list[str]) -> None:
    rows = table_rows(served_section())
    missing = []
    for path in (p for p in served if p.startswith("/api/")):
        group, rest = group_and_rest(path)
        listed = [endpoints for api, endpoints in rows if f"/{group}/" in api]
        if not listed or not any(re.search(rf"`{re.escape(rest)}(`|/)", endpoints) for endpoints in listed):
            missing.append(f"{path} (group /{group}/, endpoint `{rest}`)")
    assert not missing, "docs/local-workspace.md's 'What is served' table lacks:\n" + "\n".join(missing)


def test_the_other_routes_are_in_the_table(served: list[str]) -> None:
    section = served_section()
    others = [p for p in served if not p.startswith("/api/")]
    assert others  # the unauthenticated routes and the run page, at least
    for path in [*others, *MLFLOW_PREFIXES, UI_PREFIX + "/"]:
        shown = path.replace("{run_id}", "<run id>")
        assert f"`{shown}" in section, f"{path} is served but not in docs/local-workspace.md's table"


def test_client_test_commands_name_existing_tests() -> None:
    commands = re.findall(r"`(python -m pytest [^`]+)`", served_section())
    assert len(commands) >= 6
    for command in commands:
        for name in re.findall(r"tests/\S+\.py", command):
            assert (ROOT / name).is_file(), f"{command}: {name} does not exist"
    for client in ("test_airflow.py", "test_prefect.py", "test_dagster.py"):
        assert any(client in command and "-m clients" in command for command in commands), client
