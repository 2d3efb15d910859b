"""Load an Azure ML pipeline with azure-ai-ml itself and turn it into a `PipelineGraph`.

No schema of our own: a pipeline YAML goes through `load_job`, a DSL pipeline is built by calling
the user's function (`path/to/file.py:function` or `package.module:function`). Component
references (`azureml:name:version`) are resolved from a folder of component files, then from the
components this package ships; nothing is looked up in a workspace.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aml_databricks.component import COMPONENT_FILE, COMPONENT_NAME
from aml_databricks.component.sdk import azure_ml, one_line
from aml_databricks.errors import StoppedError, UsageError
from aml_databricks.pipeline.graph import (
    Binding,
    InputSpec,
    Literal,
    Node,
    NodeOutput,
    OutputSpec,
    ParentInput,
    PipelineGraph,
)

DEFAULT_DSL_FUNCTION = "build_pipeline"
STEP_COMMAND = "aml-databricks run"
ANONYMOUS = "azureml_anonymous"

_PARENT_INPUT = re.compile(r"^\$\{\{\s*parent\.inputs\.([A-Za-z_]\w*)\s*\}\}$")
_NODE_OUTPUT = re.compile(r"^\$\{\{\s*parent\.jobs\.([A-Za-z_]\w*)\.outputs\.([A-Za-z_]\w*)\s*\}\}$")
_PIPELINE_OUTPUT = re.compile(r"^\$\{\{\s*parent\.outputs\.([A-Za-z_]\w*)\s*\}\}$")


@dataclass(frozen=True)
class PipelineSource:
    """Where a pipeline comes from: a YAML file, or a DSL function in a file or module."""

    path: Path | None  # the YAML or .py file
    module: str | None  # a dotted module name
    function: str | None

    @classmethod
    def parse(cls, reference: str) -> PipelineSource:
        target, _, function = reference.rpartition(":")
        if target.endswith(".py"):
            return cls(Path(target), None, function)
        if target and re.fullmatch(r"[A-Za-z_][\w.]*", target) and function.isidentifier():
            return cls(None, target, function)
        if reference.endswith(".py"):
            return cls(Path(reference), None, DEFAULT_DSL_FUNCTION)
        return cls(Path(reference), None, None)

    def __str__(self) -> str:
        where = str(self.path) if self.path else str(self.module)
        return f"{where}:{self.function}" if self.function else where


def checked_source(reference: str) -> PipelineSource:
    """What `reference` names; a file that is not there is a usage error."""
    source = PipelineSource.parse(reference)
    if source.path is not None and not source.path.is_file():
        raise UsageError(f"pipeline file not found: {source.path}")
    return source


def load_pipeline(
    reference: str,
    overrides: Mapping[str, str] | None = None,
    components_dir: Path | None = None,
) -> PipelineGraph:
    """The pipeline `reference` names, with pipeline inputs overridden by `overrides`."""
    source = checked_source(reference)
    ml = azure_ml("loading a pipeline")
    job = _load_dsl(source) if source.function else _load_yaml(ml, source.path)  # type: ignore[arg-type]
    if not isinstance(job, ml.entities.PipelineJob):
        raise UsageError(f"{source} is not a pipeline job (found {type(job).__name__})")

    inputs = _pipeline_inputs(job, overrides or {})
    registry = ComponentRegistry(ml, components_dir)
    base = (source.path.parent if source.path else Path.cwd()).resolve()
    nodes: dict[str, Node] = {}
    for name, job_node in job.jobs.items():
        nodes[name] = _node(name, job_node, registry, base)
    _check_bindings(nodes, inputs)
    return PipelineGraph(
        name=job.display_name or job.name or (source.path.stem if source.path else str(source.function)),
        experiment_name=job.experiment_name or "aml-databricks-local",
        source=source.path.resolve() if source.path else Path(str(source.module)),
        inputs=inputs,
        nodes=nodes,
    )


def _load_yaml(ml: Any, path: Path) -> Any:
    try:
        return ml.load_job(path)
    except StoppedError:  # a Ctrl-C or SIGTERM while azure-ai-ml loads is a stop, not a bad pipeline
        raise
    except Exception as exc:  # azure-ai-ml raises marshmallow, its own and YAML errors alike
        raise UsageError(f"{path}: invalid pipeline: {one_line(exc)}") from exc


def _load_dsl(source: PipelineSource) -> Any:
    """Import the module and call the function; it returns a PipelineJob."""
    if source.path is not None:
        module_name = f"_aml_databricks_pipeline_{abs(hash(source.path.resolve()))}"
        spec = importlib.util.spec_from_file_location(module_name, source.path)
        if spec is None or spec.loader is None:
            raise UsageError(f"cannot import {source.path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(str(source.module))
        except ModuleNotFoundError as exc:
            raise UsageError(f"pipeline module not found: {source.module}") from exc
    build = getattr(module, str(source.function), None)
    if not callable(build):
        raise UsageError(f"{source}: no function '{source.function}'")
    try:
        return build()
    except (UsageError, StoppedError):
        raise
    except Exception as exc:
        raise UsageError(f"{source}: building the pipeline failed: {one_line(exc)}") from exc


def _pipeline_inputs(job: Any, overrides: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {name: _plain(pipeline_input) for name, pipeline_input in job.inputs.items()}
    for name, text in overrides.items():
        if name not in values:
            known = ", ".join(sorted(values)) or "none"
            raise UsageError(f"--set {name}: the pipeline has no input '{name}' (its inputs: {known})")
        values[name] = _coerce(text, like=values[name])
    return values


def _plain(value: Any) -> Any:
    """A pipeline input's literal value (an Input object's path for data inputs)."""
    data = getattr(value, "_data", value)
    return getattr(data, "path", data)


def _coerce(text: str, like: Any) -> Any:
    """A --set value, as the type of the value it replaces."""
    try:
        if isinstance(like, bool):
            if text.lower() not in {"true", "false"}:
                raise ValueError(text)
            return text.lower() == "true"
        if isinstance(like, int):
            return int(text)
        if isinstance(like, float):
            return float(text)
    except ValueError as exc:
        raise UsageError(f"--set: '{text}' is not a {type(like).__name__}") from exc
    return text


class ComponentRegistry:
    """Components by name and version, from a folder of YAML files, then from this package."""

    def __init__(self, ml: Any, components_dir: Path | None) -> None:
        self._ml = ml
        self._dir = components_dir
        self._index: dict[tuple[str, str], Any] | None = None

    def get(self, reference: str) -> Any:
        name, version = _split_reference(reference)
        index = self._load_index()
        if version == "latest":
            versions = sorted((v for n, v in index if n == name), key=_version_key)
            version = versions[-1] if versions else version
        component = index.get((name, version))
        if component is None:
            where = f"in {self._dir} or " if self._dir else ""
            hint = "" if self._dir else " (pass --components DIR with its YAML)"
            raise UsageError(f"unknown component azureml:{reference}: not found {where}in this package{hint}")
        return component

    def _load_index(self) -> dict[tuple[str, str], Any]:
        if self._index is None:
            self._index = {}
            files = [COMPONENT_FILE]
            if self._dir is not None:
                if not self._dir.is_dir():
                    raise UsageError(f"--components: not a folder: {self._dir}")
                files = [*_yaml_files(self._dir), *files]  # the folder wins over the package
            for path in files:
                component = self._load(path)
                if component is not None:
                    self._index.setdefault((component.name, str(component.version or "1")), component)
        return self._index

    def _load(self, path: Path) -> Any:
        try:
            return self._ml.load_component(path)
        except Exception:  # not a component (a pipeline, an environment ...): not ours to judge
            return None


def _yaml_files(folder: Path) -> Iterable[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in {".yml", ".yaml"} and p.is_file())


def _split_reference(reference: str) -> tuple[str, str]:
    """`azureml:name:version`, `name:version`, `name@latest` → (name, version)."""
    text = reference.removeprefix("azureml:")
    if text.startswith("//"):
        raise UsageError(f"unknown component azureml:{text}: registry and ARM references are not supported locally")
    if "@" in text:
        name, _, label = text.partition("@")
        if label != "latest":
            raise UsageError(f"unknown component {reference}: only the label @latest is supported locally")
        return name, "latest"
    name, _, version = text.partition(":")
    return name, version or "latest"


def _version_key(version: str) -> tuple[int | str, ...]:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"[.\-]", version))


def _node(name: str, job_node: Any, registry: ComponentRegistry, base: Path) -> Node:
    if job_node.type != "command":
        raise UsageError(f"node '{name}': {job_node.type} nodes are not supported locally, only command nodes")
    component = job_node.component
    if isinstance(component, str):
        component = registry.get(component)
    declared = {
        key: InputSpec(type=str(spec.type), optional=bool(spec.optional), default=spec.default)
        for key, spec in component.inputs.items()
    }
    bindings: dict[str, Binding] = {}
    for key, node_input in job_node.inputs.items():
        if key not in declared:
            raise UsageError(f"node '{name}': component {component.name} has no input '{key}'")
        binding = _binding(name, key, getattr(node_input, "_data", node_input), base)
        if binding is not None:
            bindings[key] = binding
    outputs = {
        key: OutputSpec(
            type=str(spec.type),
            mode=_node_output_mode(job_node, key) or spec.mode,
            pipeline_output=_pipeline_output(job_node, key),
        )
        for key, spec in component.outputs.items()
    }
    command = str(component.command or "")
    component_name = _component_name(component)
    return Node(
        name=name,
        component=component_name,
        command=command,
        code_dir=_code_dir(component),
        declared_inputs=declared,
        bindings=bindings,
        outputs=outputs,
        environment_variables={
            **{k: str(v) for k, v in (getattr(component, "environment_variables", None) or {}).items()},
            **{k: str(v) for k, v in (job_node.environment_variables or {}).items()},
        },
        runs_databricks=component_name == COMPONENT_NAME or STEP_COMMAND in command,
    )


def _component_name(component: Any) -> str:
    """The component's own name: azure-ai-ml renames components defined inline to `azureml_anonymous`."""
    if component.name != ANONYMOUS:
        return str(component.name)
    source = getattr(component, "_source_path", None)
    if source and Path(source).is_file():
        import yaml  # comes with azure-ai-ml

        declared = yaml.safe_load(Path(source).read_text())
        if isinstance(declared, dict) and declared.get("name"):
            return str(declared["name"])
    return str(component.display_name or component.name)


def _binding(node: str, key: str, data: Any, base: Path) -> Binding | None:
    if data is None:
        return None
    if hasattr(data, "_data_binding"):  # DSL objects: PipelineInput, NodeOutput
        data = data._data_binding()
    elif hasattr(data, "path") and hasattr(data, "type"):  # Input(type=uri_folder, path=...)
        return _data_literal(node, key, data.path, base)
    if isinstance(data, str):
        if match := _PARENT_INPUT.match(data):
            return ParentInput(match.group(1))
        if match := _NODE_OUTPUT.match(data):
            return NodeOutput(match.group(1), match.group(2))
        if "${{" in data:
            raise UsageError(f"node '{node}', input '{key}': unsupported binding {data}")
    return Literal(data)


def _data_literal(node: str, key: str, path: Any, base: Path) -> Literal | None:
    if path is None:
        return None
    text = str(path)
    if "://" in text or text.startswith("azureml:"):
        raise UsageError(f"node '{node}', input '{key}': remote data {text} is not available locally")
    return Literal(str((base / text).resolve()))


def _node_output_mode(job_node: Any, key: str) -> str | None:
    node_output = job_node.outputs.get(key)
    mode = getattr(node_output, "mode", None)
    return str(mode) if mode else None


def _pipeline_output(job_node: Any, key: str) -> str | None:
    node_output = job_node.outputs.get(key)
    data: Any = getattr(node_output, "_data", None)
    if hasattr(data, "_data_binding"):
        data = data._data_binding()
    match = _PIPELINE_OUTPUT.match(data) if isinstance(data, str) else None
    return match.group(1) if match else None


def _code_dir(component: Any) -> Path | None:
    code = getattr(component, "code", None)
    if not code or str(code).startswith("azureml:"):
        return None
    base = Path(getattr(component, "base_path", None) or Path.cwd())
    return (base / str(code)).resolve()


def _check_bindings(nodes: Mapping[str, Node], inputs: Mapping[str, Any]) -> None:
    """Every reference points at something, and every required input gets a value."""
    for node in nodes.values():
        for key, binding in node.bindings.items():
            if isinstance(binding, ParentInput) and binding.name not in inputs:
                raise UsageError(f"node '{node.name}', input '{key}': the pipeline has no input '{binding.name}'")
            if isinstance(binding, NodeOutput):
                upstream = nodes.get(binding.node)
                if upstream is None:
                    raise UsageError(f"node '{node.name}', input '{key}': no node '{binding.node}'")
                if binding.output not in upstream.outputs:
                    where = f"node '{node.name}', input '{key}'"
                    raise UsageError(f"{where}: node '{binding.node}' has no output '{binding.output}'")
        for key, spec in node.declared_inputs.items():
            if spec.optional or spec.default is not None:
                continue
            bound = node.bindings.get(key)
            unset = bound is None or (isinstance(bound, ParentInput) and inputs.get(bound.name) is None)
            if unset:
                raise UsageError(f"node '{node.name}': required input '{key}' is not bound")
