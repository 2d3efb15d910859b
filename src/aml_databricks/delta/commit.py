"""One Delta commit for one Spark write: save-mode semantics, schema enforcement, delta-rs transaction.

Called on the Spark driver (in its Python worker) with the files every task wrote. The table is
opened at commit time, so a write that raced another is checked against what is there now:
delta-rs retries an append that lost the race on a newer version (appends never conflict).

Schema rules, as Delta's: an append or overwrite must match the table's columns (by name, case
insensitively, same types); `mergeSchema` adds new columns (a schema change commit, then the
write), `overwriteSchema` with an overwrite replaces the schema in the write's own commit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from aml_databricks.delta.errors import DeltaError, DeltaPathExists, DeltaSchemaMismatch
from aml_databricks.delta.files import AddedFile, remove_files

# Save modes as the driver passes them in the source's options (Spark gives a Python data source
# only overwrite or not): errorifexists and ignore reach the commit as appends plus this option.
SAVE_MODE_OPTION = "__aml_save_mode"
PARTITION_BY_OPTION = "__aml_partition_by"
SHOWN_PATH_OPTION = "__aml_shown_path"  # the path as the user wrote it, for messages


def lowered(options: Mapping[str, str]) -> dict[str, str]:
    """Spark hands options over with lower-cased keys (case-insensitive): look them up that way."""
    return {str(k).lower(): str(v) for k, v in options.items()}


def true_option(options: Mapping[str, str], name: str) -> bool:
    return str(lowered(options).get(name.lower(), "false")).strip().lower() == "true"


def commit_write(
    table_dir: str,
    schema: pa.Schema,
    files: Sequence[AddedFile],
    *,
    overwrite: bool,
    options: Mapping[str, str],
) -> None:
    """Commit `files` (already under `table_dir`) as one Delta version, or raise a DeltaError.

    Files not committed (an `ignore` of an existing table, any error) are deleted.
    """
    try:
        committed = _commit(table_dir, schema, files, overwrite=overwrite, options=options)
    except BaseException:
        remove_files(table_dir, files)
        raise
    if not committed:
        remove_files(table_dir, files)


def _commit(
    table_dir: str,
    schema: pa.Schema,
    files: Sequence[AddedFile],
    *,
    overwrite: bool,
    options: Mapping[str, str],
) -> bool:
    from deltalake import Schema
    from deltalake.exceptions import DeltaError as RustDeltaError
    from deltalake.transaction import CommitProperties, create_table_with_add_actions

    options = lowered(options)
    save_mode = "overwrite" if overwrite else options.get(SAVE_MODE_OPTION, "append").lower()
    shown = options.get(SHOWN_PATH_OPTION) or table_dir
    partition_by = json.loads(options.get(PARTITION_BY_OPTION) or "[]")
    schema = as_nullable(schema)
    actions = [_add_action(f) for f in files]
    properties = CommitProperties(custom_metadata={"engineInfo.local": "aml-databricks"})
    table = _open(table_dir)
    if table is None:
        try:
            create_table_with_add_actions(
                table_dir,
                Schema.from_arrow(schema),
                actions,
                mode="error",
                partition_by=partition_by or None,
                commit_properties=properties,
            )
            return True
        except RustDeltaError as error:
            if "already exists" not in str(error).lower():
                raise
            table = _open(table_dir)  # another write created it meanwhile: go on as against an existing table
            assert table is not None
    if save_mode in ("error", "errorifexists", "default"):
        raise DeltaPathExists(shown)
    if save_mode == "ignore":
        return False
    existing = pa.schema(table.schema().to_arrow())
    if overwrite and true_option(options, "overwriteSchema"):
        table.create_write_transaction(
            actions,
            "overwrite",
            Schema.from_arrow(schema),
            partition_by=partition_by or None,
            commit_properties=properties,
        )
        return True
    _check_partitioning(table, partition_by, shown)
    new_columns = check_schema(existing, schema, table.metadata().id, merge=true_option(options, "mergeSchema"))
    if new_columns:
        from deltalake.schema import Field

        table.alter.add_columns([Field.from_arrow(f) for f in new_columns])
        table = _open(table_dir)
        assert table is not None
    table.create_write_transaction(
        actions,
        "overwrite" if overwrite else "append",
        table.schema(),
        partition_by=table.metadata().partition_columns or None,
        commit_properties=properties,
    )
    return True


def as_nullable(schema: pa.Schema) -> pa.Schema:
    """Delta makes every column of a written table nullable, as Databricks does (`asNullable`)."""
    return pa.schema([f.with_nullable(True) for f in schema])


def check_schema(table: pa.Schema, data: pa.Schema, table_id: str, *, merge: bool) -> list[pa.Field]:
    """The data's columns the table lacks (allowed only with `merge`); raise on any other difference."""
    known = {f.name.lower(): f for f in table}
    new_columns: list[pa.Field] = []
    mismatch = False
    for data_field in data:
        existing = known.get(data_field.name.lower())
        if existing is None:
            new_columns.append(data_field)
        elif not _same_type(existing.type, data_field.type):
            mismatch = True
    if mismatch or (new_columns and not merge):
        raise DeltaSchemaMismatch(table_id, _describe(table), _describe(data))
    return new_columns


def _same_type(a: pa.DataType, b: pa.DataType) -> bool:
    def plain(t: pa.DataType) -> pa.DataType:
        if pa.types.is_large_string(t):
            return pa.string()
        if pa.types.is_large_binary(t):
            return pa.binary()
        if pa.types.is_timestamp(t):
            return pa.timestamp("us", tz="UTC" if t.tz else None)
        return t

    return bool(plain(a) == plain(b)) or (pa.types.is_nested(a) and pa.types.is_nested(b))


def _describe(schema: pa.Schema) -> str:
    return "(" + ", ".join(f"{f.name} {f.type}" for f in schema) + ")"


def _check_partitioning(table: Any, partition_by: list[str], shown: str) -> None:
    existing = list(table.metadata().partition_columns)
    if partition_by and [c.lower() for c in partition_by] != [c.lower() for c in existing]:
        raise DeltaError(
            f"Partition columns {partition_by} do not match the partition columns of the table at {shown}: "
            f"{existing}. Use .mode(\"overwrite\").option(\"overwriteSchema\", \"true\") to change them."
        )


def _open(table_dir: str) -> Any:
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(table_dir)
    except TableNotFoundError:
        return None


def _add_action(added: AddedFile) -> Any:
    from deltalake.transaction import AddAction

    return AddAction(added.path, added.size, added.partition_values, added.modification_time, True, added.stats)
