"""Task libraries: pip into a cached folder per requirement set, offline (a wheel made here)."""

from __future__ import annotations

import base64
import hashlib
import io
import threading
import zipfile
from pathlib import Path

import pytest

from aml_databricks.compute.host.libraries import LibraryInstaller, LibraryInstallError

pytestmark = pytest.mark.subprocess  # pip


def make_wheel(folder: Path, name: str = "amldbx_tiny", version: str = "0.1") -> Path:
    """A minimal pure-Python wheel, written directly (no build backend, no network)."""
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{name}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record_name = f"{name}-{version}.dist-info/RECORD"
    lines = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        lines.append(f"{path},sha256={digest},{len(text.encode())}")
    files[record_name] = "\n".join([*lines, f"{record_name},,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    make_wheel(tmp_path / "wheels")
    return tmp_path / "wheels"


@pytest.fixture
def installer(tmp_path: Path, wheelhouse: Path) -> LibraryInstaller:
    # --no-index: the tests never reach a package index.
    return LibraryInstaller(tmp_path / "data", pip_args=["--no-index", "--find-links", str(wheelhouse)])


def test_pypi_package_is_installed_once_and_then_reused(installer: LibraryInstaller) -> None:
    log = io.StringIO()
    first = installer.install([{"pypi": {"package": "amldbx_tiny==0.1"}}], log)
    assert len(first) == 1 and (first[0] / "amldbx_tiny" / "__init__.py").is_file()
    assert "pip install amldbx_tiny==0.1" in log.getvalue()

    again = io.StringIO()
    assert installer.install([{"pypi": {"package": "amldbx_tiny==0.1"}}], again) == first
    assert "reusing" in again.getvalue()


def test_whl_library_from_a_local_path_and_from_dbfs(
    installer: LibraryInstaller, wheelhouse: Path, tmp_path: Path
) -> None:
    wheel = next(wheelhouse.glob("*.whl"))
    [folder] = installer.install([{"whl": str(wheel)}], io.StringIO())
    assert (folder / "amldbx_tiny").is_dir()

    dbfs_copy = tmp_path / "data" / "dbfs" / "FileStore" / "jars" / wheel.name
    dbfs_copy.parent.mkdir(parents=True)
    dbfs_copy.write_bytes(wheel.read_bytes())
    [from_dbfs] = installer.install([{"whl": f"dbfs:/FileStore/jars/{wheel.name}"}], io.StringIO())
    assert (from_dbfs / "amldbx_tiny").is_dir()


def test_missing_package_fails_with_what_pip_said(installer: LibraryInstaller, tmp_path: Path) -> None:
    log = io.StringIO()
    with pytest.raises(LibraryInstallError, match=r"aml-databricks-no-such-package-xyz.*pip said:"):
        installer.install([{"pypi": {"package": "aml-databricks-no-such-package-xyz"}}], log)
    assert "No matching distribution" in log.getvalue()
    assert [p.name for p in (tmp_path / "data" / "libraries").iterdir() if p.is_dir()] == []


@pytest.mark.parametrize(
    "library",
    [
        {"jar": "dbfs:/x.jar"},
        {"maven": {"coordinates": "a:b:1"}},
        {"cran": {"package": "x"}},
        {"egg": "/x.egg"},
    ],
)
def test_jvm_r_and_egg_libraries_are_refused(installer: LibraryInstaller, library: dict[str, object]) -> None:
    with pytest.raises(LibraryInstallError, match="not supported locally"):
        installer.install([library], io.StringIO())


def test_a_whl_that_is_not_there_is_an_error(installer: LibraryInstaller) -> None:
    with pytest.raises(LibraryInstallError, match="not a local file"):
        installer.install([{"whl": "/nowhere/x-1-py3-none-any.whl"}], io.StringIO())


def test_no_libraries_no_folder(installer: LibraryInstaller) -> None:
    assert installer.install([], io.StringIO()) == []


def test_concurrent_installs_of_one_set_run_pip_once(installer: LibraryInstaller) -> None:
    logs = [io.StringIO(), io.StringIO()]
    results: list[list[Path]] = []
    threads = [
        threading.Thread(
            target=lambda log=log: results.append(
                installer.install([{"pypi": {"package": "amldbx_tiny"}}], log)
            )
        )
        for log in logs
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results[0] == results[1]
    assert sorted("reusing" in log.getvalue() for log in logs) == [False, True]


def test_azureml_mlflow_is_provided_and_the_rest_still_installed(installer: LibraryInstaller, tmp_path: Path) -> None:
    # The step's default --pypi: locally MLflow logs into a local store and needs no plugin, offline.
    log = io.StringIO()
    assert installer.install([{"pypi": {"package": "azureml-mlflow"}}], log) == []
    assert "azureml-mlflow is provided by the local workspace" in log.getvalue()
    [folder] = installer.install([{"pypi": {"package": "azureml_mlflow>=1.50"}},
                                  {"pypi": {"package": "amldbx_tiny==0.1"}}], io.StringIO())
    assert (folder / "amldbx_tiny").is_dir() and not list(folder.glob("azureml*"))
    with pytest.raises(LibraryInstallError, match="could not install azureml-mlflow-lookalike"):
        installer.install([{"pypi": {"package": "azureml-mlflow-lookalike"}}], io.StringIO())
