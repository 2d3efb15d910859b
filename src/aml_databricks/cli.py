"""The `aml-databricks` command: parse argv, call the library, map its errors to exit codes.

Each command group lives beside the code it drives and registers itself here; imports are lazy so
that `aml-databricks run` inside an Azure ML job does not pay for the local workspace or azure-ai-ml.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from aml_databricks.errors import AmlDatabricksError

# command name -> module with `add_parser(subparsers)`; the parser's `func(args) -> int` runs it.
COMMANDS = {
    "run": "aml_databricks.step.command",
    "workspace": "aml_databricks.workspace.command",
    "pipeline": "aml_databricks.pipeline.command",
    "component": "aml_databricks.component.command",
}


class _Parser(argparse.ArgumentParser):
    """Every (sub)command's parser rejects the arguments it does not know itself, so the usage line
    names the subcommand (`aml-databricks run: error: unrecognized arguments: …`). Plain argparse
    passes a subparser's leftovers up to the top parser, which reports them as `aml-databricks: error`.
    Subparsers inherit this class from the top parser (`add_subparsers` defaults to its type)."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or with `only` (a command's name) that command alone: argv that
    names its command is parsed the same either way, without importing the other command modules
    (for `aml-databricks run`, the first thing an Azure ML job does, they are a tenth of its start)."""
    parser = _Parser(
        prog="aml-databricks",
        description="Run Azure Databricks work as Azure ML pipeline steps, in the cloud or on a local workspace.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        if only is not None and name != only:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("aml_databricks"):
                continue  # that part is not built yet
            raise
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return _dispatch(argv)[0]


def console_main() -> NoReturn:
    """The console script. A command that sets `exit_fast` (the step, `pipeline run`: what they owe is
    written, flushed and closed when they return) leaves with `os._exit`: tearing down an interpreter
    that imported databricks-sdk costs a third of a second, Azure ML waits for the process to end, and
    pyspark's exit handler for a Spark Connect client left open retries its server for minutes."""
    try:
        code, fast = _dispatch(None)
    except KeyboardInterrupt:  # Ctrl-C before a command took over its signals (while importing it)
        print("aml-databricks: error: stopped by Ctrl-C", file=sys.stderr)
        exit_now(130)
    if fast:
        exit_now(code)
    sys.exit(code)


def exit_now(code: int) -> NoReturn:
    """Flush what Python buffers and end the process without its teardown (atexit handlers, module
    finalizers, waiting for non-daemon threads). Everything the step owes (run.json, MLflow tags,
    the result document) is written and closed before its command returns."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream: nothing can reach it
            stream.flush()
    os._exit(code)


def _dispatch(argv: Sequence[str] | None) -> tuple[int, bool]:
    """(exit code, whether the command allows the fast exit)."""
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(words[0] if words and words[0] in COMMANDS else None)
    args = parser.parse_args(words)
    fast = bool(getattr(args, "exit_fast", False))
    try:
        code: int = args.func(args)
    except AmlDatabricksError as exc:
        print(f"aml-databricks: error: {exc}", file=sys.stderr)
        return exc.exit_code, fast
    except KeyboardInterrupt:
        return 130, fast
    return code, fast


if __name__ == "__main__":
    console_main()
