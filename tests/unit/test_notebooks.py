"""Notebook parsing, line numbers, and the source <-> ipynb conversions the Workspace API uses."""

from __future__ import annotations

import json

from aml_databricks import notebooks
from aml_databricks.notebooks import Cell

PYTHON_NOTEBOOK = """\
# Databricks notebook source
# DBTITLE 1,Read
df = spark.table("samples.iris")
print(df.count())

# COMMAND ----------

# MAGIC %md
# MAGIC # A title
# MAGIC
# MAGIC text

# COMMAND ----------

# MAGIC %sql
# MAGIC SELECT 1;
# MAGIC SELECT 2

# COMMAND ----------

# MAGIC %run ./helpers $x="1"

# COMMAND ----------

# MAGIC %pip install requests

# COMMAND ----------

# MAGIC %sh
# MAGIC ls -l
"""


def test_python_source_notebook_cells_languages_and_lines() -> None:
    notebook = notebooks.parse(PYTHON_NOTEBOOK)

    assert notebook.language == "PYTHON" and notebook.format == "source"
    assert [c.language for c in notebook.cells] == ["python", "md", "sql", "run", "pip", "sh"]
    python, md, sql, run, pip, sh = notebook.cells
    assert python.source == 'df = spark.table("samples.iris")\nprint(df.count())'
    assert python.first_line == 3  # the DBTITLE line is not code
    assert md.source == "# A title\n\ntext"
    assert sql.source == "SELECT 1;\nSELECT 2" and sql.first_line == 16
    assert run.source == './helpers $x="1"' and run.first_line == 21
    assert pip.source == "install requests"
    assert sh.source == "ls -l" and sh.first_line == 30
    assert [c.number for c in notebook.cells] == [1, 2, 3, 4, 5, 6]


def test_first_line_points_at_the_cell_code_in_the_file() -> None:
    lines = PYTHON_NOTEBOOK.split("\n")
    for cell in notebooks.parse(PYTHON_NOTEBOOK).cells:
        first_code_line = cell.source.split("\n")[0]
        assert first_code_line in lines[cell.first_line - 1]


def test_sql_notebook_defaults_to_sql_and_reads_magic_python() -> None:
    text = (
        "-- Databricks notebook source\n"
        "SELECT * FROM t\n\n"
        "-- COMMAND ----------\n\n"
        "-- MAGIC %python\n"
        "-- MAGIC x = 1\n"
        "-- MAGIC print(x)\n"
    )
    notebook = notebooks.parse(text)

    assert notebook.language == "SQL"
    assert [(c.language, c.source, c.first_line) for c in notebook.cells] == [
        ("sql", "SELECT * FROM t", 2),
        ("python", "x = 1\nprint(x)", 7),
    ]


def test_plain_file_is_one_cell() -> None:
    notebook = notebooks.parse("import sys\nprint(sys.argv)\n", filename="/Users/me/job.py")

    assert notebook.format == "plain" and notebook.language == "PYTHON"
    assert notebook.cells == (Cell(0, "python", "import sys\nprint(sys.argv)\n", 1),)


def test_empty_cells_keep_their_numbers() -> None:
    text = "# Databricks notebook source\n\n# COMMAND ----------\n\nx = 1\n"
    cells = notebooks.parse(text).cells

    assert [(c.number, c.source) for c in cells] == [(1, ""), (2, "x = 1")]


def test_ipynb_cells_magics_and_markdown() -> None:
    document = {
        "cells": [
            {"cell_type": "markdown", "source": ["# Title\n", "text"], "metadata": {}},
            {"cell_type": "code", "source": ["%sql\n", "SELECT 1"], "metadata": {}, "outputs": []},
            {"cell_type": "code", "source": "x = 1\ny = 2", "metadata": {}, "outputs": []},
            {"cell_type": "code", "source": ["%%bash\n", "echo hi"], "metadata": {}, "outputs": []},
        ],
        "metadata": {"language_info": {"name": "python"}},
        "nbformat": 4,
        "nbformat_minor": 2,
    }
    notebook = notebooks.parse(json.dumps(document))

    assert notebook.format == "ipynb" and notebook.language == "PYTHON"
    assert [(c.language, c.source, c.first_line) for c in notebook.cells] == [
        ("md", "# Title\ntext", 1),
        ("sql", "SELECT 1", 2),
        ("python", "x = 1\ny = 2", 1),
        ("sh", "echo hi", 2),
    ]


def test_detect_language() -> None:
    assert notebooks.detect_language("# Databricks notebook source\n") == "PYTHON"
    assert notebooks.detect_language("-- Databricks notebook source\n") == "SQL"
    assert notebooks.detect_language("// Databricks notebook source\n") == "SCALA"
    assert notebooks.detect_language("select 1", "/a/q.sql") == "SQL"
    assert notebooks.detect_language("x", "/a/b.py") == "PYTHON"
    assert notebooks.detect_language("x", "/a/b") is None
    ipynb = notebooks.to_ipynb([Cell(0, "sql", "SELECT 1", 1)], "SQL")
    assert notebooks.detect_language(ipynb) == "SQL"
    assert notebooks.is_databricks_source(PYTHON_NOTEBOOK)
    assert not notebooks.is_databricks_source("print(1)")


def test_source_round_trips_through_to_source() -> None:
    notebook = notebooks.parse(PYTHON_NOTEBOOK)
    rendered = notebooks.to_source(notebook.cells, notebook.language)

    # DBTITLE is UI metadata: everything else survives, and a second trip is stable.
    assert rendered == PYTHON_NOTEBOOK.replace("# DBTITLE 1,Read\n", "")
    again = notebooks.parse(rendered)
    assert [(c.language, c.source) for c in again.cells] == [(c.language, c.source) for c in notebook.cells]


def test_source_to_ipynb_and_back() -> None:
    source = notebooks.to_source(notebooks.parse(PYTHON_NOTEBOOK).cells, "PYTHON")
    ipynb = notebooks.source_to_ipynb(source, name="etl")
    document = json.loads(ipynb)

    assert document["nbformat"] == 4
    assert document["metadata"]["application/vnd.databricks.v1+notebook"] == {
        "language": "python",
        "notebookName": "etl",
    }
    kinds = [(c["cell_type"], "".join(c["source"]).split("\n")[0]) for c in document["cells"]]
    assert kinds[:3] == [("code", 'df = spark.table("samples.iris")'), ("markdown", "# A title"), ("code", "%sql")]
    assert notebooks.ipynb_to_source(ipynb) == (source, "PYTHON")


def test_sql_notebook_renders_python_cells_as_magic() -> None:
    cells = [Cell(0, "sql", "SELECT 1", 2), Cell(1, "python", "print(1)\n\nprint(2)", 6, magic=True)]
    rendered = notebooks.to_source(cells, "SQL")

    assert rendered == (
        "-- Databricks notebook source\nSELECT 1\n\n-- COMMAND ----------\n\n"
        "-- MAGIC %python\n-- MAGIC print(1)\n-- MAGIC\n-- MAGIC print(2)\n"
    )
    assert [(c.language, c.source) for c in notebooks.parse(rendered).cells] == [
        ("sql", "SELECT 1"),
        ("python", "print(1)\n\nprint(2)"),
    ]


def test_crlf_source_is_understood() -> None:
    text = PYTHON_NOTEBOOK.replace("\n", "\r\n")
    assert [c.language for c in notebooks.parse(text).cells] == ["python", "md", "sql", "run", "pip", "sh"]
