"""Delta's error messages, worded and classed as Databricks words them, each on one line."""

from __future__ import annotations

from pyspark.errors import AnalysisException


class DeltaError(AnalysisException):
    """A Delta operation refused or failed; `str()` is `[ERROR_CLASS] message`, one line.

    An AnalysisException, as Delta's errors are on Databricks, so `except AnalysisException` works.
    """

    error_class = "DELTA_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message=f"[{self.error_class}] {message}")


class DeltaPathExists(DeltaError):
    error_class = "DELTA_PATH_EXISTS"

    def __init__(self, path: str) -> None:
        super().__init__(f"Cannot write to already existent path {path} without setting OVERWRITE = 'true'.")


class DeltaSchemaMismatch(DeltaError):
    error_class = "_LEGACY_ERROR_TEMP_DELTA_0007"

    def __init__(self, table_id: str, table_schema: str, data_schema: str) -> None:
        super().__init__(
            f"A schema mismatch detected when writing to the Delta table (Table ID: {table_id}). "
            "To enable schema migration using DataFrameWriter or DataStreamWriter, please set: "
            "'.option(\"mergeSchema\", \"true\")'. To overwrite your schema, set '.option(\"overwriteSchema\", "
            f"\"true\")'. Table schema: {table_schema}. Data schema: {data_schema}."
        )


class DeltaNotATable(DeltaError):
    error_class = "DELTA_MISSING_DELTA_TABLE"

    def __init__(self, path: str) -> None:
        super().__init__(f"{path} is not a Delta table.")


class DeltaPathNotFound(DeltaError):
    error_class = "PATH_NOT_FOUND"

    def __init__(self, path: str) -> None:
        super().__init__(f"Path does not exist: {path}.")


class DeltaUnsupported(DeltaError):
    """A Delta feature the local workspace does not implement: says which, and that it is local."""

    error_class = "DELTA_UNSUPPORTED_LOCALLY"

    def __init__(self, feature: str) -> None:
        super().__init__(f"{feature} is not supported by the local workspace's Delta tables (delta-rs).")
