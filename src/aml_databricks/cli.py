"""The `aml-databricks` command: parse argv, call the library, map its errors to exit codes.

Each command group lives beside the code it drives and registers itself here; imports are lazy so
that `aml-databricks run` inside an Azure ML job does not pay for the local workspace or azure-ai-ml.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="aml-databricks",
        description="Run Azure Databricks work as Azure ML pipeline steps, in the cloud or on a local workspace.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMANDS.values():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("aml_databricks"):
                continue  # that part is not built yet
            raise
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except AmlDatabricksError as exc:
        print(f"aml-databricks: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
