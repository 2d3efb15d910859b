"""Shared helpers of the benchmark scripts: a served workspace subprocess, a counting proxy, RSS, stats, tables."""

from __future__ import annotations

import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

RESULTS = Path(__file__).parent / "results"


def rss_mb(pid: int) -> float:
    """Resident memory of one process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


@contextmanager
def served_workspace(data_dir: Path, *extra: str, token: str = "dapi-bench") -> Iterator[tuple[str, str, int]]:
    """`aml-databricks workspace serve` in its own process: (host, token, pid)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "aml_databricks.cli", "workspace", "serve", "--port", "0", "--data-dir",
         str(data_dir), "--token", token, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if "Local Databricks workspace at" in line:
                yield line.split(" at ")[1].strip(), token, process.pid
                break
        else:
            raise RuntimeError(f"the workspace did not start (exit {process.wait()})")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=False)]
    print(f"\n{title}")
    print("| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)) + " |")


def write_json(name: str, data: object) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


class CountingProxy:
    """Forwards every request to the workspace; remembers when each run's runs/get was called and
    when each runs/submit was answered (the moment a client's run is submitted)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.polls: dict[int, list[float]] = defaultdict(list)
        self.submitted: list[tuple[float, int, str]] = []  # (answered at, run id, run name)
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                parts = urlsplit(self.path)
                if parts.path.endswith("/jobs/runs/get"):
                    run_id = parse_qs(parts.query).get("run_id", ["0"])[0]
                    with proxy._lock:
                        proxy.polls[int(run_id)].append(time.time())
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()
                if parts.path.endswith("/jobs/runs/submit") and response.status == 200:
                    name = str(json.loads(body or b"{}").get("run_name"))
                    with proxy._lock:
                        proxy.submitted.append((time.time(), int(json.loads(data)["run_id"]), name))

            do_GET = do_POST = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
