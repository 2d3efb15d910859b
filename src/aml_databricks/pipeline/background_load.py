"""Loading a pipeline with azure-ai-ml in a process of its own, while `pipeline run` gets on.

azure-ai-ml takes about 2 s to import, MLflow (the run's tracking) about as long; one after the
other they were most of `pipeline run`'s own start-up. Python threads cannot import in parallel,
processes can: a child imports azure-ai-ml and loads the pipeline (pipeline/load.py, unchanged)
while this process imports MLflow, and hands back the graph, which is plain data.

The child ignores Ctrl-C: the command's Stopper decides what a stop means, and ends the child.

    python -m aml_databricks.pipeline.background_load   (request as JSON on stdin, answer pickled on stdout)
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from aml_databricks.errors import AmlDatabricksError, UsageError
from aml_databricks.pipeline.graph import PipelineGraph
from aml_databricks.pipeline.load import checked_source


class BackgroundLoad:
    """`load_pipeline(reference, overrides, components_dir)`, started now in a child process."""

    def __init__(self, reference: str, overrides: Mapping[str, str], components_dir: Path | None) -> None:
        checked_source(reference)  # a missing file is said at once, not after the imports
        request = {
            "reference": reference,
            "overrides": dict(overrides),
            "components_dir": str(components_dir) if components_dir is not None else None,
            "sys_path": sys.path,  # `module:function` pipelines import as they would in this process
        }
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(request).encode())
        self._process.stdin.close()

    def result(self) -> PipelineGraph:
        """The graph, or the loader's one-line error raised here."""
        assert self._process.stdout is not None
        answer = self._process.stdout.read()
        code = self._process.wait()
        if not answer:  # the loader itself broke: its traceback is on stderr already
            raise RuntimeError(f"loading the pipeline failed (the loader exited with {code})")
        kind, value = pickle.loads(answer)
        if kind == "error":
            message, exit_code = value
            error = UsageError(message)
            error.exit_code = exit_code
            raise error
        graph: PipelineGraph = value
        return graph

    def cancel(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()


def _main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    request = json.loads(sys.stdin.read())
    sys.path[:] = request["sys_path"]
    from aml_databricks.pipeline.load import load_pipeline

    components = request["components_dir"]
    try:
        graph = load_pipeline(request["reference"], request["overrides"], Path(components) if components else None)
        answer = pickle.dumps(("graph", graph))
    except AmlDatabricksError as error:
        answer = pickle.dumps(("error", (str(error), error.exit_code)))
    sys.stdout.buffer.write(answer)
    sys.stdout.flush()
    os._exit(0)  # nothing to clean up; azure-ai-ml's exit handlers need not run


if __name__ == "__main__":
    _main()
