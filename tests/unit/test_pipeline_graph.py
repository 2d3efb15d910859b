"""Ordering nodes by their bindings, and finding cycles."""

from __future__ import annotations

import pytest

from aml_databricks.errors import UsageError
from aml_databricks.pipeline.graph import Literal, Node, NodeOutput, OutputSpec, topological_order


def node(name: str, *reads: str) -> Node:
    """A node whose input i reads output `out` of node reads[i]."""
    return Node(
        name=name,
        component="c",
        command="true",
        code_dir=None,
        declared_inputs={},
        bindings={f"in{i}": NodeOutput(upstream, "out") for i, upstream in enumerate(reads)} | {"x": Literal(1)},
        outputs={"out": OutputSpec("uri_folder")},
    )


def names(nodes: list[Node]) -> list[str]:
    return [n.name for n in nodes]


def test_upstream_nodes_run_first_whatever_the_declaration_order() -> None:
    graph = {n.name: n for n in (node("train", "prep"), node("score", "train", "prep"), node("prep"))}
    assert names(topological_order(graph)) == ["prep", "train", "score"]


def test_independent_nodes_keep_their_declaration_order() -> None:
    graph = {n.name: n for n in (node("b"), node("a"), node("c", "a"))}
    assert names(topological_order(graph)) == ["b", "a", "c"]


def test_a_cycle_is_named_as_a_closed_path() -> None:
    graph = {n.name: n for n in (node("first"), node("a", "c", "first"), node("b", "a"), node("c", "b"))}
    with pytest.raises(UsageError, match=r"the pipeline has a cycle: a -> c -> b -> a"):
        topological_order(graph)


def test_a_node_reading_its_own_output_is_a_cycle() -> None:
    with pytest.raises(UsageError, match=r"cycle: loop -> loop"):
        topological_order({"loop": node("loop", "loop")})


def test_an_unknown_upstream_node_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"node 'train' reads an output of unknown node 'nowhere'"):
        topological_order({"train": node("train", "nowhere")})
