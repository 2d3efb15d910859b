"""`aml-databricks component export|validate`: the Azure ML component of the step, ready to register."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from aml_databricks.component import COMPONENT_FILE, CONTEXT_DIR_NAME, DOCKERFILE, ENVIRONMENT_FILE
from aml_databricks.component.wheel import DISTRIBUTION, build_wheel
from aml_databricks.errors import UsageError


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("component", help="the Azure ML component that runs the step")
    commands = parser.add_subparsers(dest="component_command", required=True, metavar="COMMAND")

    export = commands.add_parser(
        "export",
        help="write component.yml, environment.yml and its build context to a folder",
        description="Write the execute_databricks_notebook component and its environment: environment.yml and "
        "its Docker build context (DIR/context: a Dockerfile and a wheel of this aml-databricks, so Azure ML "
        "needs no package index holding it). Register with `az ml environment create -f DIR/environment.yml` "
        "and `az ml component create -f DIR/component.yml`.",
    )
    export.add_argument("directory", metavar="DIR", type=Path)
    export.set_defaults(func=export_command)

    validate = commands.add_parser(
        "validate",
        help="check a component or environment YAML with azure-ai-ml, offline",
        description="Load a command component with azure-ai-ml and run its validation (field types, "
        "placeholders, code folder), or load an environment and check its build context (the Dockerfile and "
        "the wheel it installs), without a workspace. Exit 0 when valid, 2 otherwise.",
    )
    validate.add_argument(
        "file",
        metavar="FILE",
        type=Path,
        nargs="?",
        default=COMPONENT_FILE,
        help="component or environment YAML (default: the packaged component)",
    )
    validate.set_defaults(func=validate_command)


def export(directory: Path) -> list[Path]:
    """Copy the packaged component and environment into `directory`, and fill the environment's build
    context with the Dockerfile and a wheel of the installed package; the written files."""
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"not a folder: {directory}")
    context = directory / CONTEXT_DIR_NAME
    context.mkdir(parents=True, exist_ok=True)
    for stale in context.glob(f"{DISTRIBUTION.replace('-', '_')}-*.whl"):
        stale.unlink()  # the Dockerfile installs every wheel of ours it finds: only this export's
    written = [Path(shutil.copyfile(source, directory / source.name)) for source in (COMPONENT_FILE, ENVIRONMENT_FILE)]
    written.append(Path(shutil.copyfile(DOCKERFILE, context / DOCKERFILE.name)))
    written.append(build_wheel(context))
    return written


def validate(path: Path) -> Any:
    """The loaded component or environment, or UsageError with azure-ai-ml's complaint on one line."""
    from aml_databricks.component.sdk import azure_ml, one_line

    if not path.is_file():
        raise UsageError(f"component file not found: {path}")
    if _is_environment(path):
        return validate_environment(path)
    ml = azure_ml("validating a component")
    try:
        component = ml.load_component(path)
    except Exception as exc:  # marshmallow, YAML and azure-ai-ml's own errors alike
        raise UsageError(f"{path}: invalid component: {one_line(exc)}") from exc
    result = component._validate()
    if not result.passed:
        raise UsageError(f"{path}: invalid component: {one_line(result)}")
    return component


def validate_environment(path: Path) -> Any:
    """The loaded environment, or UsageError when azure-ai-ml rejects it or its build context can't build."""
    from aml_databricks.component.sdk import azure_ml, one_line

    ml = azure_ml("validating an environment")
    try:
        environment = ml.load_environment(path)
    except Exception as exc:  # marshmallow, YAML and azure-ai-ml's own errors alike
        raise UsageError(f"{path}: invalid environment: {one_line(exc)}") from exc
    if environment.build is None:
        return environment  # an image or conda environment: nothing of ours to check
    context = Path(environment.build.path)
    if not context.is_absolute():
        context = path.parent / context
    dockerfile = context / (environment.build.dockerfile_path or "Dockerfile")
    if not dockerfile.is_file():
        raise UsageError(f"{path}: invalid environment: no Dockerfile in its build context {context}")
    if "aml_databricks-" in dockerfile.read_text() and not any(context.glob("aml_databricks-*.whl")):
        raise UsageError(
            f"{path}: invalid environment: its build context {context} has no aml-databricks wheel "
            "(write it with `aml-databricks component export`)"
        )
    return environment


def _is_environment(path: Path) -> bool:
    import yaml  # not at the top: every command builds this parser, and the step's install has no PyYAML

    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return False  # let azure-ai-ml say what is wrong with it
    return isinstance(document, dict) and "command" not in document and bool({"build", "image"} & document.keys())


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
    if not hasattr(component, "inputs"):
        source = "a Docker build context" if component.build is not None else "an image"
        print(f"{args.file}: valid environment {component.name} version {component.version} (built from {source})")
        return 0
    print(
        f"{args.file}: valid command component {component.name} version {component.version} "
        f"({len(component.inputs)} inputs, {len(component.outputs)} outputs)"
    )
    return 0
