"""A live local workspace on loopback (no Spark), shared by the tests of a session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.workspace import ImportFormat, Language

from aml_databricks.workspace import LocalWorkspace


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalWorkspace]:
    with LocalWorkspace(tmp_path_factory.mktemp("workspace"), spark=False, max_concurrent_tasks=4) as ws:
        yield ws


@pytest.fixture(scope="session")
def client(workspace: LocalWorkspace) -> WorkspaceClient:
    return workspace.client


def upload_notebook(client: WorkspaceClient, path: str, source: str, language: Language = Language.PYTHON) -> str:
    header = "# Databricks notebook source\n" if language == Language.PYTHON else "-- Databricks notebook source\n"
    text = source if source.startswith(header) else header + source
    client.workspace.upload(path, text.encode(), format=ImportFormat.SOURCE, language=language, overwrite=True)
    return path


@pytest.fixture
def counter_file(tmp_path: Path) -> Path:
    """A file a notebook appends one line to per execution: counts how often it really ran."""
    return tmp_path / "executions.txt"
