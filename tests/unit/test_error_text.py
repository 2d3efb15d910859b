"""Errors as Databricks shows them: one line, no JVM frames, no internal paths, clear offline limits."""

from __future__ import annotations

import pytest

from aml_databricks.compute.driver import error_text


class ParseException(Exception):
    pass


class AnalysisException(Exception):
    pass


def test_error_is_the_first_line_even_when_the_message_starts_with_a_newline() -> None:
    error = ParseException(
        "\n[PARSE_SYNTAX_ERROR] Syntax error at or near 'WIDGET'. SQLSTATE: 42601 (line 1, pos 7)\n\n== SQL ==\n"
        "CREATE WIDGET TEXT x\n-------^^^\n\nJVM stacktrace:\norg.apache.spark.sql.catalyst.parser.ParseException\n"
        "\tat org.apache.spark.sql.catalyst.parser.ParseException.withCommand(parsers.scala:1)\n"
    )
    assert error_text.one_line(error) == (
        "ParseException: [PARSE_SYNTAX_ERROR] Syntax error at or near 'WIDGET'. SQLSTATE: 42601 (line 1, pos 7)"
    )


def test_trace_keeps_the_java_exception_and_its_cause_but_no_frames() -> None:
    trace = (
        'File "<notebook /Shared/x, cell 2>", line 6, in <module>\n'
        "AnalysisException: [X] boom\n\nJVM stacktrace:\norg.apache.spark.SparkException: boom\n"
        "\tat org.apache.spark.A.b(A.scala:1)\n\tat org.apache.spark.C.d(C.scala:2)\n"
        "Caused by: java.io.IOException: disk\n\tat java.io.F.g(F.java:3)\n\t... 12 more\n"
    )
    trimmed = error_text.trim_trace(trace)
    assert "\tat " not in trimmed and "more" not in trimmed
    assert trimmed.startswith('File "<notebook /Shared/x, cell 2>", line 6')
    assert "Caused by: java.io.IOException: disk" in trimmed


@pytest.mark.parametrize("message", [
    "[JVM_ATTRIBUTE_NOT_SUPPORTED] Attribute `sparkContext` is not supported in Spark Connect.",
    "[NOT_IMPLEMENTED] rdd is not implemented.",
])
def test_the_rdd_api_gets_one_clear_line(message: str) -> None:
    assert error_text.one_line(Exception(message)) == f"Exception: {error_text.RDD_MESSAGE}"


def test_sc_says_why_it_is_missing() -> None:
    with pytest.raises(error_text.RDDNotSupported, match="use the DataFrame API"):
        error_text.SPARK_CONTEXT.parallelize([1, 2])


def test_a_missing_sample_dataset_names_itself_and_how_to_mount_it() -> None:
    error = AnalysisException(
        "[PATH_NOT_FOUND] Path does not exist: viewfs://dbfs/databricks-datasets/flights/departuredelays.csv. "
        "SQLSTATE: 42K03"
    )
    assert error_text.one_line(error) == (
        "AnalysisException: /databricks-datasets/flights/departuredelays.csv is not available: Databricks' sample "
        "datasets are not shipped with the local workspace; provide a copy with "
        "`aml-databricks workspace serve --mount /databricks-datasets=FOLDER`."
    )


def test_internal_viewfs_paths_read_as_dbfs_paths() -> None:
    error = AnalysisException("[PATH_NOT_FOUND] Path does not exist: viewfs://dbfs/mnt/raw/x.csv. SQLSTATE: 42K03")
    assert error_text.one_line(error) == (
        "AnalysisException: [PATH_NOT_FOUND] Path does not exist: dbfs:/mnt/raw/x.csv. SQLSTATE: 42K03"
    )
