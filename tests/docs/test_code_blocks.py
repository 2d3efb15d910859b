"""Every ```bash block of README.md and docs/*.md runs, as written, in a fresh copy of the repository.

Each block runs in its own copy of the working tree's files that git does not ignore (so an edited README
is tested before it is committed), with this project's venv first on PATH, offline: `PIP_NO_INDEX=1`.
It passes when bash (`-e -o pipefail`) exits 0 and no Spark server of its data dir is left running.

Markers: an HTML comment on the line right before the fence, `<!-- doctest: WORD ... reason -->`.
    (none)       run the block.
    cloud        needs Azure or a real Databricks workspace: only parsed (`bash -n`), never run.
    synopsis     a usage line, not a command: its command's `--help` must list every `--flag` it shows.
    background   the block's `aml-databricks workspace serve` line starts a server, as in a second
                 terminal: the harness runs it in the background on a free port (the block's `8080` is
                 replaced by that port), waits until it accepts connections, exports DATABRICKS_HOST and
                 DATABRICKS_TOKEN (as the docs tell the reader to) for the lines after it, and stops it
                 (SIGTERM) when the block ends.
    spark        the block starts Spark (a pipeline run, a workspace with notebooks): the test gets the
                 `spark` marker, so slow blocks can be budgeted or deselected (`-m "not spark"`).
    skip         not run; the text after it says why.

Setup lines are not run literally, because the project's venv is already installed (a second install
from a temporary copy would point its editable install at that copy):
    `python3 -m venv .venv && . .venv/bin/activate && `  is dropped: the project's venv is on PATH;
    `pip install -e '.[EXTRAS]'`  becomes a check that every requirement of those extras is installed
                                  (tests/docs/extra_installed.py);
    `python -m pytest`            becomes `python -m pytest --collect-only -q`: this is the suite.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aml_databricks.compute.host.jvm import jvm_pids
from tests.docs.code_blocks import ROOT, CodeBlock, all_blocks, bash_blocks, doc_files

BLOCKS = all_blocks()
BLOCK_TIMEOUT_S = 900
DEFAULT_PORT = "8080"
_VENV = re.compile(r"python3 -m venv \.venv && \. \.venv/bin/activate && ")
_PIP_INSTALL = re.compile(r"pip install -e '\.\[(?P<extras>[\w,]+)\]'")
_PYTEST = re.compile(r"python -m pytest(?= *($|&&|;|\n))")
_SERVE = re.compile(r"^aml-databricks workspace serve\b.*$", re.MULTILINE)
_FLAG = re.compile(r"(?<![\w-])--[a-z][\w-]*")


def params() -> list[object]:
    marks = {"spark": pytest.mark.spark}
    return [
        pytest.param(block, id=block.id, marks=[marks[k] for k in sorted(block.kinds) if k in marks])
        for block in BLOCKS
    ]


@pytest.mark.parametrize("block", params())
def test_code_block(block: CodeBlock, tmp_path: Path) -> None:
    if "skip" in block.kinds:
        pytest.skip(block.reason or "marked skip")
    if "cloud" in block.kinds:
        parsed = subprocess.run(["bash", "-n"], input=block.code, text=True, capture_output=True)
        assert parsed.returncode == 0, f"{block.id}: not valid bash: {parsed.stderr}"
        return
    if "synopsis" in block.kinds:
        check_synopsis(block)
        return
    checkout = copy_of_repository(tmp_path / "repo")
    script = runnable(block, free_port())
    process = subprocess.Popen(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=checkout,
        env=offline_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        stop_group(process)
        output, _ = process.communicate()
        pytest.fail(f"{block.id}: still running after {BLOCK_TIMEOUT_S} s:\n{output[-4000:]}")
    finally:
        stop_group(process)
    assert process.returncode == 0, f"{block.id} exited {process.returncode}:\n{script}\n--- output:\n{output[-6000:]}"
    assert jvm_pids(checkout / ".aml-databricks") == [], f"{block.id} left a Spark server running"


def test_every_doc_block_is_found_and_every_marker_is_known() -> None:
    # A typo in a marker raises while collecting; a renamed fence would silently drop a block.
    fences = sum(len(re.findall(r"^```(?:bash|sh|shell)\s*$", p.read_text(), re.MULTILINE)) for p in doc_files())
    assert fences == len(BLOCKS) > 0


def test_the_marker_on_the_line_before_a_fence_applies_to_it(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    doc = tmp_path / "README.md"
    doc.write_text(
        "text\n<!-- doctest: cloud needs a subscription -->\n```bash\naz ml job create -f x.yml\n```\n"
        "\n```bash\necho hi\n```\n```python\nprint(1)\n```\n"
    )
    cloud, plain = bash_blocks(doc, tmp_path)
    assert (cloud.kinds, cloud.reason, cloud.line, cloud.code) == (
        frozenset({"cloud"}),
        "needs a subscription",
        3,
        "az ml job create -f x.yml\n",
    )
    assert (plain.kinds, plain.id) == (frozenset(), "README.md:7")
    doc.write_text("<!-- doctest: clowd -->\n```bash\necho\n```\n")
    with pytest.raises(ValueError, match="names none of"):
        bash_blocks(doc, tmp_path)


def test_setup_lines_are_checked_not_rerun_and_a_server_goes_to_the_background() -> None:
    block = CodeBlock(
        Path("README.md"),
        1,
        "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[pipeline]'\n"
        "aml-databricks workspace serve --mount /mnt/x=./datastore\n"
        "export DATABRICKS_HOST=http://127.0.0.1:8080\n"
        "pip install -e '.[test]' && python -m pytest\n",
        frozenset({"background"}),
        "",
    )
    script = runnable(block, 5123)
    assert "python3 -m venv" not in script and "pip install" not in script
    assert "-m tests.docs.extra_installed pipeline\n" in script
    assert "aml-databricks workspace serve --mount /mnt/x=./datastore --port 5123 > " in script
    assert "DATABRICKS_HOST=http://127.0.0.1:5123" in script and "8080" not in script
    assert "python -m pytest --collect-only -q" in script


# --- how a block is run ------------------------------------------------------------------------


def runnable(block: CodeBlock, port: int) -> str:
    """The block's code with its setup lines substituted and, for `background`, its server backgrounded."""
    code = _VENV.sub("", block.code)
    code = _PIP_INSTALL.sub(lambda m: f"python -m tests.docs.extra_installed {m['extras'].replace(',', ' ')}", code)
    code = _PYTEST.sub("python -m pytest --collect-only -q", code)
    if "background" not in block.kinds:
        return code
    code = code.replace(f"127.0.0.1:{DEFAULT_PORT}", f"127.0.0.1:{port}")
    if not _SERVE.search(code):
        raise AssertionError(f"{block.id}: marked background but starts no `aml-databricks workspace serve`")
    return _SERVE.sub(lambda m: background(m.group(0), port), code, count=1)


def background(serve: str, port: int) -> str:
    """A serve line as a background job: wait for its port, export its address and token, stop it at exit."""
    if "--port" not in serve:
        serve += f" --port {port}"
    return f"""{serve} > .serve.log 2>&1 &
SERVE_PID=$!
trap 'kill -TERM $SERVE_PID 2>/dev/null; wait $SERVE_PID || true' EXIT
for _ in $(seq 1800); do
  (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && break
  kill -0 $SERVE_PID 2>/dev/null || {{ cat .serve.log; exit 1; }}
  sleep 0.1
done
export DATABRICKS_HOST=http://127.0.0.1:{port} DATABRICKS_TOKEN=$(cat .aml-databricks/token)"""


def check_synopsis(block: CodeBlock) -> None:
    words = shlex.split(block.code.replace("\\\n", " "))
    command = []
    for word in words:
        if not re.fullmatch(r"[a-z][\w-]*", word):
            break
        command.append(word)
    shown = set(_FLAG.findall(block.code))
    help_text = subprocess.run(
        [*command, "--help"], capture_output=True, text=True, env=offline_env(), check=True
    ).stdout
    assert shown <= set(_FLAG.findall(help_text)), f"{block.id}: flags not in `{' '.join(command)} --help`"


def copy_of_repository(target: Path) -> Path:
    """The working tree's files that git does not ignore (edits and new files in, venvs and state out)."""
    git = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    listed = subprocess.run(git, cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def offline_env() -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "AML_DATABRICKS_"))}
    env.update(PATH=f"{venv_bin}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(Path(venv_bin).parent))
    env["PIP_NO_INDEX"] = "1"
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def stop_group(process: subprocess.Popen[str]) -> None:
    """End whatever the block left in its session (its own trap stops the server first)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                process.wait()
                return
            time.sleep(0.1)
