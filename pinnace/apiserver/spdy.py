"""SPDY/3.1 framing, as kubectl speaks it for port-forward (and the exec/attach fallback).

Only what a Kubernetes *server* needs: the client (kubectl's spdystream) opens every
stream, so the server parses SYN_STREAM, answers SYN_REPLY, moves DATA both ways and
echoes PINGs. spdystream does no flow control, so WINDOW_UPDATE and SETTINGS are parsed
and ignored.

Design:
- `FrameReader` turns a byte stream (in any chunking: WebSocket messages or a raw
  socket) into frames; `encode_*` functions build frames as bytes.
- Header blocks are zlib streams with SPDY/3's fixed dictionary, one compression
  context per direction for the whole connection, SYNC_FLUSHed per frame. A connection
  therefore owns one `HeaderEncoder` and one `HeaderDecoder`, and frames carrying
  headers must be encoded and sent in the same order.
- Names are lowercased on the wire (SPDY/3 requires it); lookups are case-insensitive.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

VERSION = 3

# control frame types
SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9

FLAG_FIN = 0x01

# RST_STREAM status codes
RST_PROTOCOL_ERROR = 1
RST_INVALID_STREAM = 2
RST_REFUSED_STREAM = 3
RST_CANCEL = 5
RST_INTERNAL_ERROR = 6

MAX_DATA_LENGTH = 0xFFFFFF  # 24-bit length field


def _dictionary() -> bytes:
    """SPDY/3's header-compression dictionary (draft-mbelshe-httpbis-spdy-00, 2.6.10.1):
    length-prefixed names and values, then a run of common strings. Must be byte-exact:
    zlib checks its Adler-32 on both ends."""
    names = (
        "options head post put delete trace accept accept-charset accept-encoding "
        "accept-language accept-ranges age allow authorization cache-control connection "
        "content-base content-encoding content-language content-length content-location "
        "content-md5 content-range content-type date etag expect expires from host "
        "if-match if-modified-since if-none-match if-range if-unmodified-since "
        "last-modified location max-forwards pragma proxy-authenticate proxy-authorization "
        "range referer retry-after server te trailer transfer-encoding upgrade user-agent "
        "vary via warning www-authenticate method get status"
    )
    words = [*names.split(), "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie",
             "keep-alive", "origin"]
    tail = (
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
        "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
        "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
        "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
        "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
        "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
        "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8"
        "charset=iso-8859-1,utf-,*,enq=0."
    )
    out = bytearray()
    for w in words:
        out += struct.pack(">I", len(w)) + w.encode()
    return bytes(out) + tail.encode()


DICTIONARY = _dictionary()


class ProtocolError(Exception):
    """The peer sent something that is not SPDY/3."""


Headers = dict[str, list[str]]


class HeaderEncoder:
    """Compresses name/value blocks for one direction of one connection."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8,
                                   zlib.Z_DEFAULT_STRATEGY, DICTIONARY)

    def encode(self, headers: dict[str, str | list[str]]) -> bytes:
        raw = bytearray(struct.pack(">I", len(headers)))
        for name, value in headers.items():
            values = [value] if isinstance(value, str) else value
            n, v = name.lower().encode(), "\x00".join(values).encode()
            raw += struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v
        return self._z.compress(bytes(raw)) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecoder:
    """Decompresses name/value blocks for one direction of one connection."""

    def __init__(self) -> None:
        self._z = zlib.decompressobj(15, DICTIONARY)

    def decode(self, block: bytes) -> Headers:
        try:
            raw = self._z.decompress(block)
        except zlib.error as e:
            raise ProtocolError(f"bad header block: {e}") from None
        try:
            (count,) = struct.unpack_from(">I", raw, 0)
            pos, headers = 4, {}
            for _ in range(count):
                (n,) = struct.unpack_from(">I", raw, pos)
                name = raw[pos + 4:pos + 4 + n].decode()
                pos += 4 + n
                (n,) = struct.unpack_from(">I", raw, pos)
                value = raw[pos + 4:pos + 4 + n].decode()
                pos += 4 + n
                headers.setdefault(name.lower(), []).extend(value.split("\x00"))
        except (struct.error, UnicodeDecodeError) as e:
            raise ProtocolError(f"bad header block: {e}") from None
        return headers


def header(headers: Headers, name: str) -> str | None:
    """The first value of `name` (case-insensitive), or None."""
    values = headers.get(name.lower())
    return values[0] if values else None


@dataclass
class DataFrame:
    stream_id: int
    flags: int
    data: bytes

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@dataclass
class ControlFrame:
    type: int
    flags: int
    payload: bytes
    # filled for frames that carry a stream id and/or a header block
    stream_id: int = 0
    headers: Headers = field(default_factory=dict)

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


Frame = DataFrame | ControlFrame


class FrameReader:
    """Feed bytes in; take whole frames out. Header blocks are decoded on the way, in
    arrival order, as the shared zlib context requires."""

    def __init__(self, decoder: HeaderDecoder | None = None) -> None:
        self._buf = bytearray()
        self.decoder = decoder or HeaderDecoder()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= 8:
            (length,) = struct.unpack(">I", b"\x00" + self._buf[5:8])
            if len(self._buf) < 8 + length:
                break
            head, payload = bytes(self._buf[:8]), bytes(self._buf[8:8 + length])
            del self._buf[:8 + length]
            frames.append(self._parse(head, payload))
        return frames

    def _parse(self, head: bytes, payload: bytes) -> Frame:
        first, flags = struct.unpack(">I", head[:4])[0], head[4]
        if not first & 0x80000000:
            return DataFrame(first & 0x7FFFFFFF, flags, payload)
        version, ftype = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise ProtocolError(f"unsupported SPDY version {version}")
        frame = ControlFrame(ftype, flags, payload)
        if ftype in (SYN_STREAM, SYN_REPLY, RST_STREAM, HEADERS, WINDOW_UPDATE):
            if len(payload) < 4:
                raise ProtocolError(f"short control frame of type {ftype}")
            frame.stream_id = struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF
        if ftype == SYN_STREAM:  # stream id, associated id, priority + slot, headers
            frame.headers = self.decoder.decode(payload[10:])
        elif ftype in (SYN_REPLY, HEADERS):
            frame.headers = self.decoder.decode(payload[4:])
        return frame


def _control(ftype: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, ftype, (flags << 24) | len(payload)) + payload


def encode_data(stream_id: int, data: bytes, *, fin: bool = False) -> bytes:
    if len(data) > MAX_DATA_LENGTH:
        raise ValueError("data frame too long; split it")
    return struct.pack(">II", stream_id & 0x7FFFFFFF,
                       ((FLAG_FIN if fin else 0) << 24) | len(data)) + data


def encode_syn_stream(encoder: HeaderEncoder, stream_id: int, headers: dict[str, str], *,
                      fin: bool = False, priority: int = 0) -> bytes:
    payload = struct.pack(">IIBB", stream_id, 0, (priority & 0x7) << 5, 0)
    return _control(SYN_STREAM, FLAG_FIN if fin else 0, payload + encoder.encode(headers))


def encode_syn_reply(encoder: HeaderEncoder, stream_id: int,
                     headers: dict[str, str] | None = None, *, fin: bool = False) -> bytes:
    payload = struct.pack(">I", stream_id) + encoder.encode(headers or {})
    return _control(SYN_REPLY, FLAG_FIN if fin else 0, payload)


def encode_rst_stream(stream_id: int, status: int) -> bytes:
    return _control(RST_STREAM, 0, struct.pack(">II", stream_id, status))


def encode_ping(ping_id: int) -> bytes:
    return _control(PING, 0, struct.pack(">I", ping_id))


def encode_goaway(last_good_stream_id: int, status: int = 0) -> bytes:
    return _control(GOAWAY, 0, struct.pack(">II", last_good_stream_id, status))


def encode_window_update(stream_id: int, delta: int) -> bytes:
    return _control(WINDOW_UPDATE, 0, struct.pack(">II", stream_id, delta & 0x7FFFFFFF))


def encode_settings(settings: dict[int, int]) -> bytes:
    body = struct.pack(">I", len(settings))
    for sid, value in settings.items():
        body += struct.pack(">II", sid & 0xFFFFFF, value)
    return _control(SETTINGS, 0, body)


def ping_id(frame: ControlFrame) -> int:
    return struct.unpack(">I", frame.payload[:4])[0]


def rst_status(frame: ControlFrame) -> int:
    return struct.unpack(">I", frame.payload[4:8])[0]
