"""The workspace's byte forwarders: a stable Spark Connect address, and the TLS front door.

- **Spark Connect address** (`serve_spark_connect`): `sc://127.0.0.1:15002` by default. The
  cluster's JVM listens on a port of its own that changes with every start; this listener forwards
  each connection to the default cluster's current server, starting it first when it is stopped (as
  databricks-connect starts a terminated cluster), and counts the client's traffic as use, so the
  pool does not stop a server a client outside the workspace is working with.
- **Front door** (`serve_front`, with `workspace serve --tls`): the workspace's own port carries
  REST and gRPC, as a Databricks workspace's does. databricks-connect in host mode always opens a
  TLS gRPC channel to the workspace's host and port; the REST calls of the same client go there
  too. A connection whose first byte opens a TLS handshake is decrypted here, and routed by the
  protocol the client negotiated (ALPN): `h2` (gRPC) to Spark Connect, anything else to the REST
  server on its private port. A plain connection goes to the REST server as before (drivers,
  the CLI, browsers on http://), or to Spark Connect if it opens with HTTP/2's preface.

Spark Connect itself has no authentication, here as with `sc://` on loopback: the forwarders are
bound to the address the workspace listens on and route by protocol only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from aml_databricks.workspace.h2_handshake import EMPTY_SETTINGS, SettingsAckFilter

log = logging.getLogger(__name__)

TLS_HANDSHAKE = 0x16  # the first byte of a TLS record carrying a ClientHello
HTTP2_PREFACE = b"PRI * HTTP/2.0"
# In the server's order of preference, which is the order OpenSSL picks by: a client offering both
# (curl, browsers, httpx) gets HTTP/1.1 and the REST server; gRPC offers only h2 and gets Spark Connect.
ALPN_PROTOCOLS = ["http/1.1", "h2"]
PEEK_TIMEOUT_S = 10.0
CHUNK = 256 * 1024

# Where a connection goes: blocking (it may start a cluster); returns the (host, port) to connect to
# and a callback counting the client's traffic as use, or raises to refuse the connection.
Resolve = Callable[[], tuple[tuple[str, int], Callable[[], None]]]


def route(first_bytes: bytes, alpn: str | None) -> str:
    """"spark" or "rest" for a connection: by the protocol agreed in the TLS handshake (`alpn`, "h2" is
    gRPC) if there was one, else by its first bytes (HTTP/2's preface is gRPC without TLS)."""
    if alpn is not None:
        return "spark" if alpn == "h2" else "rest"
    return "spark" if first_bytes and HTTP2_PREFACE.startswith(first_bytes[: len(HTTP2_PREFACE)]) else "rest"


def is_tls(first_bytes: bytes) -> bool:
    return bool(first_bytes) and first_bytes[0] == TLS_HANDSHAKE


class Gateway:
    """An asyncio loop on a thread of its own, serving the listeners given to it until `close`."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="workspace-gateway", daemon=True)
        self._thread.start()
        self._accepts: set[asyncio.Task[None]] = set()
        self._sockets: list[socket.socket] = []
        self._connections: set[asyncio.Task[None]] = set()
        self._starts = ThreadPoolExecutor(max_workers=32, thread_name_prefix="gateway-resolve")

    def serve_spark_connect(self, listener: socket.socket, spark: Resolve) -> None:
        """Forward every connection on `listener` to the server `spark` resolves."""
        self._serve(listener, lambda sock: self._forward(sock, spark))

    def serve_front(self, listener: socket.socket, context: ssl.SSLContext, spark: Resolve,
                    rest: tuple[str, int]) -> None:
        """The workspace's port with TLS: REST and gRPC on one port, TLS or not (module docstring)."""
        self._serve(listener, lambda sock: self._front(sock, context, spark, rest))

    def close(self) -> None:
        """Stop accepting, end the connections in flight, stop the loop. Idempotent."""
        if self._loop.is_closed():
            return
        done = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        with contextlib.suppress(Exception):
            done.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()
        self._starts.shutdown(wait=False, cancel_futures=True)

    async def _shutdown(self) -> None:
        tasks = [*self._accepts, *self._connections]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sock in self._sockets:  # after the accepts let go of them
            with contextlib.suppress(OSError):
                sock.close()

    # -- internals --------------------------------------------------------------------------------

    def _serve(self, listener: socket.socket, handle: Callable[[socket.socket], Awaitable[None]]) -> None:
        listener.setblocking(False)
        self._sockets.append(listener)

        async def start() -> None:
            self._accepts.add(asyncio.get_running_loop().create_task(self._accept(listener, handle)))

        asyncio.run_coroutine_threadsafe(start(), self._loop).result(5)

    async def _accept(self, listener: socket.socket, handle: Callable[[socket.socket], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(listener)
            except OSError:
                return  # closed
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = loop.create_task(self._guarded(handle(sock), sock))
            self._connections.add(task)  # held until done: the loop keeps only weak references
            task.add_done_callback(self._connections.discard)

    @staticmethod
    async def _guarded(work: Awaitable[None], sock: socket.socket) -> None:
        """Run one connection's handler. Handlers give asyncio a duplicate of the socket: asyncio closes
        its copy when it is done with it, this closes the accepted one, in whichever order, without a
        descriptor number being reused while the loop still watches it."""
        try:
            await work
        except Exception as error:  # one client's broken connection is that client's alone
            log.info("gateway connection ended: %s: %s", type(error).__name__, error)
        finally:
            with contextlib.suppress(OSError):
                sock.close()

    async def _forward(self, sock: socket.socket, spark: Resolve) -> None:
        reader, writer = await asyncio.open_connection(sock=sock.dup())
        await self._pipe_to(reader, writer, spark, http2=True)

    async def _front(self, sock: socket.socket, context: ssl.SSLContext, spark: Resolve,
                     rest: tuple[str, int]) -> None:
        first = await _peek(sock, len(HTTP2_PREFACE))
        loop = asyncio.get_running_loop()
        if is_tls(first):
            reader = asyncio.StreamReader(limit=CHUNK)
            protocol = asyncio.StreamReaderProtocol(reader)
            transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock.dup(), ssl=context,
                                                              ssl_handshake_timeout=PEEK_TIMEOUT_S)
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            tls: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
            kind = route(b"", (tls.selected_alpn_protocol() if tls else None) or "http/1.1")
        else:
            reader, writer = await asyncio.open_connection(sock=sock.dup())
            kind = route(first, None)
        if kind == "spark":
            await self._pipe_to(reader, writer, spark, http2=True)
        else:
            await self._pipe_to(reader, writer, lambda: (rest, _nothing))

    async def _pipe_to(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, resolve: Resolve,
                       *, http2: bool = False) -> None:
        """Connect to where `resolve` says and pass bytes both ways until one side closes. `http2`: the
        client speaks HTTP/2 (gRPC), and its handshake is answered here at once (h2_handshake.py)."""
        loop = asyncio.get_running_loop()
        client_bytes = SettingsAckFilter() if http2 else None
        if http2:
            writer.write(EMPTY_SETTINGS)
            await writer.drain()
        try:
            # Resolving a Spark server can wait minutes for a cluster to start: on threads of the gateway's
            # own, so that the REST server's (instant) answers never queue behind it.
            (host, port), used = await loop.run_in_executor(self._starts, resolve) if http2 else resolve()
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except Exception as error:
            log.warning("gateway: no upstream for a client: %s", error)
            await _close(writer)
            return
        pumps = [asyncio.ensure_future(_pump(reader, up_writer, used, client_bytes)),
                 asyncio.ensure_future(_pump(up_reader, writer, _nothing))]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(_close(up_writer), _close(writer))


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close, and wait (a little) until the transport has let go of its socket."""
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 5)


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, used: Callable[[], None],
                edit: SettingsAckFilter | None = None) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await source.read(CHUNK):
            used()
            if edit is not None:
                data = edit.feed(data)
                if edit.done:
                    edit = None
            sink.write(data)
            await sink.drain()
        if edit is not None:
            sink.write(edit.flush())
            await sink.drain()


async def _peek(sock: socket.socket, size: int) -> bytes:
    """Up to `size` bytes the client sent first, left in the socket for whoever reads it next; b"" if it
    closed or sent nothing in time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PEEK_TIMEOUT_S
    while (remaining := deadline - loop.time()) > 0:
        try:
            seen = sock.recv(size, socket.MSG_PEEK)
        except BlockingIOError:
            with contextlib.suppress(TimeoutError):
                await _readable(sock, remaining)
            continue
        if not seen or len(seen) >= size or is_tls(seen) or not HTTP2_PREFACE.startswith(seen):
            return seen  # enough to decide
        await asyncio.sleep(0.005)  # the start of HTTP/2's preface: wait for the rest of it
    return b""


async def _readable(sock: socket.socket, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await asyncio.wait_for(ready, timeout)
    finally:
        loop.remove_reader(sock.fileno())


def _nothing() -> None:
    return None
