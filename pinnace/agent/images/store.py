"""The node's image store: content-addressed blobs, named references, unpacked layers.

Layout under `DIR/images/`:

    blobs/sha256/<hex>     manifests, configs and layer blobs, each verified on the way in
    refs.json              {"docker.io/library/busybox:1.28": "sha256:<manifest>", …};
                           an untagged image is kept under its own manifest digest; a pull
                           by digest is kept as "repository@digest" (that digest may be an
                           index's, pointing at the platform's manifest)
    layers/<diffid hex>/   a layer unpacked for overlayfs (whiteouts as 0:0 devices)
    tmp/                   blobs and layers being written; renamed into place when whole
    lock                   flock: exclusive for import and remove, shared for unpacking

Every file lands by rename, so a crash leaves either nothing or the whole thing; readers
never lock (refs.json is replaced, never edited in place). The lock only keeps removal's
garbage collection from deleting what a concurrent import or unpack is about to use. Two
processes unpacking the same layer both do the work; the first rename wins and the other
copy is discarded. A pull downloads under the shared lock (`pull_lock`) through
`blob_writer`, then names the image with `record`, which takes the exclusive lock and checks
that every blob is still there.

The store is synchronous (file I/O and CPU); async callers use `asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pinnace.agent.images import reference
from pinnace.agent.images.archive import read_archive
from pinnace.agent.images.errors import DigestMismatch, ImageError, ImageNotFound
from pinnace.agent.images.unpack import unpack_layer


@dataclass(frozen=True)
class Layer:
    digest: str  # of the blob as stored (compressed or not)
    diff_id: str  # of the uncompressed tar
    size: int
    media_type: str


@dataclass(frozen=True)
class ImageInfo:
    """An image as the runtime needs it: identity, layers and the image config's defaults."""

    digest: str  # the manifest's: what `name@digest` pins
    id: str  # the config's digest: the image id crictl and docker show
    names: list[str]
    layers: list[Layer]
    env: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    working_dir: str = ""
    user: str = ""
    exposed_ports: list[str] = field(default_factory=list)
    stop_signal: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    architecture: str = ""
    os: str = ""

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def repo_digests(self) -> list[str]:
        """`repository@digest` for each name, as kubelet reports imageID."""
        repos = dict.fromkeys(reference.parse(n).repository for n in self.names)
        return [f"{r}@{self.digest}" for r in repos]


class ImageStore:
    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.root = Path(data_dir) / "images"
        self.blobs = self.root / "blobs" / "sha256"
        self.layers = self.root / "layers"
        self.tmp = self.root / "tmp"
        self.refs_file = self.root / "refs.json"
        for d in (self.blobs, self.layers, self.tmp):
            d.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------ public

    def import_archive(self, path: str | os.PathLike[str]) -> list[ImageInfo]:
        """Import every image of an OCI or docker archive; returns them as stored."""
        with self._lock(fcntl.LOCK_EX):
            self._clear_tmp()
            found = read_archive(Path(path), self)
            refs = self._read_refs()
            for image in found:
                for name in image.names:
                    refs[name] = image.manifest_digest
                if not image.names and image.manifest_digest not in refs.values():
                    refs[image.manifest_digest] = image.manifest_digest
            refs = _drop_shadowed(refs)
            self._write_refs(refs)
        return [self._info(image.manifest_digest, refs) for image in found]

    def record(self, manifest_digest: str, names: list[str]) -> ImageInfo:
        """Point `names` (full references, `repo:tag` or `repo@digest`) at a manifest whose
        config and layers are all in the store: the last step of a pull."""
        with self._lock(fcntl.LOCK_EX):
            manifest = self._blob_json(manifest_digest)
            for desc in [manifest["config"], *manifest.get("layers", [])]:
                if not self.has_blob(desc["digest"]):
                    raise ImageNotFound(f"blob {desc['digest']} is missing from the store")
            refs = self._read_refs()
            for name in names:
                refs[name] = manifest_digest
            if not names:
                refs.setdefault(manifest_digest, manifest_digest)
            refs = _drop_shadowed(refs)
            self._write_refs(refs)
        return self._info(manifest_digest, refs)

    def list(self) -> list[ImageInfo]:
        """Every image, once each, with all its names."""
        refs = self._read_refs()
        return [self._info(d, refs) for d in sorted(set(refs.values()))]

    def resolve(self, ref: str) -> ImageInfo:
        """The image `ref` names: a name (short or full), `name@digest`, a manifest digest,
        or an image id (config digest, also as a unique prefix of 12+ hex digits)."""
        refs = self._read_refs()
        return self._info(self._find(ref, refs), refs)

    def remove(self, ref: str) -> list[str]:
        """Untag `ref` (a name), or remove an image entirely (a digest or id); blobs and
        unpacked layers no remaining image uses are deleted. Returns the names removed."""
        with self._lock(fcntl.LOCK_EX):
            refs = self._read_refs()
            digest = self._find(ref, refs)
            by_name = _as_name(ref)
            if by_name is not None and refs.get(by_name) == digest:
                gone = [by_name]
            else:
                gone = [k for k, d in refs.items() if d == digest]
            for key in gone:
                del refs[key]
            self._write_refs(refs)
            self._collect_garbage(refs)
        return [g for g in gone if g != digest]

    def unpacked_layers(self, ref: str) -> list[Path]:
        """The image's layers unpacked, bottom first (overlayfs's lowerdir lists them top
        first: reverse this). Each layer is unpacked once and shared between images."""
        paths = []
        with self._lock(fcntl.LOCK_SH):  # resolved under the lock: no removal in between
            image = self.resolve(ref)
            for layer in image.layers:
                paths.append(self._unpack(layer))
        return paths

    # ------------------------------------------------------------ blobs (the archive's sink)

    def has_blob(self, digest: str) -> bool:
        return self._blob_path(digest).exists()

    def blob_writer(self, digest: str, size: int) -> BlobWriter:
        """A blob to write in chunks (from a registry), verified on `commit`."""
        self._blob_path(digest)  # refuses a malformed digest before anything is written
        return BlobWriter(self, digest, size)

    def pull_lock(self) -> StoreLock:
        """The shared lock to hold while downloading blobs for `record`: no removal collects
        them and no import clears tmp/ meanwhile. Release it before `record`."""
        return StoreLock(self.root / "lock", fcntl.LOCK_SH)

    def put(self, src: BinaryIO, *, expected: str | None) -> tuple[str, int]:
        """Store a blob, verifying it hashes to `expected` when given."""
        if expected is not None and self._blob_path(expected).exists():
            return expected, self._blob_path(expected).stat().st_size
        sha = hashlib.sha256()
        size = 0
        fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix="blob-")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := src.read(1 << 20):
                    sha.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            digest = f"sha256:{sha.hexdigest()}"
            if expected is not None and digest != expected:
                raise DigestMismatch(f"blob {expected} has content {digest}")
            os.chmod(tmp, 0o644)
            os.replace(tmp, self._blob_path(digest))  # same content if one is there already
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return digest, size

    def _blob_path(self, digest: str) -> Path:
        if not reference.is_digest(digest):
            raise ImageError(f"invalid digest {digest!r}")
        return self.blobs / digest[7:]

    def _blob_json(self, digest: str) -> Any:
        try:
            return json.loads(self._blob_path(digest).read_bytes())
        except FileNotFoundError:
            raise ImageNotFound(f"blob {digest} is missing from the store") from None

    # ------------------------------------------------------------ internals

    @contextlib.contextmanager
    def _lock(self, mode: int) -> Iterator[None]:
        with open(self.root / "lock", "a+") as f:
            fcntl.flock(f, mode)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _read_refs(self) -> dict[str, str]:
        try:
            return json.loads(self.refs_file.read_text())
        except FileNotFoundError:
            return {}

    def _write_refs(self, refs: dict[str, str]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix="refs-")
        with os.fdopen(fd, "w") as f:
            json.dump(dict(sorted(refs.items())), f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.refs_file)

    def _find(self, ref: str, refs: dict[str, str]) -> str:
        """The manifest digest `ref` stands for."""
        digests = set(refs.values())
        if reference.is_digest(ref) and ref in digests:
            return ref
        hex_part = ref.removeprefix("sha256:")
        if len(hex_part) >= 12 and all(c in "0123456789abcdef" for c in hex_part):
            matches = {d for d in digests
                       if self._blob_json(d)["config"]["digest"][7:].startswith(hex_part)
                       or d[7:].startswith(hex_part)}
            if len(matches) == 1:
                return matches.pop()
            if len(matches) > 1:
                raise ImageError(f"{ref!r} is ambiguous: {len(matches)} images match")
        try:
            parsed = reference.parse(ref)
        except reference.InvalidReference as e:
            raise ImageNotFound(f"no image {ref!r}: {e}") from None
        if parsed.digest:
            pinned = f"{parsed.repository}@{parsed.digest}"
            if pinned in refs:  # pulled by this digest (perhaps an index's)
                return refs[pinned]
            # name@digest: the digest decides; the name must be one the image has
            if parsed.digest in digests and any(
                    reference.parse(n).repository == parsed.repository
                    for n, d in refs.items() if d == parsed.digest and n != d):
                return parsed.digest
        elif str(parsed) in refs:
            return refs[str(parsed)]
        raise ImageNotFound(f"no image {ref!r} in the store")

    def _info(self, digest: str, refs: dict[str, str]) -> ImageInfo:
        manifest = self._blob_json(digest)
        config_digest = manifest["config"]["digest"]
        config = self._blob_json(config_digest)
        c = config.get("config") or {}
        diff_ids = config.get("rootfs", {}).get("diff_ids", [])
        layers = [Layer(d["digest"], diff_id, d.get("size", 0), d.get("mediaType", ""))
                  for d, diff_id in zip(manifest.get("layers", []), diff_ids, strict=True)]
        return ImageInfo(
            digest=digest, id=config_digest,
            names=sorted(n for n, d in refs.items() if d == digest and n != d),
            layers=layers,
            env=list(c.get("Env") or []), cmd=list(c.get("Cmd") or []),
            entrypoint=list(c.get("Entrypoint") or []), working_dir=c.get("WorkingDir") or "",
            user=c.get("User") or "", exposed_ports=sorted(c.get("ExposedPorts") or {}),
            stop_signal=c.get("StopSignal") or "", labels=dict(c.get("Labels") or {}),
            architecture=config.get("architecture", ""), os=config.get("os", ""))

    def _unpack(self, layer: Layer) -> Path:
        final = self.layers / layer.diff_id.removeprefix("sha256:")
        if final.exists():
            return final
        work = Path(tempfile.mkdtemp(dir=self.tmp, prefix="layer-"))
        try:
            unpack_layer(self._blob_path(layer.digest), work, diff_id=layer.diff_id)
            try:
                os.rename(work, final)
            except OSError:
                if not final.exists():
                    raise
                # another process finished the same layer first: keep its copy
        finally:
            if work.exists():
                shutil.rmtree(work)
        return final

    def _clear_tmp(self) -> None:
        """Drop what crashed imports and unpacks left in tmp/. Only under the exclusive
        lock: then no import or unpack is running, so everything there is an orphan."""
        for path in self.tmp.iterdir():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()

    def _collect_garbage(self, refs: dict[str, str]) -> None:
        self._clear_tmp()
        blobs: set[str] = set()
        diff_ids: set[str] = set()
        for digest in set(refs.values()):
            manifest = self._blob_json(digest)
            config = self._blob_json(manifest["config"]["digest"])
            blobs |= {digest, manifest["config"]["digest"],
                      *(d["digest"] for d in manifest.get("layers", []))}
            diff_ids |= set(config.get("rootfs", {}).get("diff_ids", []))
        for path in self.blobs.iterdir():
            if f"sha256:{path.name}" not in blobs:
                path.unlink()
        for path in self.layers.iterdir():
            if f"sha256:{path.name}" not in diff_ids:
                # rename first so a half-deleted layer is never mistaken for a whole one
                doomed = Path(tempfile.mkdtemp(dir=self.tmp, prefix="gone-"))
                os.rename(path, doomed / "layer")
                shutil.rmtree(doomed)


class StoreLock:
    """The store's flock, taken and released by hand (for async callers: acquire in a
    thread, as it blocks)."""

    def __init__(self, path: Path, mode: int) -> None:
        self.path = path
        self.mode = mode
        self._file: BinaryIO | None = None

    def acquire(self) -> None:
        f = open(self.path, "a+b")  # held until release
        try:
            fcntl.flock(f, self.mode)
        except BaseException:
            f.close()
            raise
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


class BlobWriter:
    """A blob arriving in chunks: written to tmp/ while hashed, renamed into place by
    `commit` once its digest and size are right. Use under `ImageStore.pull_lock`."""

    def __init__(self, store: ImageStore, digest: str, size: int) -> None:
        self.store = store
        self.digest = digest
        self.size = size
        self.written = 0
        self._sha = hashlib.sha256()
        fd, self._tmp = tempfile.mkstemp(dir=store.tmp, prefix="blob-")
        self._out = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        self.written += len(data)
        if self.written > self.size:
            raise DigestMismatch(f"blob {self.digest} is longer than the {self.size} bytes "
                                 "its descriptor says")
        self._sha.update(data)
        self._out.write(data)

    def commit(self) -> None:
        self._out.close()
        actual = f"sha256:{self._sha.hexdigest()}"
        if self.written != self.size:
            raise DigestMismatch(f"blob {self.digest} is {self.written} bytes, its descriptor "
                                 f"says {self.size}")
        if actual != self.digest:
            raise DigestMismatch(f"unexpected commit digest {actual}, expected "
                                 f"{self.digest}: failed precondition")
        os.chmod(self._tmp, 0o644)
        os.replace(self._tmp, self.store._blob_path(self.digest))

    def discard(self) -> None:
        self._out.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


def _drop_shadowed(refs: dict[str, str]) -> dict[str, str]:
    """A digest key stands for an untagged image only while no name points there."""
    named = {d for k, d in refs.items() if k != d}
    return {k: d for k, d in refs.items() if k != d or d not in named}


def _as_name(ref: str) -> str | None:
    """`ref` normalised when it is a plain name (no digest), else None."""
    if ref.startswith("sha256:"):
        return None
    try:
        parsed = reference.parse(ref)
    except reference.InvalidReference:
        return None
    return None if parsed.digest else str(parsed)
