"""The shell code blocks of README.md and docs/*.md, with what the doc test should do with each.

A block is a ```bash fence. A marker is an HTML comment on the line right before the fence (GitHub
shows nothing of it): `<!-- doctest: WORD ... -->`, words from `KINDS`, then free text saying why.
See tests/docs/test_code_blocks.py for what each word makes the harness do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KINDS = frozenset({"cloud", "synopsis", "background", "spark", "skip"})
_FENCE = re.compile(r"^```(\S*)\s*$")
_MARKER = re.compile(r"^<!--\s*doctest:\s*(?P<body>.*?)\s*-->\s*$")


@dataclass(frozen=True)
class CodeBlock:
    path: Path  # relative to the repository
    line: int  # of the opening fence, 1-based
    code: str
    kinds: frozenset[str]
    reason: str

    @property
    def id(self) -> str:
        return f"{self.path.as_posix()}:{self.line}"


def doc_files(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def bash_blocks(path: Path, root: Path = ROOT) -> list[CodeBlock]:
    """The ```bash blocks of one Markdown file, each with the doctest marker on the line before it."""
    lines = path.read_text().splitlines()
    blocks: list[CodeBlock] = []
    index = 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if not fence:
            index += 1
            continue
        end = next((i for i in range(index + 1, len(lines)) if lines[i].startswith("```")), len(lines))
        if fence.group(1) in ("bash", "sh", "shell"):
            kinds, reason = _marker(lines[index - 1] if index else "", path, index)
            code = "\n".join(lines[index + 1 : end]) + "\n"
            blocks.append(CodeBlock(path.relative_to(root), index + 1, code, kinds, reason))
        index = end + 1
    return blocks


def all_blocks(root: Path = ROOT) -> list[CodeBlock]:
    return [block for path in doc_files(root) for block in bash_blocks(path, root)]


def _marker(line: str, path: Path, index: int) -> tuple[frozenset[str], str]:
    found = _MARKER.match(line.strip())
    if not found:
        return frozenset(), ""
    words = found.group("body").replace(":", " ").split()
    kinds = []
    for word in words:
        if word not in KINDS:
            break
        kinds.append(word)
    if not kinds:
        raise ValueError(f"{path}:{index}: doctest marker names none of {sorted(KINDS)}: {line.strip()}")
    return frozenset(kinds), " ".join(words[len(kinds) :])
