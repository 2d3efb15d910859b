"""The workspace's forwarders over real loopback sockets: the TLS front door routes by protocol, the Spark
Connect address forwards and counts traffic. Upstreams are small TCP servers that say who they are."""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import ssl
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509

from aml_databricks.workspace.gateway import ALPN_PROTOCOLS, Gateway, is_tls, route
from aml_databricks.workspace.h2_handshake import EMPTY_SETTINGS
from aml_databricks.workspace.tls import TlsFiles, ensure_tls


class Tagged(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, tag: bytes) -> None:
        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data = self.request.recv(1024)
                self.request.sendall(tag + b":" + data[:16])

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server_address[:2]
        return str(host), int(port)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return ensure_tls(tmp_path_factory.mktemp("data"), "127.0.0.1")


@pytest.fixture
def front(tls_files: TlsFiles) -> Iterator[tuple[int, list[int]]]:
    """A front door whose Spark side answers "spark", its REST side "rest"; yields its port and a
    list that grows by one each time the Spark side's client sends something."""
    spark, rest, used = Tagged(b"spark"), Tagged(b"rest"), []
    gateway = Gateway()
    listener = socket.create_server(("127.0.0.1", 0))
    gateway.serve_front(listener, tls_files.server_context(ALPN_PROTOCOLS),
                        lambda: (spark.address, lambda: used.append(1)), rest.address)
    yield listener.getsockname()[1], used
    gateway.close()
    for upstream in (spark, rest):
        upstream.shutdown()
        upstream.server_close()


def ask(port: int, payload: bytes, wrap: Callable[[socket.socket], socket.socket] = lambda s: s) -> bytes:
    """What comes back until the gateway closes (the upstreams answer once and hang up)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, wrap(raw) as sock:
        sock.sendall(payload)
        answer = b""
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            while chunk := sock.recv(1024):
                answer += chunk
        return answer


def tls(ca: Path, alpn: list[str]) -> Callable[[socket.socket], socket.socket]:
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(alpn)
    return lambda raw: context.wrap_socket(raw, server_hostname="127.0.0.1")


def test_grpc_over_tls_goes_to_spark_connect(front: tuple[int, list[int]], tls_files: TlsFiles) -> None:
    port, used = front
    # the gateway answers HTTP/2's handshake itself (h2_handshake.py), then the server answers
    assert ask(port, b"PRI * HTTP/2.0\r\n", tls(tls_files.ca, ["h2"])) == EMPTY_SETTINGS + b"spark:PRI * HTTP/2.0\r\n"
    assert used  # its traffic counted as use of the cluster


@pytest.mark.parametrize("alpn", [["h2", "http/1.1"], ["http/1.1"], []])
def test_https_goes_to_the_rest_server_even_from_clients_that_speak_http2(
    front: tuple[int, list[int]], tls_files: TlsFiles, alpn: list[str]
) -> None:
    port, used = front
    assert ask(port, b"GET / HTTP/1.1\r\n", tls(tls_files.ca, alpn)) == b"rest:GET / HTTP/1.1\r\n"
    assert not used


def test_plain_connections_keep_working_on_the_same_port(front: tuple[int, list[int]]) -> None:
    port, _ = front
    assert ask(port, b"GET /api/2.0/clusters/list HTTP/1.1\r\n") == b"rest:GET /api/2.0/clu"
    assert ask(port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") == EMPTY_SETTINGS + b"spark:PRI * HTTP/2.0\r\n"


def test_a_client_that_does_not_trust_the_ca_is_refused(front: tuple[int, list[int]]) -> None:
    port, _ = front
    with pytest.raises(ssl.SSLCertVerificationError):
        ask(port, b"GET / HTTP/1.1\r\n", tls(Path(ssl.get_default_verify_paths().cafile or "/nonexistent"), []))


def test_the_spark_connect_address_forwards_and_counts_traffic() -> None:
    spark, used = Tagged(b"spark"), []
    gateway = Gateway()
    listener = socket.create_server(("127.0.0.1", 0))
    gateway.serve_spark_connect(listener, lambda: (spark.address, lambda: used.append(1)))
    try:
        assert ask(listener.getsockname()[1], b"PRI * HTTP/2.0") == EMPTY_SETTINGS + b"spark:PRI * HTTP/2.0"
        assert used
    finally:
        gateway.close()
        spark.shutdown()
        spark.server_close()


def test_a_connection_without_a_server_is_closed_not_hung() -> None:
    gateway = Gateway()
    listener = socket.create_server(("127.0.0.1", 0))

    def no_spark() -> tuple[tuple[str, int], Callable[[], None]]:
        raise ConnectionRefusedError("no Spark here")

    gateway.serve_spark_connect(listener, no_spark)
    try:
        assert ask(listener.getsockname()[1], b"PRI * HTTP/2.0") == EMPTY_SETTINGS  # then closed
    finally:
        gateway.close()


def test_routing_by_first_bytes_and_alpn() -> None:
    assert is_tls(b"\x16\x03\x01") and not is_tls(b"GET ") and not is_tls(b"")
    assert route(b"PRI * HTTP/2.0", None) == "spark" and route(b"PRI", None) == "spark"
    assert route(b"GET / HTTP/1.1", None) == "rest" and route(b"", None) == "rest"
    assert route(b"", "h2") == "spark" and route(b"", "http/1.1") == "rest"


def test_the_ca_and_keys_are_private_and_kept(tmp_path: Path) -> None:
    first = ensure_tls(tmp_path, "127.0.0.1")
    for path in (first.ca, first.key, first.certificate, tmp_path / "tls" / "ca-key.pem"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "tls").st_mode) == 0o700
    ca, leaf = first.ca.read_bytes(), first.certificate.read_bytes()
    again = ensure_tls(tmp_path, "127.0.0.1")
    assert again.ca.read_bytes() == ca and again.certificate.read_bytes() == leaf  # a restart keeps the trust
    ensure_tls(tmp_path, "192.0.2.7")  # serving another address: a new server certificate, the same CA
    assert first.ca.read_bytes() == ca and first.certificate.read_bytes() != leaf
    names = x509.load_pem_x509_certificate(first.certificate.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1", "192.0.2.7"}
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]


@pytest.mark.server
def test_a_tls_workspace_serves_the_sdk_over_https_and_http_on_one_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

    from aml_databricks.workspace import LocalWorkspace

    with LocalWorkspace(tmp_path / "data", spark=False, tls=True) as workspace:
        assert workspace.ca_file is not None and workspace.https_host.startswith("https://127.0.0.1:")
        assert workspace.https_host.rsplit(":", 1)[1] == workspace.host.rsplit(":", 1)[1]
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(workspace.ca_file))  # the one setting the SDK needs
        secure = WorkspaceClient(config=Config(host=workspace.https_host, token=workspace.token,
                                               retry_timeout_seconds=10))
        assert [c.cluster_id for c in secure.clusters.list()] == ["local"]
        secure.clusters.start("local")  # without Spark the one cluster always runs: nothing to do
        assert [c.cluster_id for c in workspace.client.clusters.list()] == ["local"]  # plain http:// still
        assert workspace.spark_connect == ""  # no Spark, no Spark Connect address


def test_the_spark_connect_port_is_the_default_one_else_a_free_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from aml_databricks.errors import UsageError
    from aml_databricks.workspace import server

    said: list[str] = []
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = taken.getsockname()[1]
        monkeypatch.setattr(server, "DEFAULT_SPARK_CONNECT_PORT", busy)
        with server._listen_spark_connect("127.0.0.1", None, said.append) as sock:
            assert sock.getsockname()[1] != busy and said == [
                f"port {busy} is taken: Spark Connect listens on {sock.getsockname()[1]} instead"]
        with pytest.raises(UsageError, match=f"cannot listen for Spark Connect on 127.0.0.1:{busy}"):
            server._listen_spark_connect("127.0.0.1", busy, said.append)
    with server._listen_spark_connect("127.0.0.1", None, said.append) as sock:
        assert sock.getsockname()[1] == busy  # free again: the fixed port, kept across restarts


@pytest.mark.parametrize(("flag", "value"), [("--port", "-1"), ("--spark-connect-port", "99999")])
def test_a_port_out_of_range_is_one_line_and_exit_2(flag: str, value: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from aml_databricks.cli import main

    assert main(["workspace", "serve", "--data-dir", str(tmp_path), flag, value]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"aml-databricks: error: {flag} {value} is not a port: 0 to 65535 (0 picks a free one)"]
