"""Upload the notebooks a pipeline's Databricks nodes reference into the local workspace.

The rule is by name: a node with `notebook_path: /Shared/demo/export_table` gets
`<notebooks dir>/export_table.py` (or .sql, .scala, .r, .ipynb). The folder defaults to a
`notebooks/` folder beside the pipeline file or one level up (the examples' layout).
"""

from __future__ import annotations

import base64
import posixpath
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aml_databricks.errors import UsageError
from aml_databricks.pipeline.graph import Literal, Node, ParentInput, PipelineGraph

LANGUAGE_BY_SUFFIX = {".py": "PYTHON", ".sql": "SQL", ".scala": "SCALA", ".r": "R", ".ipynb": "PYTHON"}


def default_notebooks_dir(pipeline_file: Path) -> Path | None:
    for candidate in (pipeline_file.parent / "notebooks", pipeline_file.parent.parent / "notebooks"):
        if candidate.is_dir():
            return candidate
    return None


def notebook_paths(graph: PipelineGraph, nodes: Sequence[Node]) -> list[str]:
    """The workspace paths the nodes will run, in node order, without duplicates."""
    paths: list[str] = []
    for node in nodes:
        binding = node.bindings.get("notebook_path")
        value = None
        if isinstance(binding, Literal):
            value = binding.value
        elif isinstance(binding, ParentInput):
            value = graph.inputs.get(binding.name)
        if isinstance(value, str) and value not in paths:
            paths.append(value)
    return paths


def find_source(folder: Path, workspace_path: str) -> Path | None:
    name = posixpath.basename(workspace_path.rstrip("/"))
    for suffix in LANGUAGE_BY_SUFFIX:
        candidate = folder / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def workspace_api(host: str, token: str | None) -> Any:
    """databricks-sdk's Workspace API for `host`, without importing the whole SDK (about 1 s):
    the same class and client `WorkspaceClient(host=host, token=token).workspace` would use."""
    from aml_databricks.sdk_import import defer_package_init

    defer_package_init()
    from databricks.sdk.config import Config
    from databricks.sdk.core import ApiClient
    from databricks.sdk.service.workspace import WorkspaceAPI

    return WorkspaceAPI(ApiClient(Config(host=host, token=token)))  # type: ignore[no-untyped-call]


def upload_notebooks(api: Any, graph: PipelineGraph, nodes: Sequence[Node], folder: Path | None) -> None:
    """Import each referenced notebook found in `folder` through `api` (databricks-sdk's Workspace
    API); say which ones the workspace must already have."""
    from databricks.sdk.service.workspace import ImportFormat, Language

    explicit = folder is not None
    folder = folder or default_notebooks_dir(graph.source)
    if folder is None:
        return
    if not folder.is_dir():
        raise UsageError(f"--notebooks: not a folder: {folder}")
    for path in notebook_paths(graph, nodes):
        source = find_source(folder, path)
        if source is None:
            if explicit:
                raise UsageError(f"notebook {path}: no {posixpath.basename(path)}.py, .sql or .ipynb in {folder}")
            print(f"notebook {path}: not in {folder}, using the workspace's own", flush=True)
            continue
        jupyter = source.suffix == ".ipynb"
        api.mkdirs(posixpath.dirname(path) or "/")
        api.import_(
            path,
            content=base64.b64encode(source.read_bytes()).decode(),
            format=ImportFormat.JUPYTER if jupyter else ImportFormat.SOURCE,
            language=None if jupyter else Language(LANGUAGE_BY_SUFFIX[source.suffix]),
            overwrite=True,
        )
        print(f"notebook {path} <- {source}", flush=True)
