"""Read image archives: OCI layouts in a tar, and `docker save` archives.

An archive holding `index.json` is read as an OCI layout: every manifest it lists (through
nested indexes, choosing this machine's platform) is copied blob by blob into the store, each
verified against the digest and size of the descriptor naming it. Names come from the
`io.containerd.image.name` annotation, else from `org.opencontainers.image.ref.name` when
that is a full reference (it may be a bare tag), else from a Docker `manifest.json` beside it
(Docker 25+ writes both).

An archive with only `manifest.json` is a docker-save archive: for each entry the config and
layer files are stored under their sha256 and an OCI manifest is written for them; layers
stored uncompressed must hash to the config's diff ids (compressed ones are checked when
unpacked). Members are only read by name, never extracted, so their paths need no care.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from pinnace.agent.images import reference
from pinnace.agent.images.errors import DigestMismatch, InvalidArchive

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"

_HEX_NAME = re.compile(r"(?:^|/)([a-f0-9]{64})(?:\.json)?$")
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
         "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


class BlobSink(Protocol):
    """Where blobs go: the store. `put` verifies `expected` (when given) and returns
    (digest, size)."""

    def put(self, src: BinaryIO, *, expected: str | None) -> tuple[str, int]: ...


@dataclass(frozen=True)
class ArchiveImage:
    names: list[str]  # normalised references; empty for an untagged image
    manifest_digest: str


def host_architecture() -> str:
    machine = platform.machine()
    return _ARCH.get(machine, machine)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Archive:
    def __init__(self, tar: tarfile.TarFile, sink: BlobSink) -> None:
        self.tar = tar
        self.sink = sink
        # `tar -C dir .` writes "./index.json": look members up without that prefix
        self.members = {m.name.removeprefix("./"): m for m in tar.getmembers()}

    def open(self, name: str) -> BinaryIO:
        member = self.members.get(name.removeprefix("./"))
        f = self.tar.extractfile(member) if member is not None else None
        if f is None:
            raise InvalidArchive(f"archive has no file {name!r}")
        return f  # type: ignore[return-value]

    def has(self, name: str) -> bool:
        return name in self.members

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.open(name).read())
        except ValueError as e:
            raise InvalidArchive(f"{name} is not JSON: {e}") from e

    # ------------------------------------------------------------ OCI layout

    def blob(self, desc: dict) -> tuple[str, int]:
        """Store the blob a descriptor names, verifying digest and size."""
        digest = desc.get("digest", "")
        if not reference.is_digest(digest):
            raise InvalidArchive(f"unsupported or invalid digest {digest!r}")
        stored, size = self.sink.put(self.open(f"blobs/sha256/{digest[7:]}"), expected=digest)
        if "size" in desc and desc["size"] != size:
            raise DigestMismatch(f"blob {digest} is {size} bytes, its descriptor says "
                                 f"{desc['size']}")
        return stored, size

    def blob_json(self, desc: dict) -> tuple[Any, bytes]:
        digest = desc.get("digest", "")
        if not reference.is_digest(digest):
            raise InvalidArchive(f"unsupported or invalid digest {digest!r}")
        data = self.open(f"blobs/sha256/{digest[7:]}").read()
        if _digest(data) != digest:
            raise DigestMismatch(f"blob {digest} does not match its content ({_digest(data)})")
        if "size" in desc and desc["size"] != len(data):
            raise DigestMismatch(f"blob {digest} is {len(data)} bytes, its descriptor says "
                                 f"{desc['size']}")
        self.sink.put(io.BytesIO(data), expected=digest)
        try:
            return json.loads(data), data
        except ValueError as e:
            raise InvalidArchive(f"blob {digest} is not JSON: {e}") from e

    def oci_image(self, desc: dict) -> str:
        """Store the manifest `desc` names (or this platform's, for an index) and its
        blobs; returns the manifest digest."""
        doc, _ = self.blob_json(desc)
        media_type = desc.get("mediaType") or doc.get("mediaType", "")
        if media_type in INDEX_TYPES or "manifests" in doc:
            return self.oci_image(_choose_platform(doc))
        if media_type and media_type not in MANIFEST_TYPES:
            raise InvalidArchive(f"unsupported manifest type {media_type!r}")
        config, _ = self.blob_json(doc["config"])
        diff_ids = config.get("rootfs", {}).get("diff_ids", [])
        if len(diff_ids) != len(doc.get("layers", [])):
            raise InvalidArchive(f"manifest {desc['digest']} has {len(doc.get('layers', []))}"
                                 f" layers, its config {len(diff_ids)} diff ids")
        for layer in doc["layers"]:
            self.blob(layer)
        return desc["digest"]

    def read_oci(self) -> list[ArchiveImage]:
        index = self.json("index.json")
        repo_tags = self.docker_repo_tags()
        images = []
        for desc in index.get("manifests", []):
            digest = self.oci_image(desc)
            names = _names_from_annotations(desc.get("annotations") or {})
            if not names:
                config_digest = self.config_digest(digest)
                names = [reference.normalise(t) for t in repo_tags.get(config_digest, [])]
            images.append(ArchiveImage(names, digest))
        return images

    def config_digest(self, manifest_digest: str) -> str:
        doc = json.loads(self.open(f"blobs/sha256/{manifest_digest[7:]}").read())
        return doc["config"]["digest"]

    def docker_repo_tags(self) -> dict[str, list[str]]:
        """Config digest → RepoTags from a Docker manifest.json, when there is one."""
        if not self.has("manifest.json"):
            return {}
        result: dict[str, list[str]] = {}
        for entry in self.json("manifest.json"):
            m = _HEX_NAME.search(entry.get("Config", ""))
            if m:
                result.setdefault(f"sha256:{m.group(1)}", []).extend(entry.get("RepoTags") or [])
        return result

    # ------------------------------------------------------------ docker save

    def read_docker(self) -> list[ArchiveImage]:
        entries = self.json("manifest.json")
        if not isinstance(entries, list):
            raise InvalidArchive("manifest.json is not a list")
        images = []
        for entry in entries:
            config_name = entry["Config"]
            m = _HEX_NAME.search(config_name)
            expected = f"sha256:{m.group(1)}" if m else None
            config_data = self.open(config_name).read()
            config_digest, config_size = self.sink.put(io.BytesIO(config_data),
                                                       expected=expected)
            diff_ids = json.loads(config_data).get("rootfs", {}).get("diff_ids", [])
            if len(diff_ids) != len(entry.get("Layers", [])):
                raise InvalidArchive(f"{config_name}: {len(entry.get('Layers', []))} layers "
                                     f"but {len(diff_ids)} diff ids")
            layers = []
            for name, diff_id in zip(entry["Layers"], diff_ids, strict=True):
                src = self.open(name)
                gzipped = src.read(2) == b"\x1f\x8b"
                src = self.open(name)
                # an uncompressed layer's digest is its diff id: verify it now
                digest, size = self.sink.put(src, expected=None if gzipped else diff_id)
                layers.append({"mediaType": OCI_LAYER_GZIP if gzipped else OCI_LAYER,
                               "digest": digest, "size": size})
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest,
                           "size": config_size},
                "layers": layers,
            }, sort_keys=True, separators=(",", ":")).encode()
            manifest_digest, _ = self.sink.put(io.BytesIO(manifest), expected=None)
            names = [reference.normalise(t) for t in entry.get("RepoTags") or []]
            images.append(ArchiveImage(names, manifest_digest))
        return images


def _names_from_annotations(annotations: dict[str, str]) -> list[str]:
    for key in (NAME_ANNOTATION, REF_ANNOTATION):
        name = annotations.get(key, "")
        # a bare tag ("1.28") is a valid ref.name but names no repository
        if name and (":" in name or "/" in name or "@" in name):
            return [reference.normalise(name)]
    return []


def _choose_platform(index: dict) -> dict:
    arch = host_architecture()
    for desc in index.get("manifests", []):
        plat = desc.get("platform") or {}
        if plat.get("os", "linux") == "linux" and plat.get("architecture", arch) == arch:
            return desc
    raise InvalidArchive(f"the image index has no manifest for linux/{arch}")


def read_archive(path: Path, sink: BlobSink) -> list[ArchiveImage]:
    """Copy every image in the archive at `path` into `sink`; returns what was found."""
    try:
        with tarfile.open(path, "r:*") as tar:
            archive = _Archive(tar, sink)
            if archive.has("index.json"):
                return archive.read_oci()
            if archive.has("manifest.json"):
                return archive.read_docker()
            raise InvalidArchive(f"{path}: neither an OCI layout (index.json) nor a docker "
                                 "archive (manifest.json)")
    except (tarfile.TarError, EOFError) as e:
        raise InvalidArchive(f"{path}: not a tar archive: {e}") from e
    except (KeyError, TypeError, AttributeError) as e:
        raise InvalidArchive(f"{path}: malformed image metadata ({e!r})") from e
    except reference.InvalidReference as e:
        raise InvalidArchive(f"{path}: {e}") from e
