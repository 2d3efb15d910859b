"""runs/export: a notebook task run as one self-contained HTML page (code, and its outputs), as Databricks'
`GET /api/2.x/jobs/runs/export` returns it (`{"views": [{"content", "name", "type": "NOTEBOOK"}]}`).

`views_to_export`: CODE (the default) and ALL give the notebook view; DASHBOARDS gives none, since a
local run has no dashboards.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from aml_databricks.workspace.errors import InvalidParameterValue
from aml_databricks.workspace.jobs import Jobs
from aml_databricks.workspace.pages import views
from aml_databricks.workspace.pages.routes import STATIC_DIR, _templates

VIEWS = ("CODE", "DASHBOARDS", "ALL")


def export_run(jobs: Jobs, runs_dir: Path, run_id: Any, views_to_export: Any) -> dict[str, Any]:
    wanted = str(views_to_export or "CODE").upper()
    if wanted not in VIEWS:
        raise InvalidParameterValue(f"views_to_export must be one of {', '.join(VIEWS)}, got {views_to_export!r}.")
    if run_id in (None, ""):
        raise InvalidParameterValue("run_id is required.")
    run = views.run_view(jobs, runs_dir, jobs.get_run(run_id, "2.1")["run_id"])
    task = run["task"]
    if task is None:
        raise InvalidParameterValue("Export a task run: this run has several tasks (export each task's run_id).")
    if task["kind"] != "notebook_task":
        raise InvalidParameterValue("Only notebook task runs can be exported.")
    if wanted == "DASHBOARDS":
        return {"views": []}
    name = posixpath.basename(task["path"]) or f"run-{run['run_id']}"
    content = _templates.get_template("export.html").render(
        run=run, name=name, include_outputs=True, css=(STATIC_DIR / "pages.css").read_text())
    return {"views": [{"content": content, "name": name, "type": "NOTEBOOK"}]}
