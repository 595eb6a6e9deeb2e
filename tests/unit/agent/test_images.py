"""The image store with small archives built here: OCI and docker-save formats, names,
digest verification, layer unpacking for overlayfs (whiteouts, opaque dirs, hardlinks) and
refusal of members that would land outside the layer."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
import threading
from multiprocessing import get_context
from pathlib import Path

import pytest

from pinnace.agent.images import (
    DigestMismatch,
    ImageNotFound,
    ImageStore,
    InvalidArchive,
    InvalidReference,
    UnsafeLayer,
    normalise,
)
from pinnace.agent.images.command import main as image_command

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="unpacking needs root (chown, mknod)")


# ---------------------------------------------------------------- archive builders

def entry(name: str, data: bytes | None = None, *, kind: bytes = tarfile.REGTYPE,
          link: str = "", mode: int = 0o644, uid: int = 0) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o755 if kind == tarfile.DIRTYPE else mode
    info.uid = info.gid = uid
    data = data or b""
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def dir_(name: str) -> tuple[tarfile.TarInfo, bytes]:
    return entry(name, kind=tarfile.DIRTYPE)


def tar_bytes(entries: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


CONFIG = {"Env": ["PATH=/bin", "A=1"], "Cmd": ["sh"], "Entrypoint": ["/init"],
          "WorkingDir": "/work", "User": "33", "ExposedPorts": {"80/tcp": {}},
          "StopSignal": "SIGQUIT"}


def oci_archive(path: Path, layers: list[bytes], *, name: str | None = "example:1",
                config: dict | None = None, tamper: bytes | None = None,
                annotation: str = "io.containerd.image.name",
                repo_tags: list[str] | None = None) -> str:
    """Write an OCI-layout archive with gzip layers; returns the manifest digest."""
    blobs: dict[str, bytes] = {}
    descs = []
    for layer in layers:
        gz = gzip.compress(layer, mtime=0)
        blobs[sha(gz)] = gz
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                      "digest": sha(gz), "size": len(gz)})
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "config": CONFIG if config is None else config,
                      "rootfs": {"type": "layers", "diff_ids": [sha(x) for x in layers]}}
                     ).encode()
    blobs[sha(cfg)] = cfg
    manifest = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": sha(cfg), "size": len(cfg)},
                           "layers": descs}).encode()
    blobs[sha(manifest)] = manifest
    desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha(manifest), "size": len(manifest)}
    if name and annotation:
        desc["annotations"] = {annotation: name}
    with tarfile.open(path, "w") as tar:
        add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add(tar, "index.json", json.dumps({"schemaVersion": 2, "manifests": [desc]}).encode())
        if repo_tags is not None:
            add(tar, "manifest.json", json.dumps([{
                "Config": f"blobs/sha256/{sha(cfg)[7:]}", "RepoTags": repo_tags,
                "Layers": [f"blobs/sha256/{d['digest'][7:]}" for d in descs]}]).encode())
        for digest, data in blobs.items():
            if tamper is not None and data is not cfg and data is not manifest:
                data = tamper  # a layer blob whose content is not what its name says
            add(tar, f"blobs/sha256/{digest[7:]}", data)
    return sha(manifest)


def docker_archive(path: Path, layers: list[bytes], *, tags: list[str],
                   diff_ids: list[str] | None = None, compress: bool = False) -> None:
    """Write a legacy `docker save` archive: <id>/layer.tar and <config hex>.json."""
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": CONFIG,
                      "rootfs": {"type": "layers",
                                 "diff_ids": diff_ids or [sha(x) for x in layers]}}).encode()
    with tarfile.open(path, "w") as tar:
        names = []
        for i, layer in enumerate(layers):
            name = f"{i:064x}/layer.tar"
            add(tar, name, gzip.compress(layer) if compress else layer)
            names.append(name)
        add(tar, f"{sha(cfg)[7:]}.json", cfg)
        add(tar, "manifest.json", json.dumps([{"Config": f"{sha(cfg)[7:]}.json",
                                               "RepoTags": tags, "Layers": names}]).encode())


BASE = tar_bytes([dir_("bin"), entry("bin/tool", b"#!/bin/sh\necho hi\n", mode=0o755),
                  dir_("etc"), entry("etc/conf", b"base"), dir_("var"), dir_("var/cache"),
                  entry("var/cache/a", b"a"), entry("var/cache/b", b"b"),
                  entry("bin/same", kind=tarfile.LNKTYPE, link="bin/tool"),
                  entry("bin/ln", kind=tarfile.SYMTYPE, link="tool"),
                  entry("bin/suid", b"x", mode=0o4755),
                  entry("home-file", b"owned", uid=1000)])


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "data")


# ---------------------------------------------------------------- names

@pytest.mark.parametrize(("short", "full"), [
    ("busybox:1.28", "docker.io/library/busybox:1.28"),
    ("nginx", "docker.io/library/nginx:latest"),
    ("library/perl:5.34.0", "docker.io/library/perl:5.34.0"),
    ("docker.io/library/nginx:1.19", "docker.io/library/nginx:1.19"),
    ("index.docker.io/user/app", "docker.io/user/app:latest"),
    ("user/app:v1", "docker.io/user/app:v1"),
    ("quay.io/org/app:2", "quay.io/org/app:2"),
    ("localhost:5000/app", "localhost:5000/app:latest"),
    ("localhost/app:1", "localhost/app:1"),
    ("busybox@sha256:" + "a" * 64, "docker.io/library/busybox@sha256:" + "a" * 64),
])
def test_names_are_normalised_like_docker(short: str, full: str) -> None:
    assert normalise(short) == full


@pytest.mark.parametrize("bad", ["Busybox", "busybox:", "a@sha256:12", "a//b", ":tag", ""])
def test_invalid_names_are_refused(bad: str) -> None:
    with pytest.raises(InvalidReference):
        normalise(bad)


# ---------------------------------------------------------------- import and lookup

def test_oci_archive_import_resolve_and_list(store: ImageStore, tmp_path: Path) -> None:
    digest = oci_archive(tmp_path / "a.tar", [BASE], name="docker.io/library/example:1")
    [image] = store.import_archive(tmp_path / "a.tar")
    assert image.names == ["docker.io/library/example:1"]
    assert image.digest == digest
    for ref in ("example:1", "docker.io/library/example:1", digest, image.id,
                image.id[7:19], f"example@{digest}"):
        info = store.resolve(ref)
        assert info.digest == digest
    assert (info.env, info.cmd, info.entrypoint) == (["PATH=/bin", "A=1"], ["sh"], ["/init"])
    assert (info.working_dir, info.user, info.stop_signal) == ("/work", "33", "SIGQUIT")
    assert info.exposed_ports == ["80/tcp"]
    assert info.repo_digests == [f"docker.io/library/example@{digest}"]
    assert [i.names for i in store.list()] == [["docker.io/library/example:1"]]
    with pytest.raises(ImageNotFound):
        store.resolve("example:2")
    with pytest.raises(ImageNotFound):
        store.resolve(f"other@{digest}")


def test_ref_name_annotation_and_docker_manifest_fallback(store: ImageStore,
                                                          tmp_path: Path) -> None:
    oci_archive(tmp_path / "a.tar", [BASE], name="busybox:1.28",
                annotation="org.opencontainers.image.ref.name")
    assert store.import_archive(tmp_path / "a.tar")[0].names == [
        "docker.io/library/busybox:1.28"]
    # a bare tag in ref.name names no repository: the Docker manifest.json's RepoTags do
    oci_archive(tmp_path / "b.tar", [BASE, BASE + b"\0" * 512], name="2",
                annotation="org.opencontainers.image.ref.name", repo_tags=["app:2"])
    assert store.import_archive(tmp_path / "b.tar")[0].names == ["docker.io/library/app:2"]


def test_untagged_image_is_kept_and_found_by_digest(store: ImageStore, tmp_path: Path) -> None:
    digest = oci_archive(tmp_path / "a.tar", [BASE], name=None)
    [image] = store.import_archive(tmp_path / "a.tar")
    assert image.names == []
    assert store.resolve(digest).digest == digest
    assert [i.digest for i in store.list()] == [digest]


@root_only
def test_docker_archive_gives_the_same_image_content(store: ImageStore, tmp_path: Path) -> None:
    docker_archive(tmp_path / "d.tar", [BASE], tags=["legacy:3", "quay.io/x/legacy:3"])
    [image] = store.import_archive(tmp_path / "d.tar")
    assert image.names == ["docker.io/library/legacy:3", "quay.io/x/legacy:3"]
    assert image.cmd == ["sh"] and image.layers[0].diff_id == sha(BASE)
    [layer] = store.unpacked_layers("legacy:3")
    assert (layer / "etc/conf").read_bytes() == b"base"
    # the same layer from an OCI archive is the same unpacked directory
    oci_archive(tmp_path / "o.tar", [BASE], name="oci:1")
    store.import_archive(tmp_path / "o.tar")
    assert store.unpacked_layers("oci:1") == [layer]


def test_gzipped_archive_and_dot_slash_members(store: ImageStore, tmp_path: Path) -> None:
    oci_archive(tmp_path / "a.tar", [BASE], name="x:1")
    with tarfile.open(tmp_path / "a.tar") as src, \
            tarfile.open(tmp_path / "a.tar.gz", "w:gz") as dst:
        for m in src.getmembers():
            data = src.extractfile(m)
            m.name = "./" + m.name
            dst.addfile(m, data)
    assert store.import_archive(tmp_path / "a.tar.gz")[0].names == ["docker.io/library/x:1"]


# ---------------------------------------------------------------- verification

def test_blob_not_matching_its_digest_is_refused(store: ImageStore, tmp_path: Path) -> None:
    oci_archive(tmp_path / "a.tar", [BASE], tamper=gzip.compress(b"evil"))
    with pytest.raises(DigestMismatch):
        store.import_archive(tmp_path / "a.tar")
    assert store.list() == []
    assert list(store.tmp.iterdir()) == []


def test_leftovers_of_a_crashed_import_are_cleared(store: ImageStore, tmp_path: Path) -> None:
    (store.tmp / "blob-crashed").write_bytes(b"half")
    (store.tmp / "layer-crashed").mkdir()
    oci_archive(tmp_path / "a.tar", [BASE], name="x:1")
    store.import_archive(tmp_path / "a.tar")
    assert list(store.tmp.iterdir()) == []


def test_uncompressed_docker_layer_must_match_diff_id(store: ImageStore,
                                                      tmp_path: Path) -> None:
    docker_archive(tmp_path / "d.tar", [BASE], tags=["x:1"], diff_ids=[sha(b"other")])
    with pytest.raises(DigestMismatch):
        store.import_archive(tmp_path / "d.tar")
    assert store.list() == []


@root_only
def test_compressed_layer_with_wrong_diff_id_is_refused_at_unpack(store: ImageStore,
                                                                  tmp_path: Path) -> None:
    docker_archive(tmp_path / "d.tar", [BASE], tags=["x:1"], diff_ids=[sha(b"other")],
                   compress=True)
    store.import_archive(tmp_path / "d.tar")
    with pytest.raises(DigestMismatch):
        store.unpacked_layers("x:1")
    assert list(store.layers.iterdir()) == [] and list(store.tmp.iterdir()) == []


def test_not_an_image_archive(store: ImageStore, tmp_path: Path) -> None:
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(InvalidArchive):
        store.import_archive(tmp_path / "junk.tar")
    (tmp_path / "empty.tar").write_bytes(tar_bytes([entry("readme", b"hi")]))
    with pytest.raises(InvalidArchive):
        store.import_archive(tmp_path / "empty.tar")


# ---------------------------------------------------------------- unpacking

@root_only
def test_layer_keeps_modes_owners_hardlinks_and_symlinks(store: ImageStore,
                                                         tmp_path: Path) -> None:
    oci_archive(tmp_path / "a.tar", [BASE], name="x:1")
    store.import_archive(tmp_path / "a.tar")
    [layer] = store.unpacked_layers("x:1")
    tool, same = (layer / "bin/tool").stat(), (layer / "bin/same").stat()
    assert tool.st_ino == same.st_ino and tool.st_nlink == 2
    assert stat.S_IMODE(tool.st_mode) == 0o755
    assert stat.S_IMODE((layer / "bin/suid").stat().st_mode) == 0o4755
    assert os.readlink(layer / "bin/ln") == "tool"
    assert (layer / "home-file").stat().st_uid == 1000
    assert store.unpacked_layers("x:1") == [layer]  # unpacked once


UPPER = tar_bytes([dir_("etc"), entry("etc/.wh.conf"), dir_("var"), dir_("var/cache"),
                   entry("var/cache/.wh..wh..opq"), entry("var/cache/new", b"new"),
                   entry("bin/.wh..wh.plnk")])


@root_only
def test_whiteouts_and_opaque_dirs_become_overlayfs_form(store: ImageStore,
                                                         tmp_path: Path) -> None:
    oci_archive(tmp_path / "a.tar", [BASE, UPPER], name="x:1")
    store.import_archive(tmp_path / "a.tar")
    lower, upper = store.unpacked_layers("x:1")
    whiteout = os.lstat(upper / "etc/conf")
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == os.makedev(0, 0)
    assert os.getxattr(upper / "var/cache", "trusted.overlay.opaque") == b"y"
    assert not (upper / "etc/.wh.conf").exists()
    assert not (upper / "var/cache/.wh..wh..opq").exists()
    assert not (upper / "bin").exists() or not list((upper / "bin").iterdir())
    merged = tmp_path / "merged"
    merged.mkdir()
    mount = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                            f"lowerdir={upper}:{lower}", str(merged)], capture_output=True)
    if mount.returncode != 0:
        pytest.fail(f"no overlayfs here: {mount.stderr.decode().strip()}")
    try:
        assert not (merged / "etc/conf").exists()
        assert sorted(os.listdir(merged / "var/cache")) == ["new"]
        assert (merged / "bin/tool").exists()
    finally:
        subprocess.run(["umount", str(merged)], check=True)


def unpack_one(store: ImageStore, tmp_path: Path, layer: bytes) -> Path:
    oci_archive(tmp_path / "a.tar", [layer], name="x:1")
    store.import_archive(tmp_path / "a.tar")
    return store.unpacked_layers("x:1")[0]


@root_only
@pytest.mark.parametrize("members", [
    [entry("../escaped", b"x")],
    [entry("a/../../escaped", b"x")],
    [entry("/escaped", b"x")],
    [entry("x", kind=tarfile.LNKTYPE, link="/etc/passwd")],
    [entry("x", kind=tarfile.LNKTYPE, link="../escaped")],
    [entry("x", kind=tarfile.LNKTYPE, link="missing")],
    [entry("f", b"file"), entry("f/child", b"x")],
    [entry("loop", kind=tarfile.SYMTYPE, link="loop"), entry("loop/x", b"x")],
], ids=["dotdot", "inner-dotdot", "absolute", "hardlink-absolute", "hardlink-dotdot",
        "hardlink-missing", "through-a-file", "symlink-loop"])
def test_members_leaving_the_layer_are_refused(store: ImageStore, tmp_path: Path,
                                               members: list) -> None:
    with pytest.raises(UnsafeLayer):
        unpack_one(store, tmp_path, tar_bytes(members))
    assert not (tmp_path.parent / "escaped").exists()
    assert list(store.layers.iterdir()) == [] and list(store.tmp.iterdir()) == []


@root_only
def test_symlinks_cannot_carry_members_out(store: ImageStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    layer = unpack_one(store, tmp_path, tar_bytes([
        entry("abs", kind=tarfile.SYMTYPE, link=str(outside)),
        entry("abs/planted", b"x"),
        entry("up", kind=tarfile.SYMTYPE, link="../../../../../.."),
        entry("up/planted2", b"y"),
        entry("loop", kind=tarfile.SYMTYPE, link="loop"),
    ]))
    assert list(outside.iterdir()) == []
    # as in a chroot at the layer: the absolute target and the climb stay inside
    assert (layer / str(outside).lstrip("/") / "planted").read_bytes() == b"x"
    assert (layer / "planted2").read_bytes() == b"y"
    assert os.readlink(layer / "abs") == str(outside)  # the link itself is kept as written


# ---------------------------------------------------------------- removal, concurrency

@root_only
def test_remove_untags_then_collects_garbage(store: ImageStore, tmp_path: Path) -> None:
    oci_archive(tmp_path / "a.tar", [BASE], name="x:1")
    store.import_archive(tmp_path / "a.tar")
    oci_archive(tmp_path / "b.tar", [BASE], name="y:1")  # same content, second name
    store.import_archive(tmp_path / "b.tar")
    store.unpacked_layers("x:1")
    assert [i.names for i in store.list()] == [["docker.io/library/x:1",
                                                "docker.io/library/y:1"]]
    assert store.remove("x:1") == ["docker.io/library/x:1"]
    assert len(list(store.blobs.iterdir())) == 3 and len(list(store.layers.iterdir())) == 1
    assert store.remove("y:1") == ["docker.io/library/y:1"]
    assert store.list() == []
    assert list(store.blobs.iterdir()) == [] and list(store.layers.iterdir()) == []
    with pytest.raises(ImageNotFound):
        store.remove("y:1")


def _import_in_process(data_dir: str, archive: str) -> None:
    ImageStore(data_dir).import_archive(archive)


@root_only
def test_concurrent_imports_leave_a_consistent_store(store: ImageStore, tmp_path: Path) -> None:
    big = tar_bytes([entry(f"f{i}", os.urandom(20000)) for i in range(50)])
    oci_archive(tmp_path / "a.tar", [big], name="x:1")
    ctx = get_context("fork")
    procs = [ctx.Process(target=_import_in_process, args=(str(store.root.parent),
                                                          str(tmp_path / "a.tar")))
             for _ in range(3)]
    threads = [threading.Thread(target=store.import_archive, args=(tmp_path / "a.tar",))
               for _ in range(3)]
    for w in [*procs, *threads]:
        w.start()
    for w in [*procs, *threads]:
        w.join()
    assert all(p.exitcode == 0 for p in procs)
    assert [i.names for i in store.list()] == [["docker.io/library/x:1"]]
    assert len(list(store.blobs.iterdir())) == 3 and list(store.tmp.iterdir()) == []
    results: list[list[Path]] = []
    threads = [threading.Thread(target=lambda: results.append(store.unpacked_layers("x:1")))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and len({tuple(r) for r in results}) == 1
    assert len(list(store.layers.iterdir())) == 1 and list(store.tmp.iterdir()) == []
    assert len(list(results[0][0].iterdir())) == 50


# ---------------------------------------------------------------- the command

def test_image_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    oci_archive(tmp_path / "a.tar", [BASE], name="busybox:1.28")
    assert image_command(["import", "--data-dir", data, str(tmp_path / "a.tar")]) == 0
    assert "imported docker.io/library/busybox:1.28 (sha256:" in capsys.readouterr().out
    assert image_command(["ls", "--data-dir", data]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"]
    assert row.split()[:2] == ["docker.io/library/busybox", "1.28"]
    assert image_command(["rm", "--data-dir", data, "busybox:1.28"]) == 0
    assert capsys.readouterr().out == "deleted docker.io/library/busybox:1.28\n"
    assert image_command(["rm", "--data-dir", data, "busybox:1.28"]) == 1
    assert "no image 'busybox:1.28'" in capsys.readouterr().err
    (tmp_path / "bad.tar").write_bytes(b"x" * 1000)
    assert image_command(["import", "--data-dir", data, str(tmp_path / "bad.tar")]) == 1
