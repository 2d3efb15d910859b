"""Client libraries whose dependencies conflict with ours (Airflow, Prefect), each in its own cached venv.

`client_venv(name, requirements)` returns `~/.cache/aml-databricks/client-venvs/<name>-<hash>` (or under
`$AML_DATABRICKS_CLIENT_VENVS`), creating it the first time with this interpreter's `venv` and pip and
installing the pinned requirements; the hash covers the requirements and the Python version, so a new
pin makes a new venv and an unchanged one is reused for ever. pip's own cache makes a re-creation
cheap and offline-friendly. A venv is built beside its final name and renamed into place when
complete, so an interrupted install is never mistaken for a ready one.

`run_client(venv, script, env)` runs one of `tests/clients/scripts/` in that venv against a live local
workspace (`DATABRICKS_HOST`, `DATABRICKS_TOKEN` in `env`), as a subprocess: the client's code runs
unchanged, in its own interpreter.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).parent / "scripts"
ENABLE_ENV = "AML_DATABRICKS_CLIENT_TESTS"


def cache_root() -> Path:
    configured = os.environ.get("AML_DATABRICKS_CLIENT_VENVS")
    return Path(configured) if configured else Path.home() / ".cache" / "aml-databricks" / "client-venvs"


def client_venv(name: str, requirements: list[str], *, timeout: float = 1800) -> Path:
    """The ready venv for `requirements` (pinned), created once and reused."""
    key = "\n".join([f"python {sys.version_info.major}.{sys.version_info.minor}", *sorted(requirements)])
    folder = cache_root() / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if (folder / "bin" / "python").exists():
        return folder
    building = folder.with_name(f"{folder.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(building)], check=True, timeout=120)
    installed = subprocess.run([str(building / "bin" / "python"), "-m", "pip", "install", "-q", *requirements],
                               capture_output=True, text=True, timeout=timeout)
    if installed.returncode != 0:
        shutil.rmtree(building, ignore_errors=True)
        raise RuntimeError(f"pip install {' '.join(requirements)} failed:\n{installed.stderr[-3000:]}")
    try:
        building.rename(folder)
    except OSError:  # another process finished the same venv first: use theirs
        shutil.rmtree(building, ignore_errors=True)
    return folder


def run_client(venv: Path, script: str, env: dict[str, str], *args: str,
               timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `scripts/<script>` with the venv's interpreter; its stdout and stderr are returned."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return subprocess.run([str(venv / "bin" / "python"), str(SCRIPTS / script), *args], env={**clean, **env},
                          capture_output=True, text=True, timeout=timeout, cwd=venv)
