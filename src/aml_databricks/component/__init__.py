"""The Azure ML assets of the step: the `execute_databricks_notebook` component and its environment.

They ship as package data, so the component a user registers always matches the installed step; the
environment is built from a Docker context that `component export` fills with a wheel of this package.
"""

from __future__ import annotations

from pathlib import Path

COMPONENT_NAME = "execute_databricks_notebook"
ASSETS_DIR = Path(__file__).parent
COMPONENT_FILE = ASSETS_DIR / "component.yml"
ENVIRONMENT_FILE = ASSETS_DIR / "environment.yml"
DOCKERFILE = ASSETS_DIR / "Dockerfile"
# The environment's build context, beside environment.yml (its `build.path`).
CONTEXT_DIR_NAME = "context"
