"""Task libraries (`libraries[]` of a task) installed with pip into the data dir, cached.

One folder per requirement set: `<data_dir>/libraries/<sha256 of the sorted set>`, made with
`pip install --target` into a temporary folder and renamed when pip succeeded, so a folder that
exists is complete and is reused as is. Installs of the same set from concurrent runs serialize
on a lock file. The driver puts the returned folders on `sys.path`.

Supported: `pypi {package, repo}` (repo = an extra index), and `whl` / `requirements` files that
exist locally (`dbfs:/x` and `/dbfs/x` name `<data_dir>/dbfs/x`). `jar`, `maven`, `cran` and
`egg` can't run in a local Python driver: they fail the install with a clear message instead of
being skipped in silence.

Provided: `azureml-mlflow` (the step's default `--pypi`) is not installed. On Databricks it lets the
notebook's MLflow log into the Azure ML run; locally the pass-through goes to a local MLflow store
and needs nothing, and installing it would need the network. Any other library that can't be
installed still fails the run with LIBRARY_INSTALLATION_ERROR, as on Databricks.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from aml_databricks.compute.host import lifeline, procs
from aml_databricks.compute.protocol import dbfs_root
from aml_databricks.errors import AmlDatabricksError

UNSUPPORTED = ("jar", "maven", "cran", "egg")
PIP_TIMEOUT_S = 900
PROVIDED = frozenset({"azureml-mlflow"})  # normalised names of packages the local workspace stands in for
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class LibraryInstallError(AmlDatabricksError):
    """A task library can't be installed; the run fails with LIBRARY_INSTALLATION_ERROR."""


class LibraryInstaller:
    def __init__(self, data_dir: Path, *, pip_args: Sequence[str] = ()) -> None:
        """`pip_args` are added to every pip call (tests pass `--no-index --find-links DIR`)."""
        self.root = Path(data_dir).resolve() / "libraries"
        self.dbfs_root = dbfs_root(Path(data_dir).resolve())
        self.pip_args = list(pip_args)

    def install(self, libraries: list[dict[str, Any]], log: TextIO) -> list[Path]:
        """Install the libraries (cached); return the folders to put on the driver's path."""
        libraries = [library for library in libraries if not self._provided(library, log)]
        if not libraries:
            return []
        requirements, indexes = self._requirements(libraries)
        key = hashlib.sha256(json.dumps([requirements, indexes]).encode()).hexdigest()[:16]
        target = self.root / key
        self.root.mkdir(parents=True, exist_ok=True)
        with _locked(self.root / f"{key}.lock"):
            if target.is_dir():
                log.write(f"libraries: reusing {target} for {', '.join(requirements)}\n")
                return [target]
            self._pip_install(requirements, indexes, target, log)
        return [target]

    @staticmethod
    def _provided(library: dict[str, Any], log: TextIO) -> bool:
        spec = library.get("pypi")
        if not isinstance(spec, dict) or spec.get("repo"):
            return False
        match = _NAME.match(str(spec.get("package") or ""))
        if match is None or re.sub(r"[-_.]+", "-", match.group(1)).lower() not in PROVIDED:
            return False
        log.write(f"libraries: {spec['package']} is provided by the local workspace (MLflow logs locally)\n")
        return True

    def _requirements(self, libraries: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
        """The pip arguments of each library (sorted) and the extra indexes they name."""
        requirements: list[str] = []
        indexes: set[str] = set()
        for library in libraries:
            kinds = [k for k in library if library[k] is not None]
            if len(kinds) != 1:
                raise LibraryInstallError(f"a library must have exactly one kind, got {sorted(library)}")
            kind, spec = kinds[0], library[kinds[0]]
            if kind in UNSUPPORTED:
                raise LibraryInstallError(
                    f"{kind} library {_describe(spec)} is not supported locally: "
                    "the local workspace runs Python drivers only (pypi, whl, requirements)"
                )
            if kind == "pypi":
                if not isinstance(spec, dict) or not spec.get("package"):
                    raise LibraryInstallError(f"pypi library needs a 'package', got {spec!r}")
                requirements.append(str(spec["package"]).strip())
                if spec.get("repo"):
                    indexes.add(str(spec["repo"]))
            elif kind in ("whl", "requirements"):
                path = self._local_path(str(spec), kind)
                # The file's size and mtime join the cache key: a rebuilt wheel must not hit a stale folder.
                stat = path.stat()
                marker = f"{path}#{stat.st_size}-{int(stat.st_mtime)}"
                requirements.append(f"-r {marker}" if kind == "requirements" else marker)
            else:
                raise LibraryInstallError(f"unknown library kind {kind!r}")
        return sorted(requirements), sorted(indexes)

    def _local_path(self, value: str, kind: str) -> Path:
        for prefix in ("dbfs:/", "/dbfs/"):
            if value.startswith(prefix):
                path = self.dbfs_root / value[len(prefix) :].lstrip("/")
                break
        else:
            path = Path(value.removeprefix("file://"))
        if not path.is_file():
            raise LibraryInstallError(f"{kind} library {value!r} is not a local file ({path} does not exist)")
        return path

    def _pip_install(self, requirements: list[str], indexes: list[str], target: Path, log: TextIO) -> None:
        staging = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        command = [sys.executable, "-m", "pip", "install", "--no-input", "--disable-pip-version-check"]
        command += ["--target", str(staging), *self.pip_args]
        for index in indexes:
            command += ["--extra-index-url", index]
        for requirement in requirements:
            argument = requirement.split("#", 1)[0]  # drop the cache marker
            command += ["-r", argument[3:]] if argument.startswith("-r ") else [argument]
        log.write(f"libraries: pip install {' '.join(requirements)} -> {target}\n")
        log.flush()
        # armed to die with the workspace: an install must not go on after a kill -9 of it; its own session,
        # so what it starts (a package's build) is ended with it (warden.py)
        pip = lifeline.popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            stdout, stderr = pip.communicate(timeout=PIP_TIMEOUT_S)
        except subprocess.TimeoutExpired as error:
            procs.send(pip.pid, signal.SIGKILL, group=True)
            pip.communicate()
            shutil.rmtree(staging, ignore_errors=True)
            raise LibraryInstallError(f"pip install timed out after {PIP_TIMEOUT_S} s") from error
        log.write(stdout)
        log.write(stderr)
        log.flush()
        if pip.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            said = "\n".join((stderr or stdout).strip().splitlines()[-5:])
            raise LibraryInstallError(
                f"could not install {', '.join(r.split('#', 1)[0] for r in requirements)}; pip said: {said}"
            )
        staging.rename(target)
        log.write(f"libraries: installed into {target}\n")


def _describe(spec: Any) -> str:
    if isinstance(spec, dict):
        return repr(spec.get("coordinates") or spec.get("package") or spec)
    return repr(spec)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
