"""SPDY/3.1 framing and header compression, checked against bytes a real kubectl 1.32
sent and by round trips through our own encoder and decoder."""

from __future__ import annotations

import asyncio
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pinnace.apiserver import spdy

# The first three frames kubectl 1.32 sent for one forwarded connection (captured from
# `kubectl port-forward pod/x :41323` against pinnace): SYN_STREAM 1 (error stream),
# its immediate FIN, SYN_STREAM 3 (data stream) — compressed with one shared context.
KUBECTL_FRAMES = [bytes.fromhex(h) for h in (
    "80030001000000400000000100000000000078f9e3c6a7c202253a703a2b294a4dcc851625aca9a08086"
    "14cb45a024cc6a62686c64ccc0c0c0590489c74c50fa663400000000ffff",
    "0000000101000000",
    "800300010000001800000003000000000000c2aa1b54102512a119000000ffff",
)]


def test_dictionary_is_spdy3s() -> None:
    assert len(spdy.DICTIONARY) == 1423
    # the DICTID kubectl puts in its zlib header (bytes 2..5 after 0x78 0xf9)
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options")
    assert spdy.DICTIONARY.endswith(b",enq=0.")


def test_parses_what_kubectl_sends() -> None:
    reader = spdy.FrameReader()
    frames = reader.feed(b"".join(KUBECTL_FRAMES))
    assert len(frames) == 3
    error, fin, data = frames
    assert isinstance(error, spdy.ControlFrame) and error.type == spdy.SYN_STREAM
    assert error.stream_id == 1
    assert spdy.header(error.headers, "streamType") == "error"
    assert spdy.header(error.headers, "port") == "41323"
    assert spdy.header(error.headers, "requestID") == "0"
    assert isinstance(fin, spdy.DataFrame) and fin.stream_id == 1 and fin.fin and not fin.data
    assert isinstance(data, spdy.ControlFrame) and data.stream_id == 3
    assert data.headers == {"streamtype": ["data"], "port": ["41323"], "requestid": ["0"]}


def test_frames_split_anywhere() -> None:
    stream = b"".join(KUBECTL_FRAMES)
    reader = spdy.FrameReader()
    frames = []
    for i in range(len(stream)):  # one byte at a time, as a slow socket might deliver
        frames += reader.feed(stream[i:i + 1])
    assert [type(f).__name__ for f in frames] == ["ControlFrame", "DataFrame", "ControlFrame"]


header_values = st.text(alphabet=st.characters(blacklist_characters="\x00",
                                               blacklist_categories=("Cs",)), max_size=40)


@given(st.lists(st.dictionaries(st.from_regex(r"[a-z][a-z0-9-]{0,15}", fullmatch=True),
                                header_values, max_size=6), min_size=1, max_size=5))
def test_header_blocks_round_trip_on_one_context(blocks: list[dict[str, str]]) -> None:
    encoder, decoder = spdy.HeaderEncoder(), spdy.HeaderDecoder()
    for block in blocks:  # the zlib context carries over from frame to frame
        assert decoder.decode(encoder.encode(block)) == {k: [v] for k, v in block.items()}


def test_multiple_values_and_names_lowercased() -> None:
    encoder, decoder = spdy.HeaderEncoder(), spdy.HeaderDecoder()
    got = decoder.decode(encoder.encode({"StreamType": "data", "X-Many": ["a", "b"]}))
    assert got == {"streamtype": ["data"], "x-many": ["a", "b"]}


def test_control_frames_round_trip() -> None:
    encoder = spdy.HeaderEncoder()
    wire = b"".join([
        spdy.encode_syn_stream(encoder, 5, {"streamType": "error", "port": "80"}, fin=True),
        spdy.encode_syn_reply(encoder, 5),
        spdy.encode_rst_stream(5, spdy.RST_CANCEL),
        spdy.encode_ping(7),
        spdy.encode_goaway(5),
        spdy.encode_window_update(5, 1024),
        spdy.encode_settings({7: 65536}),
        spdy.encode_data(5, b"x" * 70000, fin=True),
    ])
    frames = spdy.FrameReader().feed(wire)
    syn, reply, rst, ping, goaway, window, settings, data = frames
    assert isinstance(syn, spdy.ControlFrame) and syn.fin and syn.stream_id == 5
    assert syn.headers == {"streamtype": ["error"], "port": ["80"]}
    assert isinstance(reply, spdy.ControlFrame) and reply.type == spdy.SYN_REPLY
    assert reply.headers == {} and reply.stream_id == 5
    assert isinstance(rst, spdy.ControlFrame) and spdy.rst_status(rst) == spdy.RST_CANCEL
    assert isinstance(ping, spdy.ControlFrame) and spdy.ping_id(ping) == 7
    assert isinstance(goaway, spdy.ControlFrame) and goaway.type == spdy.GOAWAY
    assert isinstance(window, spdy.ControlFrame) and window.stream_id == 5
    assert isinstance(settings, spdy.ControlFrame) and settings.type == spdy.SETTINGS
    assert isinstance(data, spdy.DataFrame) and data.fin and data.data == b"x" * 70000


def test_rejects_other_versions_and_bad_blocks() -> None:
    v2 = bytes.fromhex("8002000600000004") + b"\x00\x00\x00\x01"
    with pytest.raises(spdy.ProtocolError, match="version 2"):
        spdy.FrameReader().feed(v2)
    bad = spdy.encode_syn_reply(spdy.HeaderEncoder(), 1)[:12] + b"\x00" * 8
    bad = bad[:5] + len(bad[8:]).to_bytes(3, "big") + bad[8:]
    with pytest.raises(spdy.ProtocolError, match="bad header block"):
        spdy.FrameReader().feed(bad)
    with pytest.raises(ValueError):
        spdy.encode_data(1, b"\x00" * (spdy.MAX_DATA_LENGTH + 1))


async def test_session_answers_ping_and_refuses_unknown_streams() -> None:
    from pinnace.apiserver.portforward import PortForwardError, PortForwardSession

    sent: list[bytes] = []

    async def send(frame: bytes) -> None:
        sent.append(frame)

    async def dial(port: int) -> object:
        raise PortForwardError(f"nothing listens on {port}")

    session = PortForwardSession(send, dial)  # type: ignore[arg-type]
    client = spdy.HeaderEncoder()
    await session.feed(spdy.encode_ping(1))  # kubectl pings every 10s
    await session.feed(spdy.encode_syn_stream(client, 1, {"streamType": "exec-stdin"}))
    await session.feed(spdy.encode_syn_stream(client, 3, {"streamType": "error",
                                                          "port": "80", "requestID": "0"}))
    await session.feed(spdy.encode_syn_stream(client, 5, {"streamType": "data",
                                                          "port": "80", "requestID": "0"}))
    for _ in range(100):
        if len(sent) >= 6:
            break
        await asyncio.sleep(0.01)
    await session.finish()
    frames = spdy.FrameReader().feed(b"".join(sent))
    ping, rst, reply3, reply5, *rest = frames
    assert isinstance(ping, spdy.ControlFrame) and spdy.ping_id(ping) == 1
    assert isinstance(rst, spdy.ControlFrame) and rst.type == spdy.RST_STREAM
    assert rst.stream_id == 1 and spdy.rst_status(rst) == spdy.RST_PROTOCOL_ERROR
    assert [(f.type, f.stream_id) for f in (reply3, reply5)] == [(spdy.SYN_REPLY, 3),
                                                                  (spdy.SYN_REPLY, 5)]
    # the error text on the error stream, then FIN on both streams
    assert [(f.stream_id, f.data, f.fin) for f in rest] == [
        (3, b"nothing listens on 80", True), (5, b"", True)]
