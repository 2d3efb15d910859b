"""Render a component's command the way Azure ML does, for a local shell.

`$[[ ... ]]` keeps its content only when every input it mentions has a value; `${{inputs.x}}` and
`${{outputs.y}}` are replaced by the value. Values are shell-quoted (Azure ML pastes them raw), so
a value with a space stays one argument.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

from aml_databricks.errors import UsageError

PLACEHOLDER = re.compile(r"\$\{\{\s*(inputs|outputs)\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
OPTIONAL_PART = re.compile(r"\$\[\[(.*?)\]\]([ \t]*)", re.DOTALL)  # with the blanks after it


def render_command(template: str, inputs: Mapping[str, Any], outputs: Mapping[str, str]) -> str:
    """The command to run; `inputs` holds only inputs that have a value."""

    def keep_if_set(match: re.Match[str]) -> str:
        part = match.group(1)
        for kind, name in PLACEHOLDER.findall(part):
            if kind == "inputs" and inputs.get(name) is None:
                return ""
        return part + match.group(2)

    def value_of(match: re.Match[str]) -> str:
        kind, name = match.group(1), match.group(2)
        values = inputs if kind == "inputs" else outputs
        if name not in values or values[name] is None:
            raise UsageError(f"the command uses ${{{{{kind}.{name}}}}}, which has no value")
        return shlex.quote(format_value(values[name]))

    without_unset = OPTIONAL_PART.sub(keep_if_set, template)
    return PLACEHOLDER.sub(value_of, without_unset).strip()


def format_value(value: Any) -> str:
    """A value as Azure ML writes it into a command line (booleans as True/False, like Python)."""
    return str(value)
