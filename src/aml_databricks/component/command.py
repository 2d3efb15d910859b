"""`aml-databricks component export|validate`: the Azure ML component of the step, ready to register."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from aml_databricks.component import COMPONENT_FILE, ENVIRONMENT_FILE
from aml_databricks.errors import UsageError


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("component", help="the Azure ML component that runs the step")
    commands = parser.add_subparsers(dest="component_command", required=True, metavar="COMMAND")

    export = commands.add_parser(
        "export",
        help="write component.yml and environment.yml to a folder",
        description="Write the execute_databricks_notebook component and its environment, to register "
        "with `az ml environment create -f DIR/environment.yml` and `az ml component create -f DIR/component.yml`.",
    )
    export.add_argument("directory", metavar="DIR", type=Path)
    export.set_defaults(func=export_command)

    validate = commands.add_parser(
        "validate",
        help="check a component YAML with azure-ai-ml, offline",
        description="Load a command component with azure-ai-ml and run its validation (field types, "
        "placeholders, code folder), without a workspace. Exit 0 when valid, 2 otherwise.",
    )
    validate.add_argument(
        "file",
        metavar="FILE",
        type=Path,
        nargs="?",
        default=COMPONENT_FILE,
        help="component YAML (default: the packaged component)",
    )
    validate.set_defaults(func=validate_command)


def export(directory: Path) -> list[Path]:
    """Copy the packaged component and environment into `directory`; the written files."""
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"not a folder: {directory}")
    directory.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copyfile(source, directory / source.name)) for source in (COMPONENT_FILE, ENVIRONMENT_FILE)]


def validate(path: Path) -> Any:
    """The loaded component, or UsageError with azure-ai-ml's complaint on one line."""
    from aml_databricks.component.sdk import azure_ml, one_line

    if not path.is_file():
        raise UsageError(f"component file not found: {path}")
    ml = azure_ml("validating a component")
    try:
        component = ml.load_component(path)
    except Exception as exc:  # marshmallow, YAML and azure-ai-ml's own errors alike
        raise UsageError(f"{path}: invalid component: {one_line(exc)}") from exc
    result = component._validate()
    if not result.passed:
        raise UsageError(f"{path}: invalid component: {one_line(result)}")
    return component


def export_command(args: argparse.Namespace) -> int:
    for path in export(args.directory):
        print(path)
    print(
        f"register with:\n  az ml environment create -f {args.directory / ENVIRONMENT_FILE.name}"
        f"\n  az ml component create -f {args.directory / COMPONENT_FILE.name}"
    )
    return 0


def validate_command(args: argparse.Namespace) -> int:
    component = validate(args.file)
    print(
        f"{args.file}: valid command component {component.name} version {component.version} "
        f"({len(component.inputs)} inputs, {len(component.outputs)} outputs)"
    )
    return 0
