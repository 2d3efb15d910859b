"""The catalog classes' jar: `catalog/*.java` compiled with javac, built once.

`DeltaCatalog` is the session catalog (Delta tables); `CatalogAlias` gives it its Databricks names
(`hive_metastore`, `main`). The jar is cached in `<data_dir>/delta/` under a name holding the hash
of the sources and the pyspark version, so a new release of either builds a new one (about 1.5 s on a quiet machine).
Without a JDK there is no jar: the server runs without the catalog (path tables still work) and
`jar_or_reason` says in one line what is missing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

CATALOG_CLASS = "aml_databricks.delta.DeltaCatalog"
ALIAS_CLASS = "aml_databricks.delta.CatalogAlias"
SOURCES = sorted((Path(__file__).resolve().parent / "catalog").glob("*.java"))
_BUILD_TIMEOUT_S = 300


def jar_or_reason(data_dir: Path) -> tuple[Path | None, str]:
    """(the jar, "") or (None, why there is none, one line)."""
    import pyspark

    source = b"".join(path.name.encode() + path.read_bytes() for path in SOURCES)
    digest = hashlib.sha256(source + pyspark.__version__.encode()).hexdigest()[:12]
    jar = Path(data_dir) / "delta" / f"delta-catalog-{digest}.jar"
    if jar.is_file():
        return jar, ""
    javac = shutil.which("javac") or _javac_beside_java()
    if javac is None:
        return None, (
            "Delta catalog tables (saveAsTable, CREATE TABLE, SQL on Delta tables) need a JDK, and javac was not "
            "found: install one (Debian: apt-get install openjdk-17-jdk-headless); format('delta') paths work without"
        )
    jar.parent.mkdir(parents=True, exist_ok=True)
    jars = Path(pyspark.__file__).resolve().parent / "jars"
    with tempfile.TemporaryDirectory(dir=jar.parent) as build:
        completed = subprocess.run(
            [javac, "--release", "17", "-nowarn", "-cp", f"{jars}/*", "-d", build, *map(str, SOURCES)],
            capture_output=True,
            text=True,
            timeout=_BUILD_TIMEOUT_S,
            check=False,
        )
        if completed.returncode != 0:
            last = (completed.stderr or completed.stdout).strip().splitlines()[-1:] or ["no output"]
            return None, f"the Delta catalog did not compile (javac exit {completed.returncode}): {last[0]}"
        partial = Path(build) / "catalog.jar"
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
            for compiled in sorted(Path(build).rglob("*.class")):
                archive.write(compiled, compiled.relative_to(build).as_posix())
        os.replace(partial, jar)  # concurrent builds: the last complete jar wins, never a partial one
    return jar, ""


def _javac_beside_java() -> str | None:
    java = shutil.which("java")
    if java is None:
        return None
    candidate = Path(os.path.realpath(java)).parent / "javac"
    return str(candidate) if candidate.is_file() else None
