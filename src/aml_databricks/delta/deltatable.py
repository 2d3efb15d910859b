"""`delta.tables.DeltaTable` for notebooks, backed by delta-rs (delta-spark's client needs server
plugins Spark Connect here doesn't have). The same methods and builders as delta-spark's Python
API; conditions and expressions are SQL strings (or Columns, taken by their SQL text), run by
delta-rs' SQL engine (DataFusion), which reads the usual comparisons, arithmetic and functions.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

from aml_databricks.delta import context, operations
from aml_databricks.delta.errors import DeltaNotATable, DeltaUnsupported
from aml_databricks.delta.operations import MergeClause

_COLUMN_TEXT = re.compile(r"^Column<'(.*)'>$", re.DOTALL)


def sql_text(expression: Any) -> str | None:
    """A condition or value as SQL text: a string as is, a Column by its SQL rendering."""
    if expression is None or isinstance(expression, str):
        return expression
    found = _COLUMN_TEXT.match(str(expression))
    if found:
        return found.group(1)
    return str(expression)


def _assignments(values: dict[str, Any] | None) -> dict[str, str]:
    return {str(k): str(sql_text(v)) for k, v in (values or {}).items()}


class DeltaTable:
    """A Delta table by its local folder; `shown` is how the user named it (for messages)."""

    def __init__(self, local: Path, shown: str, alias: str | None = None, name: str | None = None) -> None:
        self._local = local
        self._shown = shown
        self._alias = alias
        self._name = name

    @classmethod
    def forPath(cls, sparkSession: Any, path: str, hadoopConf: dict[str, str] | None = None) -> DeltaTable:
        local = context.path_location(path)
        if not cls._is_delta(local):
            raise DeltaNotATable(f"`{path}`")
        return cls(local, path)

    @classmethod
    def forName(cls, sparkSession: Any, tableOrViewName: str) -> DeltaTable:
        local, shown = context.table_location(tableOrViewName)
        if not cls._is_delta(local):
            raise DeltaNotATable(f"`{tableOrViewName}`")
        return cls(local, shown, name=tableOrViewName)

    @classmethod
    def isDeltaTable(cls, sparkSession: Any, identifier: str) -> bool:
        try:
            return cls._is_delta(context.path_location(identifier))
        except ValueError:
            return False

    @staticmethod
    def _is_delta(local: Path) -> bool:
        from deltalake import DeltaTable as RustTable

        return bool(RustTable.is_deltatable(str(local)))

    @classmethod
    def create(cls, sparkSession: Any = None) -> Any:
        raise DeltaUnsupported("DeltaTable.create() (use CREATE TABLE or df.write.saveAsTable)")

    createIfNotExists = create
    replace = create
    createOrReplace = create

    def toDF(self) -> Any:
        from aml_databricks.delta.commit import SHOWN_PATH_OPTION

        reader = context.spark().read.format("delta").option(SHOWN_PATH_OPTION, self._shown)
        frame = reader.load(self._local.as_uri())
        return frame.alias(self._alias) if self._alias else frame

    def alias(self, aliasName: str) -> DeltaTable:
        return DeltaTable(self._local, self._shown, aliasName, self._name)

    def history(self, limit: int | None = None) -> Any:
        return operations.history(self._local, self._shown, limit)

    def detail(self) -> Any:
        return operations.detail(self._local, self._shown, self._name)

    def delete(self, condition: Any = None) -> None:
        operations.delete(self._local, self._shown, sql_text(condition))

    def update(self, condition: Any = None, set: dict[str, Any] | None = None) -> None:
        if not set:
            raise ValueError("DeltaTable.update needs set={column: expression}")
        operations.update(self._local, self._shown, _assignments(set), sql_text(condition))

    def merge(self, source: Any, condition: Any) -> DeltaMergeBuilder:
        return DeltaMergeBuilder(self, source, str(sql_text(condition)))

    def optimize(self) -> DeltaOptimizeBuilder:
        return DeltaOptimizeBuilder(self)

    def vacuum(self, retentionHours: float | None = None) -> Any:
        return operations.vacuum(self._local, self._shown, retentionHours)

    def restoreToVersion(self, version: int) -> Any:
        return operations.restore(self._local, self._shown, version=version)

    def restoreToTimestamp(self, timestamp: str | datetime) -> Any:
        return operations.restore(self._local, self._shown, timestamp=str(timestamp))

    def generate(self, mode: str) -> None:
        operations.open_delta(self._local, self._shown).generate()

    def upgradeTableProtocol(self, readerVersion: int, writerVersion: int) -> None:
        raise DeltaUnsupported("upgradeTableProtocol")


class DeltaMergeBuilder:
    def __init__(self, table: DeltaTable, source: Any, condition: str) -> None:
        self._table = table
        self._source = source
        self._condition = condition
        self._clauses: list[MergeClause] = []
        self._merge_schema = False

    def _add(self, kind: str, condition: Any = None, values: dict[str, Any] | None = None) -> DeltaMergeBuilder:
        self._clauses.append(MergeClause(kind, sql_text(condition), _assignments(values)))
        return self

    def whenMatchedUpdate(self, condition: Any = None, set: dict[str, Any] | None = None) -> DeltaMergeBuilder:
        return self._add("matched_update", condition, set)

    def whenMatchedUpdateAll(self, condition: Any = None) -> DeltaMergeBuilder:
        return self._add("matched_update_all", condition)

    def whenMatchedDelete(self, condition: Any = None) -> DeltaMergeBuilder:
        return self._add("matched_delete", condition)

    def whenNotMatchedInsert(self, condition: Any = None, values: dict[str, Any] | None = None) -> DeltaMergeBuilder:
        return self._add("insert", condition, values)

    def whenNotMatchedInsertAll(self, condition: Any = None) -> DeltaMergeBuilder:
        return self._add("insert_all", condition)

    def whenNotMatchedBySourceUpdate(
        self, condition: Any = None, set: dict[str, Any] | None = None
    ) -> DeltaMergeBuilder:
        return self._add("source_update", condition, set)

    def whenNotMatchedBySourceDelete(self, condition: Any = None) -> DeltaMergeBuilder:
        return self._add("source_delete", condition)

    def withSchemaEvolution(self) -> DeltaMergeBuilder:
        self._merge_schema = True
        return self

    def execute(self) -> Any:
        return operations.merge(
            self._table._local,
            self._table._shown,
            self._source,
            self._condition,
            self._clauses,
            target_alias=self._table._alias,
            source_alias=source_alias(self._source),
            merge_schema=self._merge_schema,
        )


def source_alias(frame: Any) -> str | None:
    """The alias of `df.alias("s")` (a Spark Connect SubqueryAlias plan), if any."""
    plan = getattr(frame, "_plan", None)
    alias = getattr(plan, "_alias", None)
    return alias if isinstance(alias, str) else None


class DeltaOptimizeBuilder:
    def __init__(self, table: DeltaTable) -> None:
        self._table = table
        self._where: str | None = None

    def where(self, partitionFilter: str) -> DeltaOptimizeBuilder:
        self._where = partitionFilter
        return self

    def executeCompaction(self) -> Any:
        return operations.optimize(self._table._local, self._table._shown, self._where)

    def executeZOrderBy(self, *cols: str) -> Any:
        columns = [c for group in cols for c in ([group] if isinstance(group, str) else group)]
        return operations.optimize(self._table._local, self._table._shown, self._where, columns)
