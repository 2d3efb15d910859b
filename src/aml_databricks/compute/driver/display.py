"""`display()`, `df.display()` and `displayHTML()` as on Databricks: a structured output for the run page
(compute/driver/outputs.py) and a text rendering on stdout for the run's log.

Spark DataFrames (classic and Spark Connect), pandas and pandas-on-Spark DataFrames become tables (the
first DISPLAY_MAX_ROWS rows, their schema, whether more exist); matplotlib figures and PIL images become
PNG images; plotly figures and displayHTML become HTML, which the page shows in a sandboxed iframe.
"""

from __future__ import annotations

import base64
import io
from typing import Any

from aml_databricks.compute.driver.outputs import OutputRecorder

DISPLAY_MAX_ROWS = 1000
_CELL_WIDTH = 100  # characters of a value in the text rendering, as `show(truncate=100)`


class Display:
    def __init__(self, recorder: OutputRecorder) -> None:
        self.recorder = recorder

    def display(self, value: Any = None, *args: Any, **kwargs: Any) -> None:
        if value is None:
            return
        table = _table(value)
        if table is not None:
            columns, rows, more = table
            if not columns:  # DDL statements return a DataFrame without columns
                return
            with self.recorder.log_only():
                print(format_table([name for name, _ in columns], rows, more), flush=True)
            self.recorder.output("table", columns=columns, rows=[[_json_value(v) for v in row] for row in rows],
                                 row_count=len(rows), truncated=more)
            return
        image = _image(value)
        if image is not None:
            with self.recorder.log_only():
                print(f"<{type(value).__name__}: image/png, {len(image)} bytes>", flush=True)
            self.recorder.output("image", mime="image/png", data=base64.b64encode(image).decode())
            return
        if _module(value).startswith("plotly") and hasattr(value, "to_html"):
            with self.recorder.log_only():
                print(f"<{type(value).__name__}>", flush=True)
            self.recorder.output("html", html=value.to_html(include_plotlyjs=True, full_html=True))
            return
        if isinstance(value, list):
            for item in value[:DISPLAY_MAX_ROWS]:
                print(item)
            print(end="", flush=True)
            return
        print(value, flush=True)

    def display_html(self, html: str) -> None:
        with self.recorder.log_only():
            print(html, flush=True)
        self.recorder.output("html", html=str(html))


def install_dataframe_display(display: Display) -> None:
    """Databricks' `DataFrame.display()`: without it Spark Connect resolves `df.display` to a column."""

    def method(self: Any, *args: Any, **kwargs: Any) -> None:
        display.display(self)

    for module_name in ("pyspark.sql.connect.dataframe", "pyspark.sql.dataframe"):
        try:
            module = __import__(module_name, fromlist=["DataFrame"])
        except Exception:
            continue
        module.DataFrame.display = method


def _module(value: Any) -> str:
    return type(value).__module__ or ""


def _table(value: Any) -> tuple[list[list[str]], list[list[Any]], bool] | None:
    """(columns as [name, type], up to DISPLAY_MAX_ROWS rows, whether more rows exist) or None."""
    module = _module(value)
    if module.startswith("pyspark.pandas"):
        value = value.head(DISPLAY_MAX_ROWS + 1).to_pandas()
        module = "pandas"
    if module.startswith("pyspark.sql") and hasattr(value, "schema") and hasattr(value, "limit"):
        fields = value.schema.fields
        if not fields:
            return [], [], False
        rows = [list(row) for row in value.limit(DISPLAY_MAX_ROWS + 1).collect()]
        columns = [[field.name, field.dataType.simpleString()] for field in fields]
        return columns, rows[:DISPLAY_MAX_ROWS], len(rows) > DISPLAY_MAX_ROWS
    if module.startswith("pandas") and hasattr(value, "itertuples") and hasattr(value, "dtypes"):
        frame = value.reset_index() if _named_index(value) else value
        head = frame.head(DISPLAY_MAX_ROWS)
        columns = [[str(name), str(dtype)] for name, dtype in frame.dtypes.items()]
        rows = [list(row) for row in head.itertuples(index=False, name=None)]
        return columns, rows, len(frame) > DISPLAY_MAX_ROWS
    return None


def _named_index(frame: Any) -> bool:
    return any(name is not None for name in getattr(frame.index, "names", []))


def _image(value: Any) -> bytes | None:
    module = _module(value)
    buffer = io.BytesIO()
    if module.startswith("matplotlib") and hasattr(value, "savefig"):
        value.savefig(buffer, format="png", bbox_inches="tight")
    elif module.startswith("matplotlib") and hasattr(value, "get_figure"):  # an Axes
        value.get_figure().savefig(buffer, format="png", bbox_inches="tight")
    elif module.startswith("PIL") and hasattr(value, "save") and hasattr(value, "mode"):
        value.save(buffer, format="PNG")
    else:
        return None
    return buffer.getvalue()


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    return str(value)


def _text(value: Any) -> str:
    text = "null" if value is None else str(value)
    return text if len(text) <= _CELL_WIDTH else text[: _CELL_WIDTH - 3] + "..."


def format_table(names: list[str], rows: list[list[Any]], more: bool) -> str:
    """The rows as `DataFrame.show()` prints them, so logs read as they did before."""
    cells = [[_text(v) for v in row] for row in rows]
    widths = [max([3, len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(names)]
    border = "+" + "+".join("-" * w for w in widths) + "+"
    lines = [border, "|" + "|".join(n.rjust(w) for n, w in zip(names, widths, strict=True)) + "|", border]
    lines += ["|" + "|".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + "|" for row in cells]
    lines.append(border)
    if more:
        lines.append(f"only showing top {len(rows)} rows")
    return "\n".join(lines) + "\n"
