"""The Azure ML assets of the step: the `execute_databricks_notebook` component and its environment.

Both ship as package data, so the component a user registers always matches the installed step.
"""

from __future__ import annotations

from pathlib import Path

COMPONENT_NAME = "execute_databricks_notebook"
ASSETS_DIR = Path(__file__).parent
COMPONENT_FILE = ASSETS_DIR / "component.yml"
ENVIRONMENT_FILE = ASSETS_DIR / "environment.yml"
