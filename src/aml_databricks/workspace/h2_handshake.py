"""Answering an HTTP/2 client's handshake while the Spark server behind the gateway is still starting.

A gRPC client gives a connection about 20 s to complete HTTP/2's handshake (the server's SETTINGS
frame). A stopped cluster takes longer to start, and when the connection fails, pyspark's client
re-attaches to an operation the server never saw: SESSION_NOT_FOUND, fatal. So the gateway sends
the server's preface itself, an empty SETTINGS frame (all defaults, which is what both sides assume
until the real server's own SETTINGS arrives; a second SETTINGS frame is ordinary HTTP/2), and the
client's bytes wait in the gateway until the server is up. The client acknowledges that first
SETTINGS frame before any other (acknowledgements come in order), and the server must not see an
acknowledgement of a frame it never sent: `SettingsAckFilter` drops exactly that one.
"""

from __future__ import annotations

CLIENT_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER = 9
SETTINGS = 0x4
ACK = 0x1
# length 0, type SETTINGS, no flags, stream 0
EMPTY_SETTINGS = bytes([0, 0, 0, SETTINGS, 0, 0, 0, 0, 0])


class SettingsAckFilter:
    """The client's bytes with its first SETTINGS acknowledgement taken out; then everything as is."""

    def __init__(self) -> None:
        self._pending = b""
        self._preface_left = len(CLIENT_PREFACE)
        self.done = False

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return data
        buffer, out = self._pending + data, bytearray()
        if self._preface_left:
            taken = buffer[: self._preface_left]
            out += taken
            self._preface_left -= len(taken)
            buffer = buffer[len(taken):]
        while not self._preface_left and len(buffer) >= FRAME_HEADER:
            length = int.from_bytes(buffer[:3], "big")
            kind, flags = buffer[3], buffer[4]
            if kind == SETTINGS and flags & ACK:
                buffer = buffer[FRAME_HEADER + length:]  # an ACK has no payload; skip any anyway
                self.done = True
                out += buffer
                buffer = b""
                break
            if len(buffer) < FRAME_HEADER + length:
                break  # the rest of this frame comes with the next read
            out += buffer[: FRAME_HEADER + length]
            buffer = buffer[FRAME_HEADER + length:]
        self._pending = buffer
        return bytes(out)

    def flush(self) -> bytes:
        """What is held back when the client stops sending (a partial frame, passed on as it is)."""
        held, self._pending = self._pending, b""
        return held
