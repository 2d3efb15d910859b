"""A new user's install: the README's `pip install -e '.[pipeline]'` then `.[test]`, in a new venv with the
pip this Python ships (no upgrade first: Python 3.11's is 23.2.1, whose resolver crashes on conflicts that
newer pips resolve), from a clean copy of the committed tree (`git archive HEAD`).

It needs the package index (a warm pip cache makes it a few minutes), so it runs only when selected:
`python -m pytest -m install` (.ci/run does, after the suite). Elsewhere it is skipped, saying so.
"""

from __future__ import annotations

import ensurepip
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT_S = 1500

pytestmark = pytest.mark.install


@pytest.fixture(autouse=True)
def _only_when_selected(request: pytest.FixtureRequest) -> None:
    if "install" not in (request.config.option.markexpr or ""):
        pytest.skip("installs from the package index for minutes: run with `-m install`")


def clean_copy(target: Path) -> Path:
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def pip_env() -> dict[str, str]:
    """The caller's pip settings (index, cache) minus anything that would make the install offline or odd."""
    drop = ("PIP_NO_INDEX", "PIP_REQUIRE_VIRTUALENV", "PYTHONPATH", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if k not in drop}


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=pip_env(), capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
    )


def test_the_readme_installs_work_with_the_pip_python_ships(tmp_path: Path) -> None:
    source = clean_copy(tmp_path / "aml-databricks")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")

    version = run([python, "-m", "pip", "--version"], source)
    assert version.stdout.startswith(f"pip {ensurepip.version()} "), version.stdout  # the bundled one

    for extras in ("pipeline", "test"):
        installed = run([python, "-m", "pip", "install", "-q", "-e", f".[{extras}]"], source)
        tail = (installed.stdout + installed.stderr)[-4000:]
        assert installed.returncode == 0, f"pip install -e '.[{extras}]' failed:\n{tail}"
        assert "Traceback" not in installed.stderr, tail

    for command in (["--help"], ["pipeline", "run", "--help"]):
        shown = run([str(venv / "bin" / "aml-databricks"), *command], source)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.startswith("usage: aml-databricks"), shown.stdout
    checked = run([python, "-m", "pip", "check"], source)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    imported = run([python, "-c", "import azure.ai.ml, mlflow, pyspark.sql.connect.session, databricks.sdk"], source)
    assert imported.returncode == 0, imported.stderr
