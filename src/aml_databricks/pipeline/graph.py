"""A pipeline as the local runner sees it: nodes, their command templates and how inputs are bound.

Plain data, independent of azure-ai-ml (load.py fills it), so ordering and rendering are tested
without loading any YAML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aml_databricks.errors import UsageError


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class ParentInput:
    """`${{parent.inputs.<name>}}`"""

    name: str


@dataclass(frozen=True)
class NodeOutput:
    """`${{parent.jobs.<node>.outputs.<output>}}`"""

    node: str
    output: str


Binding = Literal | ParentInput | NodeOutput


@dataclass(frozen=True)
class InputSpec:
    type: str
    optional: bool = False
    default: Any = None


@dataclass(frozen=True)
class OutputSpec:
    type: str
    mode: str | None = None
    pipeline_output: str | None = None  # bound to `${{parent.outputs.<name>}}`


@dataclass(frozen=True)
class Node:
    name: str
    component: str  # the component's name, for messages and the report
    command: str  # the template, with ${{inputs.*}}, ${{outputs.*}} and $[[...]] left in
    code_dir: Path | None
    declared_inputs: Mapping[str, InputSpec]
    bindings: Mapping[str, Binding]  # only the inputs the node sets
    outputs: Mapping[str, OutputSpec]
    environment_variables: Mapping[str, str] = field(default_factory=dict)
    runs_databricks: bool = False  # the node runs `aml-databricks run`: it needs a workspace

    def upstream(self) -> set[str]:
        return {b.node for b in self.bindings.values() if isinstance(b, NodeOutput)}


@dataclass(frozen=True)
class PipelineGraph:
    name: str
    experiment_name: str
    source: Path
    inputs: Mapping[str, Any]  # pipeline-level input values, --set applied
    nodes: Mapping[str, Node]  # in declaration order


def topological_order(nodes: Mapping[str, Node]) -> list[Node]:
    """Nodes ordered so that each runs after the nodes whose outputs it reads.

    Ties keep declaration order, so a run is reproducible. A cycle is a UsageError naming it.
    """
    for node in nodes.values():
        for upstream in sorted(node.upstream()):
            if upstream not in nodes:
                raise UsageError(f"node '{node.name}' reads an output of unknown node '{upstream}'")
    remaining = {name: set(node.upstream()) for name, node in nodes.items()}
    ordered: list[Node] = []
    while remaining:
        ready = [name for name, waits_for in remaining.items() if not waits_for]
        if not ready:
            raise UsageError(f"the pipeline has a cycle: {' -> '.join(_find_cycle(remaining))}")
        name = ready[0]
        ordered.append(nodes[name])
        del remaining[name]
        for waits_for in remaining.values():
            waits_for.discard(name)
    return ordered


def _find_cycle(waits: Mapping[str, set[str]]) -> list[str]:
    """One cycle among nodes that all wait for something, as a closed path a -> b -> a."""
    path: list[str] = []
    current = min(waits)
    while current not in path:
        path.append(current)
        current = min(waits[current])
    return [*path[path.index(current) :], current]
