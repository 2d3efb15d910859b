"""How one notebook cell becomes code: Python cells compiled so tracebacks show notebook lines,
%sql cells split into statements (compute/driver/sql_widgets.py substitutes widget values).

A Python cell is compiled with a file name naming the notebook and cell, and padded so its line
numbers are those of the notebook file: a traceback reads `File "<notebook /Users/me/etl, cell 3>", line 12`.
"""

from __future__ import annotations

import linecache
from types import CodeType

from aml_databricks.notebooks import Cell


def compile_cell(cell: Cell, path: str) -> CodeType:
    """Compile a cell so that its line numbers are the notebook file's lines."""
    filename = cell_filename(path, cell)
    padded = "\n" * (cell.first_line - 1) + cell.source + "\n"
    register_source(filename, padded)
    return compile(padded, filename, "exec")


def cell_filename(path: str, cell: Cell) -> str:
    return f"<notebook {path}, cell {cell.number}>"


def register_source(filename: str, source: str) -> None:
    # Tracebacks show the offending line: linecache keeps entries with mtime None.
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)


def split_sql(source: str) -> list[str]:
    """Statements of a %sql cell, split at `;` outside quotes and comments."""
    statements, current = [], []
    quote: str | None = None
    i = 0
    while i < len(source):
        char = source[i]
        if quote:
            current.append(char)
            if char == "\\" and quote != "`" and i + 1 < len(source):
                current.append(source[i + 1])
                i += 1
            elif char == quote:
                quote = None
        elif char in "'\"`":
            quote = char
            current.append(char)
        elif source.startswith("--", i):
            end = source.find("\n", i)
            i = len(source) if end < 0 else end
            continue
        elif source.startswith("/*", i):
            end = source.find("*/", i + 2)
            i = len(source) if end < 0 else end + 2
            continue
        elif char == ";":
            statements.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    statements.append("".join(current))
    return [s.strip() for s in statements if s.strip()]
