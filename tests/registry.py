"""A real OCI registry on loopback for tests: Debian's `docker-registry` (distribution 2.8).

    with LocalRegistry(tmp_path) as registry:          # or registry.start() … registry.stop()
        registry.push_archive(test_images / "busybox_1.28.tar", "library/busybox", "1.28")
        registry.write_registries_yaml(data_dir)       # docker.io → http://127.0.0.1:PORT
        … pull "busybox:1.28" …
        registry.requests()                            # [("GET", "/v2/…", 200), …]

The session fixture `local_registry` (tests/conftest.py) serves library/busybox:1.28,
library/nginx:1.19 and library/perl:5.34.0 for the whole session: for e2e tests, write
`local_registry.registries_yaml()` to `DATA_DIR/registries.yaml` and the seed manifests'
`busybox:1.28` etc. pull from it as from Docker Hub. Don't push to or stop the session
registry; start your own LocalRegistry for tests that need other content or auth.

With `token=` it asks for bearer tokens from
a realm the test serves (see tests/integration/test_image_pull.py's token service).

The registry stores in `DIR/data`, logs (including its access log) to `DIR/registry.log`,
listens on a free 127.0.0.1 port, and is stopped by its own PID. With `users=` it requires
basic auth (an htpasswd file with bcrypt hashes, made by libcrypt through `crypt`). Pushing
speaks the distribution API directly: monolithic blob uploads (POST then PUT ?digest=) and
PUT manifest, skipping blobs the registry already has.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from types import TracebackType

from tests.ports import free_port

BINARY = "/usr/bin/docker-registry"
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = INDEX_TYPES[0]
_ACCESS = re.compile(r'"(GET|HEAD|PUT|POST|PATCH|DELETE) (\S+) HTTP/[\d.]+" (\d{3})')


# the registry is on loopback: never go through a proxy from the environment
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def available() -> bool:
    return shutil.which(BINARY) is not None


def _bcrypt(password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # deprecated, but libcrypt's bcrypt saves a dependency

        # cost 4, bcrypt's least: the registry checks it on every request
        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class LocalRegistry:
    def __init__(self, directory: Path, *, users: dict[str, str] | None = None,
                 token: dict[str, str] | None = None) -> None:
        """`users`: basic auth (htpasswd); `token`: Docker Hub's bearer-token auth, with keys
        realm, service, issuer, rootcertbundle (the registry's own `auth.token` settings)."""
        self.dir = Path(directory)
        self.users = users or {}
        self.token = token
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def log_file(self) -> Path:
        return self.dir / "registry.log"

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 10.0) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        auth = ""
        if self.users:
            htpasswd = self.dir / "htpasswd"
            htpasswd.write_text("".join(f"{u}:{_bcrypt(p)}\n" for u, p in self.users.items()))
            auth = f"auth:\n  htpasswd:\n    realm: pinnace-test\n    path: {htpasswd}\n"
        if self.token:
            auth = "auth:\n  token:\n" + "".join(f"    {k}: {v}\n" for k, v in self.token.items())
        config = self.dir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: info\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.dir / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.address}\n" + auth)
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen([BINARY, "serve", str(config)], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with _DIRECT.open(f"{self.url}/v2/", timeout=1):
                    return
            except urllib.error.HTTPError as e:
                if e.code == 401:  # answering, and asking for credentials
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"docker-registry did not start: {self.log_file.read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> LocalRegistry:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------ configuration for pinnace

    def registries_yaml(self, registry: str = "docker.io") -> str:
        """registries.yaml text making this registry the mirror of `registry` (with the
        credentials when it requires auth)."""
        text = f'mirrors:\n  "{registry}":\n    endpoint: ["{self.url}"]\n'
        if self.users:
            user, password = next(iter(self.users.items()))
            text += (f'configs:\n  "{self.address}":\n    auth:\n'
                     f'      username: "{user}"\n      password: "{password}"\n')
        return text

    def write_registries_yaml(self, data_dir: Path, registry: str = "docker.io") -> Path:
        path = Path(data_dir) / "registries.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.registries_yaml(registry))
        return path

    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request served so far, from the access log."""
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return [(m, p, int(s)) for m, p, s in _ACCESS.findall(text)]

    # ------------------------------------------------------------ pushing

    def _request(self, method: str, url: str, data: bytes | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        headers = dict(headers or {})
        if self.users:
            user, password = next(iter(self.users.items()))
            headers["Authorization"] = "Basic " + base64.b64encode(
                f"{user}:{password}".encode()).decode()
        if not url.startswith("http"):
            url = self.url + url
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with _DIRECT.open(req, timeout=60) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def push_blob(self, repository: str, data: bytes) -> str:
        digest = digest_of(data)
        status, _, _ = self._request("HEAD", f"/v2/{repository}/blobs/{digest}")
        if status == 200:
            return digest
        status, headers, body = self._request("POST", f"/v2/{repository}/blobs/uploads/")
        if status != 202:
            raise RuntimeError(f"upload of {digest} refused: {status} {body!r}")
        location = headers["Location"]
        sep = "&" if "?" in location else "?"
        status, _, body = self._request(
            "PUT", f"{location}{sep}digest={digest}", data,
            {"Content-Type": "application/octet-stream"})
        if status != 201:
            raise RuntimeError(f"upload of {digest} failed: {status} {body!r}")
        return digest

    def push_manifest(self, repository: str, ref: str, body: bytes,
                      media_type: str | None = None) -> str:
        """PUT a manifest (or index) under `ref` (a tag or its digest); returns its digest."""
        media_type = media_type or json.loads(body).get("mediaType") or OCI_MANIFEST
        status, _, answer = self._request("PUT", f"/v2/{repository}/manifests/{ref}", body,
                                          {"Content-Type": media_type})
        if status != 201:
            raise RuntimeError(f"manifest {ref} refused: {status} {answer!r}")
        return digest_of(body)

    def push_archive(self, archive: Path, repository: str, tag: str) -> str:
        """Push the (first) image of an OCI-layout archive as `repository:tag`; returns the
        digest of the manifest (or index) pushed."""
        with tarfile.open(archive) as tar:
            def read(name: str) -> bytes:
                f = tar.extractfile(name.removeprefix("./"))
                if f is None:
                    raise RuntimeError(f"{archive}: no {name}")
                return f.read()

            def push(desc: dict, ref: str) -> str:
                body = read(f"blobs/sha256/{desc['digest'][7:]}")
                doc = json.loads(body)
                children = (doc.get("manifests") or [] if desc.get("mediaType") in INDEX_TYPES
                            else [doc["config"], *doc.get("layers", [])])
                for child in children:
                    if "manifests" in doc:
                        push(child, child["digest"])
                    else:
                        self.push_blob(repository, read(f"blobs/sha256/{child['digest'][7:]}"))
                return self.push_manifest(repository, ref, body, desc.get("mediaType"))

            index = json.loads(read("index.json"))
            return push(index["manifests"][0], tag)
