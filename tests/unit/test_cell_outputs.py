"""What the driver records per cell (compute/driver/outputs.py) and how display() renders values
(compute/driver/display.py), read back the way the run page reads them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from aml_databricks.compute.driver import outputs
from aml_databricks.compute.driver.display import Display, format_table
from aml_databricks.compute.driver.outputs import OutputRecorder, read_outputs
from aml_databricks.workspace.pages.views import cells_of


def recorder(tmp_path: Path) -> OutputRecorder:
    return OutputRecorder(tmp_path, lambda text: text.replace("s3cr3t", "[REDACTED]"))


def test_cells_read_back_in_order_with_status_and_outputs(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    rec.notebook([{"index": 0, "language": "python", "source": "print(1)"},
                  {"index": 1, "language": "python", "source": "1/0"},
                  {"index": 2, "language": "python", "source": "print(3)"}])
    with rec.running(0):
        rec.text("stdout", "1\n")
    with pytest.raises(ZeroDivisionError), rec.running(1):
        raise ZeroDivisionError
    rec.error(1, "ZeroDivisionError", "Traceback ...")

    cells = cells_of(read_outputs(tmp_path))

    assert [c["status"] for c in cells] == ["ok", "error", "not run"]
    assert [o["text"] for o in cells[0]["outputs"]] == ["1\n"]
    assert cells[1]["outputs"][0]["error"] == "ZeroDivisionError"


def test_secrets_are_redacted_even_where_json_would_escape_them(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    rec.notebook([{"index": 0, "language": "python", "source": 'print("s3cr3t")'}])
    with rec.running(0):
        rec.text("stdout", 'quoted "s3cr3t"\n')

    text = (tmp_path / outputs.OUTPUTS_FILE).read_text()

    assert "s3cr3t" not in text and "[REDACTED]" in text


def test_a_chatty_cell_is_cut_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outputs, "CELL_TEXT_LIMIT", 10)
    rec = recorder(tmp_path)
    with rec.running(0):
        rec.text("stdout", "0123456789abcdef")

    records = read_outputs(tmp_path)

    assert [r.get("text") for r in records if r.get("kind") == "stdout"] == ["0123456789"]
    assert any(r.get("kind") == "truncated" for r in records)


def test_pandas_display_is_a_table_and_a_text_rendering(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec = recorder(tmp_path)
    with rec.running(0):
        Display(rec).display(pd.DataFrame({"a": [1, None], "b": ["x", "<y>"]}))

    (table,) = [r for r in read_outputs(tmp_path) if r.get("kind") == "table"]

    assert table["columns"] == [["a", "float64"], ["b", "object"]]
    assert table["rows"] == [[1.0, "x"], ["nan", "<y>"]]
    assert "|  b|" in capsys.readouterr().out  # the log still reads as before
    assert not [r for r in read_outputs(tmp_path) if r.get("kind") == "stdout"]  # the page shows the table once


def test_display_html_is_kept_as_html(tmp_path: Path) -> None:
    rec = recorder(tmp_path)
    with rec.running(0):
        Display(rec).display_html("<b>bold</b>")

    assert [r["html"] for r in read_outputs(tmp_path) if r.get("kind") == "html"] == ["<b>bold</b>"]


def test_matplotlib_figure_becomes_a_png(tmp_path: Path) -> None:
    pyplot = pytest.importorskip("matplotlib.pyplot", reason="matplotlib is not installed")
    figure, axes = pyplot.subplots()
    axes.plot([1, 2, 3])
    rec = recorder(tmp_path)
    with rec.running(0):
        Display(rec).display(figure)

    (image,) = [r for r in read_outputs(tmp_path) if r.get("kind") == "image"]

    assert image["mime"] == "image/png" and image["data"].startswith("iVBOR")


def test_text_rendering_reads_like_show() -> None:
    assert format_table(["id", "name"], [[1, "a"], [22, None]], more=True) == (
        "+---+----+\n| id|name|\n+---+----+\n|  1|   a|\n| 22|null|\n+---+----+\nonly showing top 2 rows\n"
    )
