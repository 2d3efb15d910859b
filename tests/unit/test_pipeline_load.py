"""Loading pipelines with azure-ai-ml (YAML and DSL) into the runner's graph, and bad inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from aml_databricks.component import COMPONENT_NAME
from aml_databricks.errors import UsageError
from aml_databricks.pipeline.graph import Literal, NodeOutput, ParentInput, topological_order
from aml_databricks.pipeline.load import PipelineSource, load_pipeline
from tests.unit.pipeline_files import PIPELINE_YML, tiny_pipeline, write

pytest.importorskip("azure.ai.ml")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_example_yaml_loads_into_two_nodes_databricks_first() -> None:
    graph = load_pipeline(str(EXAMPLES / "pipeline" / "pipeline.yml"))
    assert graph.experiment_name == "aml-databricks-demo"
    databricks, train = topological_order(graph.nodes)
    assert (databricks.name, train.name) == ("databricks", "train")
    assert databricks.runs_databricks and not train.runs_databricks
    assert databricks.component == COMPONENT_NAME  # azureml:execute_databricks_notebook:1, from the package
    assert databricks.bindings["notebook_path"] == ParentInput("notebook_path")
    assert databricks.bindings["num_workers"] == Literal(2)
    assert databricks.outputs["output_path"].mode == "upload"  # the node's mode wins over the component's
    assert databricks.code_dir is None
    assert train.bindings["data"] == NodeOutput("databricks", "output_path")
    assert train.code_dir == EXAMPLES / "train"
    assert train.outputs["model"].pipeline_output == "model"
    assert train.declared_inputs["test_size"].optional
    assert graph.inputs == {"notebook_path": "/Shared/aml-databricks/export_table"}


def test_the_example_dsl_pipeline_loads_the_same_shape() -> None:
    graph = load_pipeline(f"{EXAMPLES / 'pipeline' / 'pipeline.py'}:build_pipeline")
    adb, train = topological_order(graph.nodes)
    assert adb.runs_databricks and adb.name == "adb"
    assert train.bindings["data"] == NodeOutput("adb", "output_path")
    assert "databricks_host" not in adb.bindings  # None in the DSL means unset


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("p.yml", ("p.yml", None, None)),
        ("dir/p.py", ("dir/p.py", None, "build_pipeline")),
        ("dir/p.py:make", ("dir/p.py", None, "make")),
        ("pkg.pipelines:make", (None, "pkg.pipelines", "make")),
    ],
)
def test_pipeline_references(reference: str, expected: tuple[str | None, str | None, str | None]) -> None:
    source = PipelineSource.parse(reference)
    assert (str(source.path) if source.path else None, source.module, source.function) == expected


def test_set_overrides_a_pipeline_input_with_its_type(tmp_path: Path) -> None:
    pipeline = tiny_pipeline(tmp_path)
    graph = load_pipeline(str(pipeline), {"n": "7"}, components_dir=tmp_path / "components")
    assert graph.inputs["n"] == 7


def test_component_references_resolve_from_the_components_folder(tmp_path: Path) -> None:
    graph = load_pipeline(str(tiny_pipeline(tmp_path)), components_dir=tmp_path / "components")
    assert graph.nodes["count"].component == "count_rows"
    assert graph.nodes["make"].code_dir == (tmp_path / "components").resolve()
    assert [n.name for n in topological_order(graph.nodes)] == ["make", "count"]


def bad(tmp_path: Path, pipeline: str, **kwargs: object) -> str:
    path = tiny_pipeline(tmp_path, pipeline)
    with pytest.raises(UsageError) as caught:
        load_pipeline(str(path), components_dir=tmp_path / "components", **kwargs)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_missing_pipeline_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"^pipeline file not found: .*nope\.yml$"):
        load_pipeline(str(tmp_path / "nope.yml"))


def test_an_unknown_component_reference(tmp_path: Path) -> None:
    message = bad(tmp_path, PIPELINE_YML.replace("count_rows:2", "count_rows:3"))
    assert message.startswith("unknown component azureml:count_rows:3: not found in ")


def test_an_unknown_component_reference_without_components_folder_says_how_to_give_one(tmp_path: Path) -> None:
    path = tiny_pipeline(tmp_path)
    with pytest.raises(UsageError, match=r"count_rows:2: not found in this package \(pass --components DIR"):
        load_pipeline(str(path))


def test_an_unbound_required_input(tmp_path: Path) -> None:
    unbound = PIPELINE_YML.replace("    inputs:\n      rows: ${{parent.jobs.make.outputs.rows}}\n", "    inputs: {}\n")
    message = bad(tmp_path, unbound)
    assert message == "node 'count': required input 'rows' is not bound"


def test_an_unknown_set_input(tmp_path: Path) -> None:
    assert bad(tmp_path, PIPELINE_YML, overrides={"m": "1"}) == "--set m: the pipeline has no input 'm' (its inputs: n)"


def test_a_set_value_of_the_wrong_type(tmp_path: Path) -> None:
    assert bad(tmp_path, PIPELINE_YML, overrides={"n": "many"}) == "--set: 'many' is not a int"


def test_a_binding_to_a_missing_output(tmp_path: Path) -> None:
    message = bad(tmp_path, PIPELINE_YML.replace("outputs.rows}}", "outputs.lines}}"))
    assert message == "node 'count', input 'rows': node 'make' has no output 'lines'"


def test_a_cycle_loads_and_fails_ordering(tmp_path: Path) -> None:
    write(tmp_path, "components/pass.yml", """
        type: command
        name: pass_through
        environment: azureml:python:1
        command: echo ${{inputs.x}} ${{outputs.y}}
        inputs: {x: {type: uri_folder}}
        outputs: {y: {type: uri_folder}}
    """)
    pipeline = write(tmp_path, "cycle.yml", """
        type: pipeline
        jobs:
          a: {type: command, component: ./components/pass.yml, inputs: {x: "${{parent.jobs.b.outputs.y}}"}}
          b: {type: command, component: ./components/pass.yml, inputs: {x: "${{parent.jobs.a.outputs.y}}"}}
    """)
    graph = load_pipeline(str(pipeline))
    with pytest.raises(UsageError, match=r"^the pipeline has a cycle: a -> b -> a$"):
        topological_order(graph.nodes)


def test_an_invalid_yaml_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.yml", "type: pipeline\njobs:\n  a: {type: command, component: 3}\n")
    with pytest.raises(UsageError) as caught:
        load_pipeline(str(path))
    assert str(caught.value).startswith(f"{path}: invalid pipeline: ")
    assert "\n" not in str(caught.value)
