"""Small pure rules of the workspace: paths, fault specs, tokens."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from aml_databricks.errors import UsageError
from aml_databricks.workspace.errors import InvalidParameterValue, MalformedRequest
from aml_databricks.workspace.faults import parse_faults
from aml_databricks.workspace.objects import normalize_path
from aml_databricks.workspace.server import resolve_token
from aml_databricks.workspace.wire import USER_VALUE_PATHS, check_value


@pytest.mark.parametrize(("raw", "normal"), [
    ("/Users/me/nb", "/Users/me/nb"), ("/Workspace/Users/me/nb", "/Users/me/nb"), ("//Shared///x/", "/Shared/x"),
    ("/", "/"),
])
def test_paths_are_normalised(raw: str, normal: str) -> None:
    assert normalize_path(raw) == normal


@pytest.mark.parametrize("raw", ["Users/me", "/a/../b", "/a/./b", "/a\x00b", "/a\\b", None, 3])
def test_escapes_are_refused(raw: object) -> None:
    with pytest.raises(InvalidParameterValue):
        normalize_path(raw)


def test_fault_spec() -> None:
    plan = parse_faults("429=0.2,503=0.1,reset=0.05,latency=0-200ms")
    assert plan.rates == {"429": 0.2, "503": 0.1, "reset": 0.05} and plan.latency_ms == (0, 200)
    assert plan.describe() == "429=0.2,503=0.1,reset=0.05,latency=0-200ms"
    assert not parse_faults("none").active


@pytest.mark.parametrize("spec", ["429", "418=0.1", "429=x", "429=1.5", "429=0.6,503=0.6", "latency=fast"])
def test_bad_fault_specs(spec: str) -> None:
    with pytest.raises(UsageError):
        parse_faults(spec)


def test_generated_token_is_stored_private_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AML_DATABRICKS_LOCAL_TOKEN", raising=False)
    token, source = resolve_token(tmp_path, None)
    assert token.startswith("dapi") and source == str(tmp_path / "token")
    assert stat.S_IMODE((tmp_path / "token").stat().st_mode) == 0o600
    assert resolve_token(tmp_path, None)[0] == token
    monkeypatch.setenv("AML_DATABRICKS_LOCAL_TOKEN", "from-env")
    assert resolve_token(tmp_path, None) == ("from-env", "$AML_DATABRICKS_LOCAL_TOKEN")
    assert resolve_token(tmp_path, "flag")[0] == "flag"


def test_null_fields_are_dropped_at_every_depth_but_kept_in_a_users_own_value() -> None:
    body = {"a": None, "tasks": [{"depends_on": None, "notebook_task": {"source": None, "x": 1}}]}
    assert check_value(body) == {"tasks": [{"notebook_task": {"x": 1}}]}
    value = {"key": "k", "value": {"kept": None, "list": [None]}}
    assert check_value(value, drop_nulls=False) == {"key": "k", "value": {"kept": None, "list": [None]}}
    assert "/api/2.0/local/task-values/set" in USER_VALUE_PATHS


def nested(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("body", [
    {"run_name": "bad\ud800"}, {"bad\udfff": 1}, {"tasks": [{"x": ["\ud800"]}]},
    {"deep": nested(70)},
])
def test_lone_surrogates_and_deep_nesting_are_malformed(body: dict[str, object]) -> None:
    with pytest.raises(MalformedRequest):
        check_value(body)
