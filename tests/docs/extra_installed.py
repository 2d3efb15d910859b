"""`python -m tests.docs.extra_installed EXTRA...`: exit 0 when every requirement of aml-databricks and of
those extras is installed at a version it accepts, else print the missing ones and exit 1.

The doc test runs this in place of the docs' `pip install -e '.[EXTRA]'`: the project's venv is already
installed, and reinstalling it from a temporary copy would point its editable install at that copy.
"""

from __future__ import annotations

import importlib.metadata
import sys

from packaging.requirements import Requirement

DISTRIBUTION = "aml-databricks"


def missing(extras: set[str]) -> list[str]:
    found: list[str] = []
    seen: set[str] = set()
    pending = set(extras)
    while pending:
        extra = pending.pop()
        seen.add(extra)
        for text in importlib.metadata.requires(DISTRIBUTION) or []:
            requirement = Requirement(text)
            marker = requirement.marker
            applies = marker is None or marker.evaluate({"extra": extra})
            if not applies or (marker is None and extra != ""):
                continue  # the base requirements are checked once, for the extra ""
            if requirement.name == DISTRIBUTION:
                pending |= set(requirement.extras) - seen
                continue
            try:
                version = importlib.metadata.version(requirement.name)
            except importlib.metadata.PackageNotFoundError:
                found.append(f"{requirement} (not installed)")
                continue
            if not requirement.specifier.contains(version, prereleases=True):
                found.append(f"{requirement} (installed: {version})")
        pending -= seen
    return sorted(set(found))


def main(argv: list[str]) -> int:
    problems = missing({"", *argv})
    for problem in problems:
        print(f"not installed: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
