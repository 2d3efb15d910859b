"""Widgets in SQL (`.sql` notebooks and %sql cells), as Databricks reads them.

  CREATE WIDGET TEXT|DROPDOWN|COMBOBOX|MULTISELECT name DEFAULT 'value' [CHOICES SELECT ...]
  REMOVE WIDGET name
  getArgument('name')   the widget's value as a string literal
  :name                 a named parameter marker, bound to the widget's value (DBR 15.2+)
  ${name}, $name        the legacy textual substitution of the widget's value

The task's parameters (base_parameters) override defaults, as for Python widgets. Names that are not
widgets are left alone (Spark's own `${var}` substitution and parameter markers still apply).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from aml_databricks.compute.driver.dbutils import WidgetsUtils

_CREATE = re.compile(
    r"^\s*CREATE\s+WIDGET\s+(TEXT|DROPDOWN|COMBOBOX|MULTISELECT)\s+(`?)(\w+)\2"
    r"(?:\s+DEFAULT\s+(?P<default>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s;]+))?"
    r"(?:\s+CHOICES\s+(?P<choices>.+?))?\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_REMOVE = re.compile(r"^\s*REMOVE\s+WIDGET\s+(`?)(\w+)\1\s*;?\s*$", re.IGNORECASE)
_GET_ARGUMENT = re.compile(r"\bgetArgument\s*\(\s*(['\"])(\w+)\1\s*(?:,\s*(['\"])(.*?)\3\s*)?\)", re.IGNORECASE)
_LEGACY = re.compile(r"\$\{(\w+)\}|\$(\w+)")
_MARKER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def run_widget_statement(statement: str, widgets: WidgetsUtils, query: Callable[[str], list[Any]]) -> bool:
    """Define or remove a widget if `statement` is CREATE/REMOVE WIDGET; False when it is another statement.

    `query` runs a CHOICES query and returns its first column."""
    remove = _REMOVE.match(statement)
    if remove is not None:
        widgets.remove(remove.group(2))
        return True
    create = _CREATE.match(statement)
    if create is None:
        return False
    kind, name = create.group(1).lower(), create.group(3)
    default = _unquote(create.group("default") or "")
    if kind == "text":
        widgets.text(name, default)
        return True
    choices_sql = (create.group("choices") or "").strip()
    choices = [str(value) for value in query(choices_sql)] if choices_sql else [default]
    getattr(widgets, kind)(name, default, choices)
    return True


def substitute(statement: str, widgets: WidgetsUtils) -> tuple[str, dict[str, str]]:
    """The statement with getArgument() and legacy `$name` replaced, and the values of its `:name` markers."""
    values = widgets.getAll()

    def argument(match: re.Match[str]) -> str:
        value = values.get(match.group(2), match.group(4))
        return match.group(0) if value is None else _quote(value)

    def legacy(match: re.Match[str]) -> str:
        value = values.get(match.group(1) or match.group(2))
        return match.group(0) if value is None else value

    text = _LEGACY.sub(legacy, _GET_ARGUMENT.sub(argument, statement))
    markers = {name: values[name] for name in _MARKER.findall(_outside_strings(text)) if name in values}
    return text, markers


def _outside_strings(sql: str) -> str:
    return re.sub(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`[^`]*`|--[^\n]*", " ", sql)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
