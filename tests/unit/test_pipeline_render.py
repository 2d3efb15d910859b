"""Rendering component commands: placeholders, `$[[...]]`, quoting."""

from __future__ import annotations

import shlex

import pytest

from aml_databricks.errors import UsageError
from aml_databricks.pipeline.render import render_command

TEMPLATE = (
    "python train.py --data ${{inputs.data}} --model ${{outputs.model}} "
    "$[[--depth ${{inputs.depth}}]] $[[--label ${{inputs.label}} --weights ${{inputs.weights}}]] --end"
)


def test_placeholders_are_replaced_and_unset_optional_parts_dropped() -> None:
    command = render_command(TEMPLATE, {"data": "/d"}, {"model": "/m"})
    assert command == "python train.py --data /d --model /m --end"


def test_an_optional_part_is_kept_when_all_its_inputs_are_set() -> None:
    command = render_command(TEMPLATE, {"data": "/d", "depth": 3, "label": "y"}, {"model": "/m"})
    assert shlex.split(command) == ["python", "train.py", "--data", "/d", "--model", "/m", "--depth", "3", "--end"]
    command = render_command(TEMPLATE, {"data": "/d", "label": "y", "weights": "w"}, {"model": "/m"})
    assert "--label y --weights w --end" in command


def test_values_stay_one_argument_whatever_they_contain() -> None:
    command = render_command("echo ${{inputs.text}}", {"text": "two  words; rm -rf /"}, {})
    assert shlex.split(command) == ["echo", "two  words; rm -rf /"]


def test_false_zero_and_empty_string_are_values_not_unset() -> None:
    template = "run $[[--flag ${{inputs.flag}}]] $[[--n ${{inputs.n}}]] $[[X=${{inputs.x}}]]"
    assert shlex.split(render_command(template, {"flag": False, "n": 0, "x": ""}, {})) == [
        "run",
        "--flag",
        "False",
        "--n",
        "0",
        "X=",
    ]


def test_environment_assignments_in_front_of_the_command_are_optional_parts_too() -> None:
    template = "$[[AML_DATABRICKS_PYPI=${{inputs.pypi}}]] $[[A=${{inputs.a}}]] aml-databricks run"
    assert render_command(template, {"a": "1,2"}, {}) == "A=1,2 aml-databricks run"


def test_spaces_inside_placeholders_are_allowed() -> None:
    assert render_command("echo ${{ inputs.a }}", {"a": "x"}, {}) == "echo x"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("echo ${{inputs.missing}}", r"\$\{\{inputs.missing\}\}, which has no value"),
        ("echo ${{outputs.nothing}}", r"\$\{\{outputs.nothing\}\}, which has no value"),
    ],
)
def test_a_required_placeholder_without_value_is_a_usage_error(template: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        render_command(template, {}, {})
