"""Errors of the image store.

    ImageError                 anything that makes an import, a lookup or an unpack fail
    ├── ImageNotFound          no image answers to this reference
    ├── InvalidArchive         not an OCI or docker archive, or one that contradicts itself
    ├── DigestMismatch         content does not hash to the digest that names it
    └── UnsafeLayer            a layer member would land outside the layer's root
"""

from __future__ import annotations


class ImageError(Exception):
    """An image operation failed; the message says why."""


class ImageNotFound(ImageError):
    pass


class InvalidArchive(ImageError):
    pass


class DigestMismatch(ImageError):
    pass


class UnsafeLayer(ImageError):
    pass
