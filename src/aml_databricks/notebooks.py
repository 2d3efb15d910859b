"""Databricks notebooks as data: parse source and .ipynb notebooks into cells, and render them back.

Pure functions, no I/O. Three inputs are understood:

* Databricks source format: a header line (`# Databricks notebook source`, `-- Databricks notebook
  source` for SQL, `// ...` for Scala), cells separated by `# COMMAND ----------`, and cells in
  another language written as `# MAGIC %sql` / `# MAGIC SELECT 1` lines.
* Jupyter notebooks (.ipynb JSON), as the workspace's JUPYTER import/export format.
* Anything else: a plain file, i.e. a notebook of one cell.

Every cell remembers the line of the original file its code starts on (`first_line`), so the driver
can compile a cell such that a traceback names the line of the notebook file, not of the cell.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PYTHON, SQL, SCALA, R = "PYTHON", "SQL", "SCALA", "R"

# The comment marker that introduces headers, separators and MAGIC lines, per notebook language.
_COMMENT = {PYTHON: "#", R: "#", SQL: "--", SCALA: "//"}
_HEADER = "Databricks notebook source"
_EXTENSIONS = {".py": PYTHON, ".sql": SQL, ".scala": SCALA, ".r": R}

# Magics whose arguments belong on the magic line itself (`%run ./other`, `%pip install x`).
_INLINE_MAGICS = frozenset({"run", "pip", "fs"})
# Spellings that mean the same cell language.
_MAGIC_ALIASES = {"md-sandbox": "md", "bash": "sh", "py": "python"}
_IPYNB_DATABRICKS_META = "application/vnd.databricks.v1+notebook"


@dataclass(frozen=True)
class Cell:
    """One command of a notebook."""

    index: int  # 0-based position in the notebook; Databricks shows it as "Cmd <index + 1>"
    language: str  # lower case: python | sql | scala | r | md | sh | run | pip | fs | ...
    source: str  # the code, without the magic line and without `# MAGIC ` prefixes
    first_line: int  # line number (1-based) in the original file of the first line of `source`
    magic: bool = False  # True when the language was chosen with a `%magic` line

    @property
    def number(self) -> int:
        """The 1-based cell number users see in Databricks ("Cmd 3")."""
        return self.index + 1


@dataclass(frozen=True)
class Notebook:
    language: str  # the notebook's default language: PYTHON | SQL | SCALA | R
    cells: tuple[Cell, ...]
    format: str  # "source" (Databricks source), "ipynb" or "plain" (a file without the header)


def detect_language(text: str, filename: str | None = None) -> str | None:
    """The notebook language from the source header, else from an .ipynb's metadata or the file extension."""
    header_language = _header_language(text)
    if header_language is not None:
        return header_language
    if _looks_like_ipynb(text):
        try:
            return _ipynb_language(json.loads(text))
        except ValueError:
            pass
    if filename:
        lowered = filename.lower()
        for extension, language in _EXTENSIONS.items():
            if lowered.endswith(extension):
                return language
    return None


def is_databricks_source(text: str) -> bool:
    return _header_language(text) is not None


def parse(text: str, language: str | None = None, filename: str | None = None) -> Notebook:
    """Cells of a Databricks source notebook, an .ipynb document, or a plain file (one cell).

    `language` is the default language for formats that don't say (plain files); the header of a
    source notebook and the metadata of an .ipynb win over it.
    """
    header_language = _header_language(text)
    if header_language is not None:
        return Notebook(header_language, tuple(_parse_source(text, header_language)), "source")
    if _looks_like_ipynb(text):
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        if isinstance(document, dict) and isinstance(document.get("cells"), list):
            return parse_ipynb(document, language)
    default = (language or detect_language(text, filename) or PYTHON).upper()
    cell = Cell(index=0, language=default.lower(), source=text, first_line=1)
    return Notebook(default, (cell,), "plain")


def parse_ipynb(document: dict[str, Any], language: str | None = None) -> Notebook:
    """Cells of a Jupyter notebook; line numbers are relative to each cell (there is no file)."""
    notebook_language = _ipynb_language(document) or (language or PYTHON).upper()
    cells: list[Cell] = []
    for raw in document.get("cells", []):
        if not isinstance(raw, dict):
            continue
        source = raw.get("source", "")
        text = "".join(source) if isinstance(source, list) else str(source)
        lines = text.split("\n")
        if raw.get("cell_type") == "markdown":
            cells.append(Cell(len(cells), "md", text, 1, magic=True))
        elif raw.get("cell_type") == "code":
            cells.append(_make_cell(len(cells), lines, 1, notebook_language, strip_magic_prefix=None))
        # raw cells carry no code: Databricks ignores them too
    return Notebook(notebook_language, tuple(cells), "ipynb")


def to_source(cells: Sequence[Cell], language: str) -> str:
    """Render cells in the Databricks source format of `language` (what workspace export SOURCE returns)."""
    language = language.upper()
    comment = _COMMENT.get(language, "#")
    rendered = []
    for cell in cells:
        if _needs_magic(cell, language):
            magic_lines = _magic_lines(cell)
            rendered.append("\n".join(f"{comment} MAGIC {line}".rstrip() for line in magic_lines))
        else:
            rendered.append(cell.source.rstrip("\n"))
    separator = f"\n\n{comment} COMMAND ----------\n\n"
    return f"{comment} {_HEADER}\n" + separator.join(rendered) + "\n"


def to_ipynb(cells: Sequence[Cell], language: str, name: str = "") -> str:
    """Render cells as a Jupyter notebook (nbformat 4), the workspace's JUPYTER export format."""
    language = language.upper()
    ipynb_cells: list[dict[str, Any]] = []
    for cell in cells:
        if cell.language == "md":
            cell_type, text = "markdown", cell.source
        else:
            cell_type = "code"
            text = "\n".join(_magic_lines(cell)) if _needs_magic(cell, language) else cell.source
        ipynb_cells.append(
            {
                "cell_type": cell_type,
                "metadata": {},
                "source": text.splitlines(keepends=True),
                **({"execution_count": None, "outputs": []} if cell_type == "code" else {}),
            }
        )
    document = {
        "cells": ipynb_cells,
        "metadata": {
            _IPYNB_DATABRICKS_META: {"language": language.lower(), "notebookName": name},
            "language_info": {"name": language.lower()},
        },
        "nbformat": 4,
        "nbformat_minor": 0,
    }
    return json.dumps(document, indent=1) + "\n"


def source_to_ipynb(text: str, language: str | None = None, name: str = "") -> str:
    """Convert a source notebook (or plain file) to .ipynb JSON."""
    notebook = parse(text, language)
    return to_ipynb(notebook.cells, notebook.language, name)


def ipynb_to_source(text: str, language: str | None = None) -> tuple[str, str]:
    """Convert .ipynb JSON to the Databricks source format; returns (source, language)."""
    notebook = parse_ipynb(json.loads(text), language)
    return to_source(notebook.cells, notebook.language), notebook.language


# --- parsing helpers -----------------------------------------------------------------------------


def _header_language(text: str) -> str | None:
    first_line = text.lstrip("\ufeff").split("\n", 1)[0].strip()
    for language, comment in _COMMENT.items():  # PYTHON before R: both use '#'
        if first_line == f"{comment} {_HEADER}":
            return language
    return None


def _looks_like_ipynb(text: str) -> bool:
    return text.lstrip("\ufeff \t\r\n").startswith("{")


def _ipynb_language(document: Any) -> str | None:
    if not isinstance(document, dict):
        return None
    metadata = document.get("metadata") or {}
    for candidate in (
        (metadata.get(_IPYNB_DATABRICKS_META) or {}).get("language"),
        (metadata.get("language_info") or {}).get("name"),
        (metadata.get("kernelspec") or {}).get("language"),
    ):
        if isinstance(candidate, str) and candidate.upper() in _COMMENT:
            return candidate.upper()
    return None


def _parse_source(text: str, language: str) -> list[Cell]:
    comment = _COMMENT[language]
    separator = f"{comment} COMMAND ----------"
    lines = text.lstrip("\ufeff").split("\n")
    cells: list[Cell] = []
    chunk: list[str] = []
    chunk_start = 2  # line 1 is the header
    for number, line in enumerate(lines[1:], start=2):
        if line.rstrip("\r").strip() == separator:
            cells.append(_make_cell(len(cells), chunk, chunk_start, language, comment))
            chunk, chunk_start = [], number + 1
        else:
            chunk.append(line.rstrip("\r"))
    cells.append(_make_cell(len(cells), chunk, chunk_start, language, comment))
    return cells


def _make_cell(index: int, lines: list[str], first_line: int, language: str, strip_magic_prefix: str | None) -> Cell:
    """One cell from its raw lines. `strip_magic_prefix` is the comment marker of MAGIC lines, if any."""
    lines, first_line = _trim(lines, first_line)
    # `# DBTITLE 1,Title` names the cell in the Databricks UI; it is not code.
    if strip_magic_prefix and lines and lines[0].startswith(f"{strip_magic_prefix} DBTITLE"):
        lines, first_line = _trim(lines[1:], first_line + 1)
    magic_marker = f"{strip_magic_prefix} MAGIC" if strip_magic_prefix else None
    if magic_marker and lines and lines[0].startswith(magic_marker):
        lines = [_strip_magic(line, magic_marker) for line in lines]
    if lines and lines[0].startswith("%"):
        return _magic_cell(index, lines, first_line)
    return Cell(index, language.lower(), "\n".join(lines), first_line)


def _magic_cell(index: int, lines: list[str], first_line: int) -> Cell:
    magic_line = lines[0].lstrip("%")  # `%%sql` (Jupyter's cell magic) means the same as `%sql`
    name, _, rest = magic_line.partition(" ")
    name = _MAGIC_ALIASES.get(name.strip().lower(), name.strip().lower())
    body = lines[1:]
    if rest.strip():
        # `%run ./x` or `%sql SELECT 1`: the code starts on the magic line itself.
        return Cell(index, name, "\n".join([rest.strip(), *body]), first_line, magic=True)
    return Cell(index, name, "\n".join(body), first_line + 1, magic=True)


def _strip_magic(line: str, marker: str) -> str:
    if not line.startswith(marker):
        return line  # a plain line inside a MAGIC cell: keep it as written
    rest = line[len(marker) :]
    return rest[1:] if rest.startswith(" ") else rest


def _trim(lines: list[str], first_line: int) -> tuple[list[str], int]:
    """Drop blank lines around a cell, keeping `first_line` pointing at the first kept line."""
    start = 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    end = len(lines)
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end], first_line + start


# --- rendering helpers ---------------------------------------------------------------------------


def _needs_magic(cell: Cell, language: str) -> bool:
    return cell.magic or cell.language != language.lower()


def _magic_lines(cell: Cell) -> list[str]:
    body = cell.source.split("\n") if cell.source else []
    if cell.language in _INLINE_MAGICS and body:
        return [f"%{cell.language} {body[0]}", *body[1:]]
    return [f"%{cell.language}", *body]
