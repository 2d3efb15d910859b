"""The gateway's HTTP/2 handshake answer: exactly the client's first SETTINGS acknowledgement is dropped."""

from __future__ import annotations

import pytest

from aml_databricks.workspace.h2_handshake import CLIENT_PREFACE, SettingsAckFilter


def frame(kind: int, flags: int, payload: bytes = b"", stream: int = 0) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


CLIENT_SETTINGS = frame(0x4, 0, bytes(6))
ACK = frame(0x4, 0x1)
WINDOW = frame(0x8, 0, (1 << 20).to_bytes(4, "big"))
HEADERS = frame(0x1, 0x4, b"grpc headers", stream=1)
STREAM = CLIENT_PREFACE + CLIENT_SETTINGS + WINDOW + ACK + HEADERS + ACK  # a second ACK is the real server's


def test_the_first_ack_is_dropped_and_everything_else_passes_in_order() -> None:
    edit = SettingsAckFilter()
    assert edit.feed(STREAM) == CLIENT_PREFACE + CLIENT_SETTINGS + WINDOW + HEADERS + ACK
    assert edit.done and edit.feed(ACK) == ACK


@pytest.mark.parametrize("size", [1, 2, 5, 9, 10, 23, 24, 25])
def test_bytes_split_anywhere_give_the_same_stream(size: int) -> None:
    edit = SettingsAckFilter()
    out = b"".join(edit.feed(STREAM[i:i + size]) for i in range(0, len(STREAM), size)) + edit.flush()
    assert out == CLIENT_PREFACE + CLIENT_SETTINGS + WINDOW + HEADERS + ACK


def test_a_client_that_stops_early_loses_nothing_it_sent() -> None:
    edit = SettingsAckFilter()
    sent = CLIENT_PREFACE + CLIENT_SETTINGS[:5]
    assert edit.feed(sent) + edit.flush() == sent
