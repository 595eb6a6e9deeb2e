"""Images on a node: import OCI and docker archives, keep them content-addressed, and unpack
their layers for an overlayfs root filesystem.

    store      ImageStore: blobs, references, unpacked layers (the entry point)
    pull       pull_image: the OCI distribution API, auth, platform choice, layer cache
    registries registries.yaml (k3s' format): mirrors, auth and TLS per registry
    archive    reading OCI-layout and docker-save archives into the store
    unpack     one layer → one directory, whiteouts in overlayfs form, path-safe
    reference  image name normalisation (`busybox:1.28` → `docker.io/library/busybox:1.28`)
    command    `pinnace image import|pull|ls|rm`
"""

from pinnace.agent.images.errors import (
    DigestMismatch,
    ImageError,
    ImageNotFound,
    InvalidArchive,
    UnsafeLayer,
)
from pinnace.agent.images.pull import (
    Credential,
    ImageNotFoundInRegistry,
    PullAccessDenied,
    PullError,
    credentials_from_pull_secrets,
    pull_image,
)
from pinnace.agent.images.reference import InvalidReference, normalise
from pinnace.agent.images.registries import (
    Endpoint,
    Registries,
    RegistriesConfigError,
    load_registries,
)
from pinnace.agent.images.store import ImageInfo, ImageStore, Layer

__all__ = [
    "Credential",
    "DigestMismatch",
    "Endpoint",
    "ImageError",
    "ImageInfo",
    "ImageNotFound",
    "ImageNotFoundInRegistry",
    "ImageStore",
    "InvalidArchive",
    "InvalidReference",
    "Layer",
    "PullAccessDenied",
    "PullError",
    "Registries",
    "RegistriesConfigError",
    "UnsafeLayer",
    "credentials_from_pull_secrets",
    "load_registries",
    "normalise",
    "pull_image",
]
