"""The summary table printed at the end of a local pipeline run."""

from __future__ import annotations

import os
from pathlib import Path

from aml_databricks.pipeline.runner import PipelineResult

COLUMNS = ("node", "status", "duration", "outputs")


def summary_table(result: PipelineResult, relative_to: Path | None = None) -> str:
    rows = [COLUMNS]
    for node in result.nodes:
        outputs = ", ".join(f"{name}={_short(path, relative_to)}" for name, path in node.outputs.items()) or "-"
        duration = f"{node.duration:.1f} s" if node.status != "NotStarted" else "-"
        rows.append((node.node, node.status, duration, outputs))
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    lines = ["  ".join([*(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)), row[-1]]) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def _short(path: Path, base: Path | None) -> str:
    if base is None:
        return str(path)
    relative = os.path.relpath(path, base)
    return str(path) if relative.startswith("..") else relative
