"""Errors as Databricks shows them: `error` one line, `error_trace` without JVM frames, and one clear
line for what the local workspace cannot do (the RDD API, Databricks' sample datasets).

A Spark Connect error's text carries the server's whole JVM stack (~10 KB) and often starts with a
newline (ParseException); Databricks' runs/get-output `error` is the exception class and the first line
of its message. Paths in messages are the user's (`dbfs:/x`), never the internal `viewfs://dbfs/x`.
"""

from __future__ import annotations

import re

RDD_MESSAGE = (
    "The RDD API (sc, spark.sparkContext, df.rdd) is not supported: the local workspace runs notebooks the "
    "way a Databricks shared-access or serverless cluster does (Spark Connect), where RDDs are not "
    "available; use the DataFrame API."
)
_RDD_ERRORS = re.compile(r"JVM_ATTRIBUTE_NOT_SUPPORTED|NOT_IMPLEMENTED\].*\b(rdd|sparkContext)\b")
_DATASET = re.compile(r"(?:viewfs://dbfs|dbfs:)?(/databricks-datasets(?:/[^\s`'\",;]*)?)")
_SAMPLE_TABLE = re.compile(r"\bsamples`?\s*\.\s*`?(nyctaxi|tpch)`?\s*\.\s*`?(\w+)", re.IGNORECASE)
_NOT_FOUND = re.compile(r"NOT_FOUND|does not exist|cannot be found|not found", re.IGNORECASE)
_INTERNAL_PATH = re.compile(r"viewfs://dbfs(?=/)")
_JVM_FRAME = re.compile(r"^\s+(at |\.\.\. \d+ more)")


class RDDNotSupported(Exception):
    """`sc`, `spark.sparkContext`, `df.rdd`: not available under Spark Connect."""

    def __init__(self) -> None:
        super().__init__(RDD_MESSAGE)


class _SparkContextStandIn:
    """`sc` in a notebook: any use of it says why there is none."""

    def __getattr__(self, name: str) -> object:
        raise RDDNotSupported()

    def __call__(self, *args: object, **kwargs: object) -> object:
        raise RDDNotSupported()

    def __repr__(self) -> str:
        return "<sc: the RDD API is not supported on the local workspace (Spark Connect)>"


SPARK_CONTEXT = _SparkContextStandIn()


def user_paths(text: str) -> str:
    return _INTERNAL_PATH.sub("dbfs:", text)


def missing_dataset(text: str) -> str | None:
    """The one line naming a missing /databricks-datasets path in `text`, or None when there is none."""
    if "databricks-datasets" not in text or not re.search(r"PATH_NOT_FOUND|does not exist|No such file", text):
        return None
    match = _DATASET.search(text)
    dataset = match.group(1).rstrip(".") if match else "/databricks-datasets"
    return (f"{dataset} is not available: Databricks' sample datasets are not shipped with the local workspace; "
            "provide a copy with `aml-databricks workspace serve --mount /databricks-datasets=FOLDER`.")


def missing_sample_table(text: str) -> str | None:
    """The one line naming a `samples.nyctaxi.*` / `samples.tpch.*` table the workspace lacks, or None."""
    match = _SAMPLE_TABLE.search(text)
    if match is None or not _NOT_FOUND.search(text):
        return None
    from aml_databricks.compute.samples_tpch import unavailable_message

    return unavailable_message(match.group(1), match.group(2))


def one_line(error: BaseException) -> str:
    """`ExceptionType: the first line of its message`, as runs/get-output's `error` reads on Databricks."""
    name = type(error).__name__
    text = str(error)
    if isinstance(error, RDDNotSupported) or _RDD_ERRORS.search(text):
        return f"{name}: {RDD_MESSAGE}"
    dataset = missing_dataset(text)
    if dataset is not None:
        return f"{name}: {dataset}"
    sample = missing_sample_table(text.split("JVM stacktrace:", 1)[0])
    if sample is not None:
        return f"{name}: {sample}"
    text = text.split("JVM stacktrace:", 1)[0]
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{name}: {user_paths(first)}" if first else name


def trim_trace(trace: str) -> str:
    """The traceback without JVM frames (`at org.apache...`): the Java exception and its causes stay."""
    lines = [line for line in trace.splitlines(keepends=True) if not _JVM_FRAME.match(line)]
    return user_paths("".join(lines))
