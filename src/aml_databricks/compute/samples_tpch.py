"""TPC-H tables (Databricks' `samples.tpch.*`), generated offline, and what the other samples need.

TPC-H is a specification: its data generator makes the same rows for a given scale factor wherever it
runs, so generated data *is* the real dataset at that scale (Databricks' `samples.tpch` is one scale
factor of it; the local workspace makes a smaller one, `DEFAULT_SCALE_FACTOR`, about 3 MB of parquet).
The generator is `tpchgen-cli` (a Rust build of dbgen's algorithm, shipped as a PyPI wheel, no network).

A table source, not an installer: `generate` writes the parquet files (cached per scale factor),
`install` saves them as tables of a given schema through `tables.load_table`. Whoever installs the
sample tables (at start-up or lazily) decides when and under which local schema name.

`samples.nyctaxi.trips` is recorded data (real taxi trips), which nothing can produce offline:
`unavailable_message` is the one line a notebook sees instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

TABLES = ("customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier")
DEFAULT_SCALE_FACTOR = 0.01
GENERATOR = "tpchgen-cli"
_MARKER = ".complete"


class SampleUnavailable(Exception):
    """A sample dataset the local workspace can't provide; the message is one line saying what to do."""


def generator_path() -> str:
    """tpchgen-cli next to this interpreter (its wheel installs it there) or on PATH."""
    beside = Path(sys.executable).parent / GENERATOR
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(GENERATOR)
    if found is None:
        raise SampleUnavailable(
            f"samples.tpch needs the TPC-H generator {GENERATOR}, which is not installed: "
            f"pip install {GENERATOR} (or aml-databricks[local])"
        )
    return found


def generate(folder: Path, scale_factor: float = DEFAULT_SCALE_FACTOR) -> dict[str, Path]:
    """The TPC-H tables at `scale_factor` as parquet files under `folder`/sf<scale_factor>/, made once."""
    if not 0 < scale_factor <= 100:
        raise ValueError(f"TPC-H scale factor must be in (0, 100], not {scale_factor}")
    target = folder / f"sf{scale_factor:g}"
    if not (target / _MARKER).exists():
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        command = [generator_path(), "parquet", "--scale-factor", f"{scale_factor:g}", "--output-dir", str(partial)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise SampleUnavailable(f"{GENERATOR} failed (exit {done.returncode}): {last}")
        (partial / _MARKER).write_text(f"{scale_factor:g}\n")
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)  # whole or not at all: a half-written set is never taken for a complete one
    return {table: target / f"{table}.parquet" for table in TABLES}


def install(spark: Any, schema: str, folder: Path, scale_factor: float = DEFAULT_SCALE_FACTOR) -> dict[str, int]:
    """Save the TPC-H tables as `schema.<table>` (parquet); their row counts by table."""
    from aml_databricks.compute.tables import load_table

    files = generate(folder, scale_factor)
    return {table: load_table(spark, f"{schema}.{table}", path) for table, path in files.items()}


def unavailable_message(schema: str, table: str) -> str | None:
    """The one line for a `samples.<schema>.<table>` the local workspace doesn't have, or None."""
    name = f"samples.{schema}.{table}"
    if schema.lower() == "nyctaxi":
        return (f"{name} is not available: the NYC taxi trips are recorded data that Databricks hosts and the "
                "local workspace can't produce offline; load a copy (parquet or CSV) with `aml-databricks "
                f"workspace load-table nyctaxi.{table} FILE` and query nyctaxi.{table}.")
    if schema.lower() == "tpch" and table.lower() in TABLES:
        return (f"{name} is not installed: TPC-H is generated offline (`{GENERATOR} parquet --scale-factor "
                f"{DEFAULT_SCALE_FACTOR:g} --output-dir DIR`, the real dataset at a smaller scale factor than "
                f"Databricks'); load it with `aml-databricks workspace load-table tpch.{table} DIR/{table}.parquet`.")
    return None
