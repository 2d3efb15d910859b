"""SQL statements on Delta tables that Spark's engine can't run here, routed to delta-rs.

`route_sql(spark, sql)` wraps a session's `spark.sql` (and so `%sql` cells): MERGE INTO, UPDATE,
DELETE FROM, DESCRIBE HISTORY, DESCRIBE DETAIL, OPTIMIZE, VACUUM and RESTORE run through
`operations.py`; statements using a Delta feature the local tables don't have (change data feed,
CHECK constraints, generated or identity columns, deletion vectors, liquid clustering) are refused
in one line; everything else goes to Spark unchanged. Statements are recognised by their leading
keywords; the clauses are split at top level (outside quotes, parentheses and backticks).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from aml_databricks.delta import context, operations
from aml_databricks.delta.errors import DeltaError, DeltaUnsupported
from aml_databricks.delta.operations import MergeClause

_NAME = r"(?:delta\s*\.\s*`[^`]+`|[`\w.]+)"
_ALIAS = r"(?:\s+(?:AS\s+)?(?!(?:USING|SET|WHERE|ON)\b)(\w+))?"
_MERGE = re.compile(rf"^MERGE\s+INTO\s+({_NAME}){_ALIAS}\s+USING\s+(.*)$", re.I | re.S)
_UPDATE = re.compile(rf"^UPDATE\s+({_NAME}){_ALIAS}\s+SET\s+(.*)$", re.I | re.S)
_DELETE = re.compile(rf"^DELETE\s+FROM\s+({_NAME}){_ALIAS}(?:\s+WHERE\s+(.*))?$", re.I | re.S)
_HISTORY = re.compile(rf"^DESCRIBE\s+HISTORY\s+({_NAME})(?:\s+LIMIT\s+(\d+))?$", re.I | re.S)
_DETAIL = re.compile(rf"^DESCRIBE\s+DETAIL\s+({_NAME})$", re.I | re.S)
_OPTIMIZE = re.compile(rf"^OPTIMIZE\s+({_NAME})(?:\s+WHERE\s+(.*?))?(?:\s+ZORDER\s+BY\s*\(?([^)]*)\)?)?$", re.I | re.S)
_VACUUM = re.compile(rf"^VACUUM\s+({_NAME})(?:\s+RETAIN\s+([\d.]+)\s+HOURS)?(\s+DRY\s+RUN)?$", re.I | re.S)
_RESTORE = re.compile(
    rf"^RESTORE\s+(?:TABLE\s+)?({_NAME})\s+(?:TO\s+)?(?:VERSION\s+AS\s+OF\s+(\d+)|TIMESTAMP\s+AS\s+OF\s+'([^']+)')$",
    re.I | re.S,
)
_REFUSED = (
    (re.compile(r"\btable_changes\s*\(|enableChangeDataFeed\s*'?\s*=\s*'?true", re.I), "Change data feed"),
    (re.compile(r"\bADD\s+CONSTRAINT\b|\bCONSTRAINT\s+\w+\s+CHECK\b", re.I), "CHECK constraints"),
    (re.compile(r"\bGENERATED\s+ALWAYS\s+AS\s*\(", re.I), "Generated columns"),
    (re.compile(r"\bGENERATED\s+(?:ALWAYS|BY\s+DEFAULT)\s+AS\s+IDENTITY\b", re.I), "Identity columns"),
    (re.compile(r"enableDeletionVectors\s*'?\s*=\s*'?true", re.I), "Deletion vectors"),
    (re.compile(r"^\s*(?:CREATE|ALTER)\b.*\bCLUSTER\s+BY\b", re.I | re.S), "Liquid clustering (CLUSTER BY)"),
)


def route_sql(spark: Any, run_sql: Callable[..., Any]) -> Callable[..., Any]:
    """`spark.sql` that runs Delta-only statements through delta-rs and refuses unsupported features."""

    @functools.wraps(run_sql)
    def sql(sqlQuery: str, args: Any = None, **kwargs: Any) -> Any:
        statement = sqlQuery.strip().rstrip(";").strip() if isinstance(sqlQuery, str) else sqlQuery
        if isinstance(statement, str) and not kwargs and not args:
            for pattern, feature in _REFUSED:
                if pattern.search(statement):
                    raise DeltaUnsupported(feature)
            handled = run_delta_statement(spark, statement)
            if handled is not None:
                return handled
        return run_sql(sqlQuery, args, **kwargs) if args is not None else run_sql(sqlQuery, **kwargs)

    return sql


def run_delta_statement(spark: Any, statement: str) -> Any:
    """The statement's result if it is one of ours, else None (Spark runs it)."""
    head = statement[:40].upper().split()
    if not head or head[0] not in {"MERGE", "UPDATE", "DELETE", "DESCRIBE", "OPTIMIZE", "VACUUM", "RESTORE"}:
        return None
    statement = single_quoted_strings(statement)
    if found := _MERGE.match(statement):
        return _merge(spark, found.group(1), found.group(2), found.group(3))
    if found := _UPDATE.match(statement):
        local, shown = context.table_location(found.group(1))
        assignments_text, condition = _split_keyword(found.group(3), "WHERE")
        return operations.update(local, shown, _assignments(assignments_text, found.group(2)), condition)
    if found := _DELETE.match(statement):
        local, shown = context.table_location(found.group(1))
        return operations.delete(local, shown, _unalias(found.group(3), found.group(2)))
    if found := _HISTORY.match(statement):
        local, shown = context.table_location(found.group(1))
        return operations.history(local, shown, int(found.group(2)) if found.group(2) else None)
    if found := _DETAIL.match(statement):
        local, shown = context.table_location(found.group(1))
        return operations.detail(local, shown, None if shown.startswith(("/", "dbfs:")) else shown)
    if found := _OPTIMIZE.match(statement):
        local, shown = context.table_location(found.group(1))
        zorder = [c.strip().strip("`") for c in (found.group(3) or "").split(",") if c.strip()]
        return operations.optimize(local, shown, found.group(2), zorder or None)
    if found := _VACUUM.match(statement):
        local, shown = context.table_location(found.group(1))
        hours = float(found.group(2)) if found.group(2) else None
        return operations.vacuum(local, shown, hours, dry_run=bool(found.group(3)))
    if found := _RESTORE.match(statement):
        local, shown = context.table_location(found.group(1))
        version = int(found.group(2)) if found.group(2) else None
        return operations.restore(local, shown, version=version, timestamp=found.group(3))
    return None


def single_quoted_strings(text: str) -> str:
    """Spark SQL reads `"A%"` as a string (ANSI double-quoted identifiers are off, as on Databricks);
    delta-rs' SQL reads it as a column. Rewrite double-quoted strings as single-quoted ones, leaving
    single-quoted strings and backquoted names as they are."""
    out, index = [], 0
    while index < len(text):
        char = text[index]
        if char in "'`":
            end = _closing(text, index)
            out.append(text[index:end])
            index = end
        elif char == '"':
            end = _closing(text, index)
            body = text[index + 1 : end - 1].replace('\\"', '"').replace("'", "''")
            out.append(f"'{body}'")
            index = end
        else:
            out.append(char)
            index += 1
    return "".join(out)


def _closing(text: str, start: int) -> int:
    """The index just past the quote that closes the one at `start` (backslash escapes skipped)."""
    quote, index = text[start], start + 1
    while index < len(text):
        if text[index] == "\\" and quote != "`":
            index += 2
            continue
        if text[index] == quote:
            return index + 1
        index += 1
    return len(text)


def _merge(spark: Any, target: str, target_alias: str | None, rest: str) -> Any:
    source_text, rest = _take_source(rest)
    found = re.match(r"^(?:AS\s+)?(?!ON\b)(\w+)\s+ON\s+(.*)$|^ON\s+(.*)$", rest, re.I | re.S)
    if found is None:
        raise DeltaError(f"MERGE INTO: expected `USING source [alias] ON condition`, got: {rest[:80]}")
    source_alias = found.group(1)
    body = found.group(2) if found.group(2) is not None else found.group(3)
    parts = _split_top_level(body, "WHEN")
    condition, clauses = parts[0].strip(), [_merge_clause(p) for p in parts[1:]]
    source = spark.table(source_text) if not source_text.startswith("(") else spark.sql(source_text[1:-1])
    local, shown = context.table_location(target)
    return operations.merge(
        local, shown, source, condition, clauses, target_alias=target_alias, source_alias=source_alias or None
    )


def _take_source(text: str) -> tuple[str, str]:
    text = text.strip()
    if text.startswith("("):
        depth = 0
        for index, char in enumerate(text):
            depth += char == "("
            depth -= char == ")"
            if depth == 0:
                return text[: index + 1], text[index + 1 :].strip()
        raise DeltaError("MERGE INTO: unbalanced parentheses in the USING subquery")
    found = re.match(rf"^({_NAME})\s*(.*)$", text, re.S)
    if found is None:
        raise DeltaError("MERGE INTO: expected a source table after USING")
    return found.group(1), found.group(2)


_CLAUSE = re.compile(
    r"^(NOT\s+MATCHED\s+BY\s+SOURCE|NOT\s+MATCHED(?:\s+BY\s+TARGET)?|MATCHED)(?:\s+AND\s+(.*?))?\s+THEN\s+(.*)$",
    re.I | re.S,
)


def _merge_clause(text: str) -> MergeClause:
    found = _CLAUSE.match(text.strip())
    if found is None:
        raise DeltaError(f"MERGE INTO: can't read the clause WHEN {text.strip()[:80]}")
    when = " ".join(found.group(1).upper().split())
    condition = found.group(2)
    action = found.group(3).strip()
    upper = " ".join(action.upper().split())
    if when == "MATCHED" or when == "NOT MATCHED BY SOURCE":
        prefix = "matched" if when == "MATCHED" else "source"
        if upper == "DELETE":
            return MergeClause(f"{prefix}_delete", condition)
        if upper.startswith("UPDATE SET *") and prefix == "matched":
            return MergeClause("matched_update_all", condition)
        if upper.startswith("UPDATE SET"):
            return MergeClause(f"{prefix}_update", condition, _assignments(action[len("UPDATE") :].strip()[3:], None))
    else:
        if upper.startswith("INSERT *"):
            return MergeClause("insert_all", condition)
        inserted = re.match(r"^INSERT\s*\((.*?)\)\s*VALUES\s*\((.*)\)$", action, re.I | re.S)
        if inserted:
            columns = [c.strip().strip("`") for c in _split_top_level(inserted.group(1), ",")]
            values = [v.strip() for v in _split_top_level(inserted.group(2), ",")]
            return MergeClause("insert", condition, dict(zip(columns, values, strict=True)))
    raise DeltaError(f"MERGE INTO: unsupported action in WHEN {when}: {action[:80]}")


def _assignments(text: str, alias: str | None) -> dict[str, str]:
    result = {}
    for part in _split_top_level(text, ","):
        column, _, value = part.partition("=")
        name = column.strip().strip("`")
        if "." in name:
            name = name.rsplit(".", 1)[1].strip("`")
        result[name] = _unalias(value.strip(), alias) or ""
    return result


def _unalias(text: str | None, alias: str | None) -> str | None:
    """delta-rs' UPDATE/DELETE predicates don't know the statement's table alias: drop `alias.`."""
    if text is None or not alias:
        return text
    return re.sub(rf"\b{re.escape(alias)}\.", "", text)


def _split_keyword(text: str, keyword: str) -> tuple[str, str | None]:
    parts = _split_top_level(text, keyword)
    return parts[0].strip(), (keyword.join(parts[1:]).strip() or None) if len(parts) > 1 else None


def _split_top_level(text: str, separator: str) -> list[str]:
    """Split at `separator` (a keyword, whole word, any case; or one character) outside quotes and brackets."""
    parts, depth, quote, start, index = [], 0, "", 0, 0
    word = separator.isalpha()
    while index < len(text):
        char = text[index]
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"`":
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif depth == 0 and text[index : index + len(separator)].upper() == separator.upper():
            before = text[index - 1] if index else " "
            after = text[index + len(separator)] if index + len(separator) < len(text) else " "
            if not word or (not (before.isalnum() or before == "_") and not (after.isalnum() or after == "_")):
                parts.append(text[start:index])
                index += len(separator)
                start = index
                continue
        index += 1
    parts.append(text[start:])
    return parts
