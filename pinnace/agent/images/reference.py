"""Image references, normalised the way Docker and containerd do.

`busybox:1.28` → `docker.io/library/busybox:1.28`; `nginx` → `docker.io/library/nginx:latest`;
`quay.io/x/y@sha256:…` keeps its digest and gets no tag. The domain is the first path
component only when it looks like a host (has a `.` or `:`, or is `localhost`); otherwise
the image lives on docker.io, and one-component names there are under `library/`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_DOMAIN = "docker.io"
DEFAULT_TAG = "latest"

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_DOMAIN = re.compile(r"^[A-Za-z0-9.-]+(?::[0-9]+)?$")


class InvalidReference(ValueError):
    """The string is not an image reference."""


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str  # e.g. library/busybox
    tag: str = ""
    digest: str = ""

    @property
    def repository(self) -> str:
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        s = self.repository
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s


def parse(ref: str) -> Reference:
    """Parse and normalise `ref`; raises InvalidReference."""
    rest, digest = ref, ""
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.match(digest):
            raise InvalidReference(f"invalid digest in reference {ref!r}")
    tag = ""
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:  # a colon after the last slash separates the tag, not a port
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.match(tag):
            raise InvalidReference(f"invalid tag in reference {ref!r}")
    parts = rest.split("/")
    first = parts[0]
    if len(parts) > 1 and ("." in first or ":" in first or first == "localhost"):
        domain, parts = first, parts[1:]
        if not _DOMAIN.match(domain):
            raise InvalidReference(f"invalid domain in reference {ref!r}")
    else:
        domain = DEFAULT_DOMAIN
    if domain in ("index.docker.io", "registry-1.docker.io"):
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and len(parts) == 1:
        parts = ["library", *parts]
    if not parts or not all(_COMPONENT.match(p) for p in parts):
        raise InvalidReference(f"invalid reference {ref!r} (names are lower case)")
    if not tag and not digest:
        tag = DEFAULT_TAG
    return Reference(domain, "/".join(parts), tag, digest)


def normalise(ref: str) -> str:
    """The full form of `ref`: `nginx` → `docker.io/library/nginx:latest`."""
    return str(parse(ref))


def is_digest(s: str) -> bool:
    return bool(_DIGEST.match(s))
