"""Per-cell outputs of a notebook run, recorded as it goes into RUN_DIR/outputs.jsonl.

The run page and runs/export read this file: one JSON object per line, appended and flushed as each
happens, so a page shows a running notebook's cells as they finish. Records:

- `{"type": "notebook", "cells": [{"index", "language", "source"}...]}` first: every top-level cell,
  so cells after a failure can be shown as not run;
- `{"type": "start", "cell": i}` and `{"type": "end", "cell": i, "status": "ok" | "error"}`;
- `{"type": "output", "cell": i, "kind": ...}` with kind `stdout` / `stderr` (`text`), `table`
  (`columns` [[name, type]], `rows`, `row_count`, `truncated`), `html` (`html`), `image` (`mime`,
  `data` base64), `error` (`error`, `trace`).

Everything written is redacted with the run's secrets first. Text is capped per cell and the file as
a whole is capped, past which further outputs are dropped with one `truncated` note: a chatty loop
must not fill the disk.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

OUTPUTS_FILE = "outputs.jsonl"
CELL_TEXT_LIMIT = 256 * 1024  # characters of stdout/stderr kept per cell
FILE_LIMIT = 32 * 1024 * 1024  # bytes of outputs.jsonl
TEXT_FLUSH_SECONDS = 0.5  # a long cell's prints reach the page this often, not only when it ends


class OutputRecorder:
    """Appends output records for the top-level cell running now; a no-op outside any cell."""

    def __init__(self, run_dir: Path | None, redact: Callable[[str], str]) -> None:
        self._path = None if run_dir is None else Path(run_dir) / OUTPUTS_FILE
        self._redact = redact
        self._lock = threading.Lock()
        self._written = 0
        self._full = False
        self.cell: int | None = None
        self._text: dict[str, list[str]] = {}
        self._text_size = 0
        self._text_cut = False
        self._last_flush = 0.0

    # -- records --------------------------------------------------------------------------

    def _write(self, record: dict[str, Any]) -> None:
        if self._path is None or self._full:
            return
        # redacted value by value: in the JSON text a secret could be escaped past recognition
        line = json.dumps(self._redacted(record), ensure_ascii=False, default=str) + "\n"
        data = line.encode("utf-8", errors="replace")
        with self._lock:
            if self._written + len(data) > FILE_LIMIT:
                self._full = True
                data = (json.dumps({"type": "output", "cell": self.cell, "kind": "truncated",
                                    "text": "outputs past this point were not recorded (size limit)"}) + "\n").encode()
            descriptor = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(descriptor, data)
            finally:
                os.close(descriptor)
            self._written += len(data)

    def _redacted(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._redact(value)
        if isinstance(value, list):
            return [self._redacted(item) for item in value]
        if isinstance(value, dict):
            return {key: self._redacted(item) for key, item in value.items()}
        return value

    def notebook(self, cells: list[dict[str, Any]]) -> None:
        self._write({"type": "notebook", "cells": cells})

    def output(self, kind: str, **fields: Any) -> None:
        """One rich output (table, html, image, error) of the current cell; stdout text before it first."""
        if self.cell is None:
            return
        self._flush_text()
        self._write({"type": "output", "cell": self.cell, "kind": kind, **fields})

    @contextmanager
    def log_only(self) -> Iterator[None]:
        """What is printed inside goes to the run's log but is not a cell output (display()'s text
        rendering of a table the page shows as a table)."""
        cell, self.cell = self.cell, None
        try:
            yield
        finally:
            self.cell = cell

    def text(self, stream: str, value: str) -> None:
        if self.cell is None or not value:
            return
        room = CELL_TEXT_LIMIT - self._text_size
        if room <= 0:
            self._text_cut = True
            return
        if len(value) > room:
            value, self._text_cut = value[:room], True
        self._text_size += len(value)
        if self._text and stream not in self._text:
            self._flush_text()
        self._text.setdefault(stream, []).append(value)
        if time.monotonic() - self._last_flush > TEXT_FLUSH_SECONDS:  # prints after a pause show at once
            self._flush_text()

    def _flush_text(self) -> None:
        self._last_flush = time.monotonic()
        for stream, parts in self._text.items():
            self._write({"type": "output", "cell": self.cell, "kind": stream, "text": "".join(parts)})
        self._text = {}

    @contextmanager
    def running(self, index: int, exits: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
        """Records a top-level cell's start, its captured text and how it ended (`exits` end the
        notebook without failing it: `dbutils.notebook.exit`)."""
        self.cell, self._text_size, self._text_cut = index, 0, False
        self._write({"type": "start", "cell": index})
        status = "error"
        try:
            yield
            status = "ok"
        except exits:
            status = "exit"
            raise
        finally:
            self._flush_text()
            if self._text_cut:
                self._write({"type": "output", "cell": index, "kind": "truncated",
                             "text": f"output of this cell cut at {CELL_TEXT_LIMIT} characters"})
            self._write({"type": "end", "cell": index, "status": status})
            self.cell = None

    def error(self, index: int, error: str, trace: str | None) -> None:
        self._write({"type": "output", "cell": index, "kind": "error", "error": error, "trace": trace})


class TeeStream:
    """A stdout/stderr that still writes to the run's log and also hands text to the recorder."""

    def __init__(self, stream: TextIO, recorder: OutputRecorder, name: str) -> None:
        self._stream = stream
        self._recorder = recorder
        self._name = name

    def write(self, text: str) -> int:
        self._recorder.text(self._name, text)
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, encoding, isatty... as the real stream
        return getattr(self._stream, name)


def capture_streams(recorder: OutputRecorder) -> None:
    sys.stdout = TeeStream(sys.stdout, recorder, "stdout")
    sys.stderr = TeeStream(sys.stderr, recorder, "stderr")


def observe_child_runs(api: Any, recorder: OutputRecorder) -> None:
    """Notes each run `dbutils.notebook.run` submits as an output of the calling cell, so the run page
    links the child run (the workspace's run model has no caller field)."""
    post = api.post

    def observed(path: str, body: dict[str, Any] | None = None, *args: Any, **kwargs: Any) -> Any:
        answer = post(path, body, *args, **kwargs)
        if path.endswith("/jobs/runs/submit") and isinstance(answer, dict) and "run_id" in answer:
            recorder.output("notebook_run", run_id=answer["run_id"], name=(body or {}).get("run_name", ""))
        return answer

    api.post = observed


def read_outputs(run_dir: Path) -> list[dict[str, Any]]:
    """The records of a run folder (none if the task never wrote any); a torn last line is skipped."""
    try:
        lines = (Path(run_dir) / OUTPUTS_FILE).read_text(errors="replace").splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
