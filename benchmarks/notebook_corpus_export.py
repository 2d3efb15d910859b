"""Copy the compatibility corpus's notebooks out of git snapshots of their repositories.

    python benchmarks/notebook_corpus_export.py GIT_DIR CORPUS_DIR [--repo OWNER/NAME]

GIT_DIR is a git directory (bare mirror or a clone's .git) of one repository listed in
benchmarks/notebook_corpus.json; every manifest entry of that repository is written, at the entry's
commit, to CORPUS_DIR/<owner>__<name>/<path>. --repo names the repository when GIT_DIR's path doesn't
(a mirror laid out as .../<owner>+<name>/repo is recognised). The notebooks are their authors' code:
they live in CORPUS_DIR, outside this repository, and are never committed.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

MANIFEST = Path(__file__).with_name("notebook_corpus.json")


def load_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def corpus_path(corpus_dir: Path, entry: dict[str, Any]) -> Path:
    """Where one manifest entry lives in a corpus dir: <owner>__<name>/<path>."""
    repo: str = entry["repo"]
    path: str = entry["path"]
    return corpus_dir / repo.replace("/", "__") / path


def repo_from_git_dir(git_dir: Path) -> str | None:
    """owner/name from a mirror path such as .../owner+name/repo or .../owner+name."""
    for part in reversed(git_dir.resolve().parts):
        match = re.fullmatch(r"([A-Za-z0-9][\w.-]*)\+([\w.-]+?)(?:\.git)?", part)
        if match:
            return f"{match.group(1)}/{match.group(2)}"
    return None


def export(git_dir: Path, repo: str, corpus_dir: Path, manifest: dict[str, Any]) -> tuple[int, list[str]]:
    """Write the repository's entries into corpus_dir: (files written, entries that could not be read)."""
    written, missing = 0, []
    for entry in manifest["notebooks"]:
        if entry["repo"] != repo:
            continue
        shown = subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{entry['commit']}:{entry['path']}"],
                               capture_output=True)
        if shown.returncode != 0:
            missing.append(entry["path"])
            continue
        target = corpus_path(corpus_dir, entry)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(shown.stdout)
        written += 1
    return written, missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("git_dir", type=Path)
    parser.add_argument("corpus_dir", type=Path)
    parser.add_argument("--repo", help="owner/name of the repository GIT_DIR holds")
    args = parser.parse_args(argv)
    repo: str | None = args.repo or repo_from_git_dir(args.git_dir)
    manifest = load_manifest()
    known = {entry["repo"] for entry in manifest["notebooks"]}
    if repo is None or repo not in known:
        print(f"error: {repo or args.git_dir} is not a repository of the corpus manifest; pass --repo OWNER/NAME "
              f"(one of: {', '.join(sorted(known))})", file=sys.stderr)
        return 2
    written, missing = export(args.git_dir, repo, args.corpus_dir, manifest)
    print(f"{repo}: {written} file(s) written to {args.corpus_dir}")
    for path in missing:
        print(f"  not in the snapshot: {path}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
