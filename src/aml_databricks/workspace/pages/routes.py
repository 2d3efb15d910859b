"""The workspace's HTML pages: runs list (home), run page, workspace browser, login.

Pages are server-rendered with Jinja2 (autoescaping on: every value a notebook produced is text on the
page) plus one small script (static/pages.js) that refreshes a running run's body from
`/runs/<id>/body` and posts Cancel. Every page needs the session cookie that `/login` gives in
exchange for the workspace token (pages/auth.py); without it a page redirects to the login form
and shows nothing of any run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from aml_databricks.workspace.errors import ApiError
from aml_databricks.workspace.jobs import Jobs
from aml_databricks.workspace.objects import Objects
from aml_databricks.workspace.pages import auth, views

_templates = Environment(loader=PackageLoader("aml_databricks.workspace.pages", "templates"),
                         autoescape=select_autoescape(default=True, default_for_string=True))
STATIC_DIR = Path(__file__).parent / "static"
_STATE_FILTERS = (*views.ACTIVE_STATES, "TERMINATED", "SKIPPED", "INTERNAL_ERROR",
                  "SUCCESS", "FAILED", "CANCELED", "TIMEDOUT")


def render(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    page = _templates.get_template(template).render(**context)
    # errors="replace": a name stored before requests were checked may hold a lone surrogate
    return HTMLResponse(page.encode(errors="replace"), status_code=status)


def page_routes(jobs: Jobs, objects: Objects, runs_dir: Path, token: str) -> list[Route | Mount]:
    def guarded(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            if not auth.signed_in(request, token):
                if request.method != "GET" or request.url.path.endswith("/body"):
                    return JSONResponse({"error": "sign in first"}, status_code=401)
                return RedirectResponse(auth.login_url_for(request), status_code=303)
            try:
                response: Response = await handler(request)
                return response
            except ApiError as error:
                return render("error.html", error.status, message=error.message)

        return endpoint

    async def home(request: Request) -> Response:
        query = request.query_params
        page = int(query.get("page", "0")) if query.get("page", "0").isdigit() else 0
        listing = views.runs_list(jobs, state=query.get("state", ""), name=query.get("name", ""), page=page)
        return render("runs.html", **listing, states=_STATE_FILTERS)

    async def run_page(request: Request) -> Response:
        run = views.run_view(jobs, runs_dir, request.path_params["run_id"])
        return render("run.html", run=run)

    async def run_body(request: Request) -> Response:
        run = views.run_view(jobs, runs_dir, request.path_params["run_id"])
        return render("run_body.html", run=run)

    async def cancel(request: Request) -> Response:
        jobs.cancel(request.path_params["run_id"])
        return JSONResponse({})

    async def run_file(request: Request) -> Response:
        path = views.folder_file(runs_dir, request.path_params["run_id"], request.path_params["name"])
        if path is None:
            return render("error.html", 404, message="No such file in this run's folder.")
        return FileResponse(path, media_type="text/plain; charset=utf-8")

    async def browse(request: Request) -> Response:
        path = "/" + request.path_params.get("path", "").strip("/")
        info = objects.status(path)
        if info["object_type"] == "DIRECTORY":
            entries = sorted(objects.list(path), key=lambda e: (e["object_type"] != "DIRECTORY", e["path"]))
            return render("browse.html", path=path, entries=entries, parents=_parents(path))
        content, _ = objects.export(path, "SOURCE")
        return render("browse.html", path=path, entries=None, parents=_parents(path), info=info,
                      source=content.decode(errors="replace"))

    return [
        Route("/", guarded(home), methods=["GET"]),
        Route("/login", auth.login_endpoint(token, render), methods=["GET", "POST"]),
        Route("/runs/{run_id:int}", guarded(run_page), methods=["GET"]),
        Route("/runs/{run_id:int}/body", guarded(run_body), methods=["GET"]),
        Route("/runs/{run_id:int}/cancel", guarded(cancel), methods=["POST"]),
        Route("/runs/{run_id:int}/files/{name}", guarded(run_file), methods=["GET"]),
        Route("/workspace", guarded(browse), methods=["GET"]),
        Route("/workspace/{path:path}", guarded(browse), methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]


def _parents(path: str) -> list[tuple[str, str]]:
    parts = [p for p in path.split("/") if p]
    return [("/".join(parts[: i + 1]), part) for i, part in enumerate(parts)]
