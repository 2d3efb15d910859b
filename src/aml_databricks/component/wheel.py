"""A wheel of the installed aml-databricks, written without a build backend or a package index.

`component export` ships it in the environment's build context, so Azure ML installs exactly the step
that was exported, from no index. It is assembled from what is installed: the package folder (for an
editable install, the source folder it points to) and the distribution's own metadata. That works the
same for `pip install aml-databricks-*.whl`, `pip install -e .` and offline, where `pip wheel .` would
need setuptools from an index.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import zipfile
from collections.abc import Iterator
from pathlib import Path

import aml_databricks
from aml_databricks.errors import AmlDatabricksError

DISTRIBUTION = "aml-databricks"
# Fixed entry times make two exports of the same code byte-identical (zip's earliest date).
_ENTRY_TIME = (1980, 1, 1, 0, 0, 0)


def wheel_name(version: str) -> str:
    return f"{DISTRIBUTION.replace('-', '_')}-{version}-py3-none-any.whl"


def build_wheel(directory: Path) -> Path:
    """Write the installed package as a pure-Python wheel into `directory`; its path."""
    try:
        distribution = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:  # imported from a source folder, never installed
        raise AmlDatabricksError(f"{DISTRIBUTION} is not installed (pip install .): no metadata for its wheel") from exc
    version = distribution.version
    dist_info = f"{DISTRIBUTION.replace('-', '_')}-{version}.dist-info"
    entries: list[tuple[str, bytes]] = [
        (f"aml_databricks/{path.as_posix()}", (_package_dir() / path).read_bytes()) for path in _package_files()
    ]
    entries.append((f"{dist_info}/METADATA", _required(distribution, "METADATA").encode()))
    entries.append((f"{dist_info}/WHEEL", _WHEEL.encode()))
    entry_points = distribution.read_text("entry_points.txt")
    if entry_points:
        entries.append((f"{dist_info}/entry_points.txt", entry_points.encode()))
    record = "".join(f"{name},sha256={_digest(data)},{len(data)}\n" for name, data in entries)
    entries.append((f"{dist_info}/RECORD", (record + f"{dist_info}/RECORD,,\n").encode()))

    directory.mkdir(parents=True, exist_ok=True)
    target = directory / wheel_name(version)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_ENTRY_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return target


_WHEEL = "Wheel-Version: 1.0\nGenerator: aml-databricks component export\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def _package_dir() -> Path:
    return Path(aml_databricks.__file__).resolve().parent


def _package_files() -> Iterator[Path]:
    """The package's files relative to its folder, without bytecode caches (an editable source folder has them)."""
    root = _package_dir()
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and "__pycache__" not in relative.parts and path.suffix != ".pyc":
            yield relative


def _required(distribution: importlib.metadata.Distribution, name: str) -> str:
    text = distribution.read_text(name)
    if text is None:
        raise AmlDatabricksError(f"the installed {DISTRIBUTION} has no {name}: reinstall it")
    return text


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
