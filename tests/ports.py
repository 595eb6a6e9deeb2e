"""A free loopback TCP port for a server a test (or a helper such as the etcd cluster or
the image registry) starts: the kernel picks one, the socket is closed, and the server
binds it right after."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
