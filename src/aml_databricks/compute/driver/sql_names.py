"""Databricks SQL that Spark's parser reads differently, rewritten before Spark parses a statement.

  - `USE CATALOG hive_metastore|spark_catalog|main` is Spark's `SET CATALOG '…'` (Spark has no
    `USE CATALOG`); any other catalog is a one-line error naming the ones that exist. Three-part
    names need no rewriting: the servers register `hive_metastore` and `main` as names of the
    session catalog (delta/catalog/CatalogAlias.java), for SQL and the DataFrame API alike;
  - `LOCATION 'dbfs:/mnt/x'` (and any storage URI the workspace maps) is the path Spark resolves.
Only code outside string literals, quoted identifiers and comments is rewritten.
"""

from __future__ import annotations

import re
from collections.abc import Callable

LOCAL_CATALOGS = ("hive_metastore", "spark_catalog", "main")
_USE_CATALOG = re.compile(r"^\s*USE\s+CATALOG\s+(`?)([\w-]+)\1\s*;?\s*$", re.IGNORECASE)
_ENDS_WITH_LOCATION = re.compile(r"\bLOCATION\s*$", re.IGNORECASE)


class UnknownCatalog(Exception):
    """A catalog the local workspace does not have."""


def rewrite(statement: str, spark_path: Callable[[str], str]) -> str:
    """`statement` with `USE CATALOG` and DBFS locations as the local Spark understands them."""
    use = _USE_CATALOG.match(statement)
    if use is not None:
        catalog = use.group(2)
        if catalog.lower() not in LOCAL_CATALOGS:
            raise UnknownCatalog(
                f"[NO_SUCH_CATALOG_EXCEPTION] Catalog '{catalog}' was not found: the local workspace has one "
                f"catalog, hive_metastore (also named spark_catalog and main)."
            )
        return f"SET CATALOG '{catalog.lower()}'"
    out: list[str] = []
    for kind, text in _segments(statement):
        if kind == "string" and out and _ENDS_WITH_LOCATION.search("".join(out)):
            quote = text[0]
            text = quote + spark_path(text[1:-1]) + quote
        out.append(text)
    return "".join(out)


def _segments(sql: str) -> list[tuple[str, str]]:
    """`sql` cut into ("code" | "string" | "ident" | "comment", text) pieces, in order."""
    pieces: list[tuple[str, str]] = []
    start = i = 0

    def flush(end: int) -> None:
        if end > start:
            pieces.append(("code", sql[start:end]))

    while i < len(sql):
        char = sql[i]
        if char in "'\"`":
            flush(i)
            j = i + 1
            while j < len(sql) and sql[j] != char:
                j += 2 if sql[j] == "\\" and char != "`" else 1
            j = min(j + 1, len(sql))
            pieces.append(("ident" if char == "`" else "string", sql[i:j]))
            start = i = j
        elif sql.startswith("--", i) or sql.startswith("/*", i):
            flush(i)
            end = sql.find("\n", i) if sql[i] == "-" else sql.find("*/", i + 2)
            j = len(sql) if end < 0 else (end if sql[i] == "-" else end + 2)
            pieces.append(("comment", sql[i:j]))
            start = i = j
        else:
            i += 1
    flush(len(sql))
    return pieces
