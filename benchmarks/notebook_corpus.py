"""Run public Databricks notebooks, unchanged, on the local workspace: the compatibility corpus.

    python benchmarks/notebook_corpus.py CORPUS_DIR [--workspace URL] [--data-dir DIR] [--timeout 600]
                                                    [--only SUBSTRING]
    python benchmarks/notebook_corpus.py fetch CORPUS_DIR [--mirrors DIR]
    python benchmarks/notebook_corpus.py rejudge RESULTS_JSON CORPUS_DIR

The corpus is listed in benchmarks/notebook_corpus.json: for each notebook its repository, path, commit,
import format and language, its role (`run`: measured; `support`: uploaded only, because a measured
notebook `%run`s, `dbutils.notebook.run`s or imports it), what it needs and the category expected with a
one-line reason. The notebooks are their authors' code and are never committed: CORPUS_DIR holds them as
<owner>__<name>/<path>.

`fetch` re-creates CORPUS_DIR from git snapshots: for each repository it reads a git directory at
MIRRORS/<owner>+<name>/repo (or MIRRORS/<owner>+<name>) if there is one, else clones the repository from
GitHub (needs the internet), and copies the listed files at the listed commit
(benchmarks/notebook_corpus_export.py does the same for one snapshot given on the command line).

Running: starts `aml-databricks workspace serve` on a fresh data dir (or uses --workspace URL with
$DATABRICKS_TOKEN), imports every file of the corpus through the Workspace API (databricks-sdk) under
/Corpus/<owner>__<name>/ — notebooks as SOURCE or JUPYTER with their language and without their
extension, other files as AUTO — then submits each `run` notebook as a one-time run on the existing
cluster "local" with --timeout seconds, one at a time, and prints a table: result (pass / fail /
inherent), the feature it broke on, the first line of runs/get-output `error`, the duration.

inherent = the manifest says the notebook needs something unavailable offline (its `needs` meet
`inherent_needs`), or the error text says so: DATA_SOURCE_NOT_FOUND delta -> delta; `sc` NameError or an
RDD attribute -> rdd; a /databricks-datasets path -> datasets; a name-resolution or connection error ->
internet. Every other failure is `fail`, labelled by the first rule in FEATURES its error matches; a run that
times out (or hangs) is always `fail`: whatever it needs, it must end with a reason.
`rejudge` prints the table of an earlier run's JSON again, judged with the manifest as it is now.
Prints the pass rate overall and among the notebooks that need nothing unavailable offline; writes
benchmarks/results/notebook_corpus.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table, served_workspace, write_json
from notebook_corpus_export import corpus_path, export, load_manifest

ROOT = "/Corpus"
TERMINAL = {"TERMINATED", "SKIPPED", "INTERNAL_ERROR"}
# (feature, pattern over the error text, inherent?): first match names the feature a run broke on.
FEATURES: list[tuple[str, str, bool]] = [
    ("delta", r"DATA_SOURCE_NOT_FOUND.*delta|Failed to find the data source: delta|DESCRIBE (DETAIL|HISTORY)"
              r"|`(DETAIL|HISTORY)` cannot be found|DeltaTable|io\.delta", True),
    ("rdd", r"name 'sc' is not defined|sparkContext|\bRDD\b|\.rdd\b|'rdd'|\brdd is not implemented|"
            r"JVM_ATTRIBUTE_NOT_SUPPORTED", True),
    ("datasets", r"databricks-datasets|samples\.(nyctaxi|tpch)", True),
    ("internet", r"Name or service not known|Temporary failure in name resolution|Failed to resolve|"
                 r"Connection refused|Max retries exceeded|UnknownHostException|\bs3a?://|\bhttps?://", True),
    ("language", r"(Scala|R) cells are not supported|%(r|scala)\b", True),
    ("Unity Catalog names", r"USE CATALOG|REQUIRES_SINGLE_PART_NAMESPACE|hive_metastore|/Volumes/", False),
    ("df.display()", r"'Column' object is not callable|DataFrame' object has no attribute 'display'", False),
    ("SQL widgets", r"WIDGET|getArgument|UNBOUND_SQL_PARAMETER", False),
    ("%fs", r"FsUtils\.\w+\(\) missing|%fs", False),
    ("notebook.run", r"WorkflowException|notebook\.run", False),
    ("notebook path", r"RESOURCE_DOES_NOT_EXIST", False),
    ("missing file", r"PATH_NOT_FOUND|Path does not exist|No such file or directory|FileNotFound|does not exist",
     False),
    ("missing table", r"TABLE_OR_VIEW_NOT_FOUND|SCHEMA_NOT_FOUND", False),
    ("SQL syntax", r"PARSE_SYNTAX_ERROR|ParseException", False),
    ("widget value", r"InputWidgetNotDefined|widget", False),
]
MODULE_MISSING = re.compile(r"No module named '([\w.]+)'")


def classify(error: str, modules: AbstractSet[str] = frozenset()) -> tuple[str, bool]:
    """The feature an error names and whether it is inherent (unavailable offline). A missing module is
    a file next to the notebook when the corpus has it in the notebook's repository, else a package."""
    missing = MODULE_MISSING.search(error)
    if missing:
        top = missing.group(1).split(".")[0]
        return ("files next to the notebook", False) if top in modules else ("package", True)
    for feature, pattern, inherent in FEATURES:
        if re.search(pattern, error, 0 if feature == "rdd" else re.IGNORECASE):
            return feature, inherent
    return "other", False


def first_line(text: str | None) -> str:
    """The first non-blank line; "ParseException: " followed by the message on the next line reads as one."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        return f"{lines[0]} {lines[1]}"[:200]
    return lines[0][:200] if lines else ""


def notebook_frame(trace: str) -> str:
    """The innermost frame of the trace that names a notebook cell, e.g. <notebook /x, cell 3>, line 6."""
    frames = re.findall(r'File "(<notebook [^>]*>)", line (\d+)', trace)
    return f"{frames[-1][0]} line {frames[-1][1]}" if frames else ""


def sibling_modules(corpus_dir: Path, repo: str) -> set[str]:
    """Top-level module names a notebook of this repository could import from its Git folder."""
    root = corpus_dir / repo.replace("/", "__")
    return {p.stem for p in root.rglob("*.py")} | {p.parent.name for p in root.rglob("__init__.py")}


def workspace_path(entry: dict[str, Any]) -> str:
    """Where an entry is imported: notebooks lose their extension, as Databricks does."""
    path = f"{ROOT}/{entry['repo'].replace('/', '__')}/{entry['path']}"
    if entry["format"] in ("SOURCE", "JUPYTER"):
        path = path.rsplit(".", 1)[0]
    return path


def upload(client: Any, corpus_dir: Path, entries: list[dict[str, Any]]) -> list[str]:
    """Import every entry found in corpus_dir, unchanged; returns the problems (missing files, refusals)."""
    from databricks.sdk.service.workspace import ImportFormat, Language

    problems = []
    for entry in entries:
        source = corpus_path(corpus_dir, entry)
        if not source.is_file():
            problems.append(f"missing from the corpus dir: {entry['repo']}/{entry['path']}")
            continue
        target = workspace_path(entry)
        client.workspace.mkdirs(target.rsplit("/", 1)[0])
        notebook = entry["format"] in ("SOURCE", "JUPYTER")
        try:
            client.workspace.upload(target, source.read_bytes(), format=ImportFormat(entry["format"]),
                                    language=Language(entry["language"]) if notebook else None, overwrite=True)
        except Exception as error:  # a refused import is a result to report
            problems.append(f"import refused: {target}: {first_line(str(error))}")
    return problems


def run_one(client: Any, entry: dict[str, Any], timeout_s: int) -> dict[str, Any]:
    """Submit one notebook as a one-time run, wait for it (hang guard: timeout + 60 s), read its output."""
    from databricks.sdk.service.jobs import NotebookTask, SubmitTask

    path = workspace_path(entry)
    started = time.monotonic()
    waiter = client.jobs.submit(run_name=f"corpus {entry['path']}", timeout_seconds=timeout_s, tasks=[
        SubmitTask(task_key="notebook", existing_cluster_id="local", notebook_task=NotebookTask(notebook_path=path))])
    run_id, hung = waiter.run_id, False
    while True:
        run = client.jobs.get_run(run_id)
        if run.state and run.state.life_cycle_state and run.state.life_cycle_state.value in TERMINAL:
            break
        if time.monotonic() - started > timeout_s + 60:
            hung = True
            client.jobs.cancel_run(run_id)
            break
        time.sleep(0.5)
    duration = time.monotonic() - started
    state = run.state
    result_state = state.result_state.value if state and state.result_state else None
    error, trace = "", ""
    if run.tasks:
        output = client.jobs.get_run_output(run.tasks[0].run_id)
        error, trace = output.error or "", output.error_trace or ""
    if hung:
        error = f"HANG: still {state.life_cycle_state.value if state and state.life_cycle_state else '?'} " \
                f"after {timeout_s + 60} s"
    elif not error and result_state != "SUCCESS":
        error = (state.state_message if state else "") or f"result {result_state}"
    return {"run_id": run_id, "result_state": result_state, "hung": hung, "duration_s": round(duration, 1),
            "error": error, "where": notebook_frame(trace), "error_chars": len(error),
            "error_trace_chars": len(trace)}


def judge(entry: dict[str, Any], outcome: dict[str, Any], inherent_needs: set[str], modules: set[str]
          ) -> dict[str, Any]:
    """pass / fail / inherent, and the feature a failing run broke on."""
    if outcome["result_state"] == "SUCCESS":
        return {"result": "pass", "feature": ""}
    if outcome["hung"] or outcome["result_state"] == "TIMEDOUT":
        # never inherent: whatever a notebook needs, it must fail with a reason rather than run out the clock
        return {"result": "fail", "feature": "hang" if outcome["hung"] else "timeout"}
    feature, inherent = classify(outcome["error"], modules)
    declared = set(entry["needs"]) & inherent_needs
    return {"result": "inherent" if inherent or declared else "fail", "feature": feature}


def run_corpus(args: argparse.Namespace, host: str, token: str) -> int:
    from databricks.sdk import WorkspaceClient

    manifest = load_manifest()
    inherent_needs = set(manifest["inherent_needs"])
    entries = manifest["notebooks"]
    client = WorkspaceClient(host=host, token=token)
    for problem in upload(client, args.corpus_dir, entries):
        print(f"warning: {problem}", file=sys.stderr)
    measured = [e for e in entries if e["role"] == "run" and (not args.only or args.only in e["path"])
                and corpus_path(args.corpus_dir, e).is_file()]
    records = []
    for entry in measured:
        outcome = run_one(client, entry, args.timeout)
        record = {**{k: entry[k] for k in ("repo", "path", "commit", "format", "needs", "expected")},
                  **outcome, **judge(entry, outcome, inherent_needs, sibling_modules(args.corpus_dir, entry["repo"]))}
        records.append(record)
        print(f"  {record['result']:8} {record['duration_s']:6.1f} s  {entry['repo']}/{entry['path']}"
              f"{'  ' + record['feature'] if record['feature'] else ''}", flush=True)
    report(records, inherent_needs)
    return 0


def rejudge(results: Path, corpus_dir: Path) -> int:
    """The table of an earlier run's JSON, judged again with the manifest as it is now (needs, rules)."""
    manifest = load_manifest()
    inherent_needs = set(manifest["inherent_needs"])
    entries = {(e["repo"], e["path"]): e for e in manifest["notebooks"]}
    records = []
    for old in json.loads(results.read_text())["notebooks"]:
        entry = entries.get((old["repo"], old["path"]))
        if entry is None:
            continue
        record = {**old, "needs": entry["needs"], "expected": entry["expected"]}
        records.append({**record, **judge(entry, record, inherent_needs, sibling_modules(corpus_dir, entry["repo"]))})
    report(records, inherent_needs)
    return 0


def report(records: list[dict[str, Any]], inherent_needs: set[str]) -> None:
    rows = [(f"{r['repo'].split('/')[1][:18]}/{Path(r['path']).name[:42]}", r["result"], r["feature"],
             first_line(r["error"])[:110], f"{r['duration_s']:.1f}") for r in records]
    print_table("Compatibility corpus", ["notebook", "result", "feature", "first error line", "s"], rows)
    offline = [r for r in records if not set(r["needs"]) & inherent_needs]
    passed = sum(r["result"] == "pass" for r in records)
    passed_offline = sum(r["result"] == "pass" for r in offline)
    print(f"\npass rate: {passed}/{len(records)} ({100 * passed / max(1, len(records)):.0f}%) overall; "
          f"{passed_offline}/{len(offline)} ({100 * passed_offline / max(1, len(offline)):.0f}%) among the "
          "notebooks that need nothing unavailable offline")
    by_feature: dict[str, list[str]] = {}
    for r in records:
        if r["result"] != "pass":
            by_feature.setdefault(r["feature"], []).append(Path(r["path"]).name)
    for feature, names in sorted(by_feature.items(), key=lambda item: -len(item[1])):
        print(f"  {feature}: {len(names)} ({', '.join(names)})")
    path = write_json("notebook_corpus", {"notebooks": records, "passed": passed, "total": len(records),
                                          "passed_offline": passed_offline, "total_offline": len(offline)})
    print(f"wrote {path}")


def fetch(corpus_dir: Path, mirrors: Path | None) -> int:
    """Re-create corpus_dir from git snapshots (local mirrors first, else a clone from GitHub)."""
    manifest = load_manifest()
    failed = 0
    for repo in sorted({e["repo"] for e in manifest["notebooks"]}):
        stem = repo.replace("/", "+")
        candidates = [mirrors / stem / "repo", mirrors / stem] if mirrors else []
        git_dir = next((c for c in candidates if (c / "HEAD").is_file() or (c / ".git").exists()), None)
        with tempfile.TemporaryDirectory() as scratch:
            if git_dir is None:
                clone = subprocess.run(["git", "clone", "--bare", "--quiet", f"https://github.com/{repo}.git",
                                        f"{scratch}/repo"], capture_output=True, text=True)
                if clone.returncode != 0:
                    print(f"{repo}: no snapshot ({first_line(clone.stderr)})", file=sys.stderr)
                    failed += 1
                    continue
                git_dir = Path(scratch) / "repo"
            elif (git_dir / ".git").exists():
                git_dir = git_dir / ".git"
            written, missing = export(git_dir, repo, corpus_dir, manifest)
        print(f"{repo}: {written} file(s)" + (f", {len(missing)} not in the snapshot" if missing else ""))
        failed += bool(missing)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["rejudge"]:
        parser = argparse.ArgumentParser(prog="notebook_corpus.py rejudge")
        parser.add_argument("results", type=Path, help="a benchmarks/results/notebook_corpus.json")
        parser.add_argument("corpus_dir", type=Path)
        judged = parser.parse_args(argv[1:])
        if not judged.results.is_file():
            print(f"error: {judged.results} is not a file", file=sys.stderr)
            return 2
        return rejudge(judged.results, judged.corpus_dir)
    if argv[:1] == ["fetch"]:
        parser = argparse.ArgumentParser(prog="notebook_corpus.py fetch")
        parser.add_argument("corpus_dir", type=Path)
        parser.add_argument("--mirrors", type=Path, help="folder of git snapshots named <owner>+<name>")
        fetched = parser.parse_args(argv[1:])
        return fetch(fetched.corpus_dir, fetched.mirrors)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus_dir", type=Path)
    parser.add_argument("--workspace", help="URL of a running workspace (token from $DATABRICKS_TOKEN)")
    parser.add_argument("--data-dir", type=Path, help="data dir of the workspace started (default: a fresh one)")
    parser.add_argument("--timeout", type=int, default=600, help="per-notebook run timeout in seconds")
    parser.add_argument("--only", help="run only the notebooks whose path contains this")
    args = parser.parse_args(argv)
    if not args.corpus_dir.is_dir():
        print(f"error: {args.corpus_dir} is not a directory; create it with `notebook_corpus.py fetch`",
              file=sys.stderr)
        return 2
    if args.workspace:
        token = os.environ.get("DATABRICKS_TOKEN")
        if not token:
            print("error: --workspace needs $DATABRICKS_TOKEN", file=sys.stderr)
            return 2
        return run_corpus(args, args.workspace, token)
    with tempfile.TemporaryDirectory() as scratch, \
            served_workspace(args.data_dir or Path(scratch)) as (host, token, _pid):
        return run_corpus(args, host, token)


if __name__ == "__main__":
    sys.exit(main())
