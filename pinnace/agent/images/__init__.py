"""Images on a node: import OCI and docker archives, keep them content-addressed, and unpack
their layers for an overlayfs root filesystem.

    store      ImageStore: blobs, references, unpacked layers (the entry point)
    archive    reading OCI-layout and docker-save archives into the store
    unpack     one layer → one directory, whiteouts in overlayfs form, path-safe
    reference  image name normalisation (`busybox:1.28` → `docker.io/library/busybox:1.28`)
    command    `pinnace image import|ls|rm`
"""

from pinnace.agent.images.errors import (
    DigestMismatch,
    ImageError,
    ImageNotFound,
    InvalidArchive,
    UnsafeLayer,
)
from pinnace.agent.images.reference import InvalidReference, normalise
from pinnace.agent.images.store import ImageInfo, ImageStore, Layer

__all__ = [
    "DigestMismatch",
    "ImageError",
    "ImageInfo",
    "ImageNotFound",
    "ImageStore",
    "InvalidArchive",
    "InvalidReference",
    "Layer",
    "UnsafeLayer",
    "normalise",
]
