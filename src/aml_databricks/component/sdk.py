"""Lazy access to azure-ai-ml, and its validation errors turned into one readable line.

`import azure.ai.ml` costs over a second, so only the commands that load YAML pay for it.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
from types import ModuleType

from aml_databricks.errors import MissingExtraError

# azure-ai-ml logs "This is an experimental class ..." for half a dozen of its own schema classes
# on every load: noise for our users, who did not choose those classes.
_EXPERIMENTAL_LOGGER = "azure.ai.ml._utils._experimental"


def azure_ml(what: str) -> ModuleType:
    """`azure.ai.ml`, or MissingExtraError naming the extra that installs it."""
    logging.getLogger(_EXPERIMENTAL_LOGGER).setLevel(logging.ERROR)
    try:
        return importlib.import_module("azure.ai.ml")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("azure"):
            raise MissingExtraError("pipeline", what) from exc
        raise


def one_line(exc: BaseException) -> str:
    """The gist of an azure-ai-ml/marshmallow validation error: `path: message; ...` on one line.

    Their messages are multi-line: a title, a JSON document of errors and a paragraph of advice.
    """
    text = str(exc)
    errors = _json_errors(text)
    if errors:
        return "; ".join(errors)
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    return first


def _json_errors(text: str) -> list[str]:
    start = text.find("{")
    end = text.rfind("}")
    if start < 0 or end < start:
        return []
    try:
        document = json.loads(text[start : end + 1])
    except ValueError:
        return []
    if not isinstance(document, dict):
        return []
    found: list[str] = []
    for error in document.get("errors") or []:
        if isinstance(error, dict):
            message = re.sub(r"\s+", " ", str(error.get("message", ""))).strip()
            path = error.get("path")
            found.append(f"{path}: {message}" if path else message)
    return found
