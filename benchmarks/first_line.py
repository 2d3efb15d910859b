"""How long a command keeps its user waiting for its first line, against a bare `python -c pass`.

    python benchmarks/first_line.py [--runs 5]

For `workspace serve` (a fresh data dir) and `pipeline run examples/pipeline/pipeline.yml` (a fresh
data dir), the seconds from spawning the process to its first byte on stdout or stderr; the
process is then stopped. The baseline is the interpreter's own start on the same machine at the
same time, since these 2-core machines are shared and noisy. Medians; writes
benchmarks/results/first_line.json.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import median, print_table, write_json

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "workspace serve": ["workspace", "serve", "--port", "0", "--data-dir", "{data}"],
    "pipeline run": ["pipeline", "run", str(ROOT / "examples" / "pipeline" / "pipeline.yml"), "--data-dir", "{data}"],
}


def first_line_s(argv: list[str]) -> tuple[float, str]:
    with tempfile.TemporaryDirectory(prefix="first-line-") as folder:
        argv = [a.replace("{data}", str(Path(folder) / "data")) for a in argv]
        started = time.monotonic()
        process = subprocess.Popen(argv, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   start_new_session=True)
        assert process.stdout is not None and process.stderr is not None
        ready, _, _ = select.select([process.stdout, process.stderr], [], [], 120)
        seconds = time.monotonic() - started
        line = os.read(ready[0].fileno(), 300).decode(errors="replace").splitlines()[0] if ready else ""
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        return seconds, line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    load_at_start = os.getloadavg()[0]
    baseline = [first_line_s([sys.executable, "-c", "print('x')"])[0] for _ in range(runs)]
    rows, data = [], {"runs": runs, "python_start_s": median(baseline)}
    for name, args in COMMANDS.items():
        results = [first_line_s([sys.executable, "-m", "aml_databricks.cli", *args]) for _ in range(runs)]
        seconds = median([s for s, _ in results])
        rows.append([name, f"{seconds:.2f} s", f"{median(baseline):.2f} s", results[0][1][:70]])
        data[name] = {"first_line_s": seconds, "line": results[0][1]}
    print_table("first line (medians)", ["command", "first line", "python -c", "the line"], rows)
    data["load_average_1min"] = [load_at_start, os.getloadavg()[0]]
    print(f"load average (1 min): {load_at_start:.2f} at start, {os.getloadavg()[0]:.2f} at the end")
    print(f"results: {write_json('first_line', data)}")


if __name__ == "__main__":
    main()
