"""Widgets in SQL: CREATE/REMOVE WIDGET, getArgument(), `:name` markers and legacy `$name`."""

from __future__ import annotations

import pytest

from aml_databricks.compute.driver.dbutils import InputWidgetNotDefined, WidgetsUtils
from aml_databricks.compute.driver.sql_widgets import run_widget_statement, substitute


def no_query(sql: str) -> list[str]:
    raise AssertionError(f"unexpected query {sql}")


def test_create_widget_defines_a_default_the_task_parameters_override() -> None:
    widgets = WidgetsUtils({"state": "CA"})
    assert run_widget_statement("CREATE WIDGET TEXT state DEFAULT 'WA'", widgets, no_query)
    assert run_widget_statement('create widget text limit default "10";', widgets, no_query)
    assert (widgets.get("state"), widgets.get("limit")) == ("CA", "10")


def test_dropdown_choices_come_from_a_query() -> None:
    widgets = WidgetsUtils({})
    assert run_widget_statement("CREATE WIDGET DROPDOWN db DEFAULT 'a' CHOICES SELECT name FROM dbs", widgets,
                                lambda sql: ["a", "b"] if sql == "SELECT name FROM dbs" else [])
    assert widgets.get("db") == "a"


def test_remove_widget() -> None:
    widgets = WidgetsUtils({})
    widgets.text("x", "1")
    assert run_widget_statement("REMOVE WIDGET x", widgets, no_query)
    with pytest.raises(InputWidgetNotDefined):
        widgets.get("x")


def test_other_statements_are_not_widget_statements() -> None:
    assert not run_widget_statement("CREATE TABLE widget (id INT)", WidgetsUtils({}), no_query)


def test_values_reach_sql_in_every_form() -> None:
    widgets = WidgetsUtils({"city": "O'Hare"})
    widgets.text("n", "3")
    sql = ("SELECT * FROM t WHERE city = getArgument('city') AND name LIKE '%$n%' AND n < ${n} AND k = :n "
           "AND x::string = :unknown AND y = getArgument('missing', 'dflt') -- ${spark.sql.x} $other")
    text, markers = substitute(sql, widgets)
    assert text == ("SELECT * FROM t WHERE city = 'O\\'Hare' AND name LIKE '%3%' AND n < 3 AND k = :n "
                    "AND x::string = :unknown AND y = 'dflt' -- ${spark.sql.x} $other")
    assert markers == {"n": "3"}
