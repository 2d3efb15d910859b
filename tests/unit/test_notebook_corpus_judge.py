"""The corpus script's verdicts: a run that times out is a failure whatever the notebook needs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "notebook_corpus.py"


def corpus_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("notebook_corpus", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("notebook_corpus", module)
    spec.loader.exec_module(module)
    return module


def outcome(result_state: str, error: str = "", hung: bool = False) -> dict[str, object]:
    return {"result_state": result_state, "error": error, "hung": hung}


def test_a_timeout_is_never_inherent() -> None:
    judge = corpus_script().judge
    delta_notebook = {"needs": ["delta"]}

    assert judge(delta_notebook, outcome("TIMEDOUT", "Run timed out after 300 seconds."), {"delta"}, set()) == {
        "result": "fail", "feature": "timeout"}
    assert judge(delta_notebook, outcome("FAILED", hung=True), {"delta"}, set()) == {"result": "fail",
                                                                                      "feature": "hang"}


def test_an_unresolvable_host_is_the_internet_and_a_declared_need_is_inherent() -> None:
    judge = corpus_script().judge
    error = ("ConnectionError: HTTPSConnectionPool(host='demo.cloud.databricks.com', port=443): Max retries "
             "exceeded with url: /api/2.0/mlflow/runs/create (Caused by NameResolutionError(...))")

    assert judge({"needs": []}, outcome("FAILED", error), set(), set()) == {"result": "inherent",
                                                                            "feature": "internet"}
    assert judge({"needs": ["fails-on-databricks"]}, outcome("FAILED", "FileNotFoundError: x"),
                 {"fails-on-databricks"}, set())["result"] == "inherent"
