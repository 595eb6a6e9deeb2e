"""Pull images over the OCI distribution API into the ImageStore, as containerd does for CRI.

Flow of one pull: the reference's registry gives a list of endpoints (mirrors from
registries.yaml, then the registry itself); each is tried in order until one serves the
manifest, falling back on connection errors, 404s and 5xx (and any other refusal, as
containerd does). From that endpoint: the manifest (an index or Docker list → this platform's
manifest), then the config and layers not already in the store (the layer cache), at most
three at a time, each streamed to disk while hashed and kept only if digest and size match
its descriptor. A manifest pulled by digest must hash to that digest, one pulled by tag to the
registry's Docker-Content-Digest when it sends one. Last, `ImageStore.record` names the
image (`repo:tag`, or `repo@digest` for a pull by digest), after which `resolve` and
`unpacked_layers` work as for an imported archive.

Authentication per endpoint: anonymous first; on a 401, the challenge decides — `Bearer`
(Docker Hub's token flow: GET realm?service=&scope=, with basic credentials when there are
some, or a refresh-token POST for an identity token) or `Basic`. Credentials come from the
endpoint's `configs` entry in registries.yaml, then from pull secrets matching the endpoint
or the image's registry; each is tried in turn, as the kubelet tries every matching secret.

Pulls of the same reference into the same store share one download: the first caller's task
is kept in `_in_flight` until it ends, and later callers await it (shielded, so one caller
giving up does not cancel the others').

Errors (messages worded like containerd's, which the kubelet shows in its events):

    ImageError
    └── PullError                  the pull failed; the agent reports ErrImagePull
        ├── ImageNotFoundInRegistry    the registry answered 404 for the manifest
        └── PullAccessDenied           401/403 with every credential tried
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import fnmatch
import hashlib
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from pinnace.agent.images import reference
from pinnace.agent.images.archive import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    host_architecture,
)
from pinnace.agent.images.errors import ImageError, ImageNotFound
from pinnace.agent.images.registries import DOCKER_HUB, Endpoint, Registries
from pinnace.agent.images.store import ImageInfo, ImageStore

# docker-registry 2.8 answers 404 to an OCI manifest unless the OCI type is accepted
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])
MAX_CONCURRENT_DOWNLOADS = 3  # containerd's default
MAX_MANIFEST_BYTES = 4 << 20  # containerd's limit too
_CHUNK = 1 << 20
_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=15, sock_read=60)
_DOCKER_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io")


class PullError(ImageError):
    """A pull failed; the message reads like containerd's."""


class ImageNotFoundInRegistry(PullError):
    """The registry does not have this image (404): the kubelet's ErrImagePull."""


class PullAccessDenied(PullError):
    """The registry refused every credential tried (401/403)."""


@dataclass(frozen=True)
class Credential:
    """Credentials for a registry (from a pull secret or registries.yaml)."""

    registry: str  # host[:port] ("docker.io" for Docker Hub), may hold "*" globs
    username: str = ""
    password: str = ""
    identity_token: str = ""
    path: str = ""  # repository prefix the key named ("registry.io/team" → "team")

    def matches(self, host: str, repository_path: str = "") -> bool:
        """Does this credential apply to `host` (and the repository `repository_path`)?"""
        if not _host_glob_match(self.registry, _canonical_host(host)):
            return False
        return not self.path or repository_path == self.path or repository_path.startswith(
            self.path.rstrip("/") + "/")


# ------------------------------------------------------------ pull secrets


def _canonical_host(host: str) -> str:
    host = host.lower()
    return DOCKER_HUB if host in _DOCKER_HUB_ALIASES else host


def _host_glob_match(pattern: str, host: str) -> bool:
    """Glob per dot-separated label, as the kubelet matches `*.example.com`."""
    p_host, _, p_port = pattern.partition(":")
    h_host, _, h_port = host.partition(":")
    p_labels, h_labels = p_host.split("."), h_host.split(".")
    return p_port == h_port and len(p_labels) == len(h_labels) and all(
        fnmatch.fnmatchcase(h, p) for p, h in zip(p_labels, h_labels, strict=True))


def _credential(key: str, entry: Any) -> Credential | None:
    if not isinstance(entry, dict):
        return None
    # keys are "host", "host/path" or URLs such as "https://index.docker.io/v1/"
    parts = urlsplit(key if "://" in key else f"//{key}")
    host = _canonical_host(parts.netloc)
    path = parts.path.strip("/")
    if host == DOCKER_HUB and path in ("v1", "v2"):
        path = ""
    username, password = entry.get("username") or "", entry.get("password") or ""
    if entry.get("auth") and not username:
        try:
            username, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, TypeError):
            return None
    token = entry.get("identitytoken") or entry.get("identityToken") or ""
    if not host or not (username or token):
        return None
    return Credential(host, str(username), str(password), str(token), path)


def credentials_from_pull_secrets(secrets: Iterable[dict]) -> list[Credential]:
    """Credentials from `kubernetes.io/dockerconfigjson` and `kubernetes.io/dockercfg`
    Secrets (as the API returns them, data base64-encoded), in order. Malformed secrets are
    skipped, as the kubelet skips them."""
    result = []
    for secret in secrets:
        data = secret.get("data") or {}
        kind = secret.get("type")
        field = {"kubernetes.io/dockerconfigjson": ".dockerconfigjson",
                 "kubernetes.io/dockercfg": ".dockercfg"}.get(kind or "")
        if field is None or field not in data:
            continue
        try:
            doc = json.loads(base64.b64decode(data[field]))
        except (binascii.Error, ValueError, TypeError):
            continue
        entries = doc.get("auths") if kind == "kubernetes.io/dockerconfigjson" else doc
        for key, entry in (entries or {}).items() if isinstance(entries, dict) else ():
            cred = _credential(str(key), entry)
            if cred is not None:
                result.append(cred)
    return result


# ------------------------------------------------------------ the pull


class _EndpointFailed(Exception):
    """This endpoint could not serve the image; try the next one."""

    def __init__(self, error: PullError) -> None:
        super().__init__(str(error))
        self.error = error


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


async def _server_message(resp: aiohttp.ClientResponse) -> str:
    """The distribution API's error body as containerd quotes it ("code: message")."""
    try:
        errors = json.loads(await resp.read()).get("errors") or []
        return "; ".join(f"{e.get('code', '').lower()}: {e.get('message', '')}"
                         for e in errors)
    except (ValueError, AttributeError, aiohttp.ClientError):
        return ""


class _Puller:
    def __init__(self, store: ImageStore, ref: reference.Reference, *, registries: Registries,
                 credentials: Sequence[Credential], platform: tuple[str, str],
                 session: aiohttp.ClientSession) -> None:
        self.store = store
        self.ref = ref
        self.name = str(ref)
        self.registries = registries
        self.credentials = credentials
        self.platform = platform
        self.session = session
        self.authorization: dict[str, str] = {}  # endpoint URL → Authorization header

    def fail(self, what: str, cls: type[PullError] = PullError) -> PullError:
        return cls(f'failed to pull and unpack image "{self.name}": {what}')

    async def run(self) -> ImageInfo:
        failures: list[PullError] = []
        for endpoint in self.registries.endpoints(self.ref.domain):
            try:
                return await self.pull_from(endpoint)
            except _EndpointFailed as e:
                failures.append(e.error)
        # a 404 anywhere says the image is not there; else the first endpoint's trouble
        not_found = [f for f in failures if isinstance(f, ImageNotFoundInRegistry)]
        raise (not_found or failures)[0]

    # -------------------------------------------------------- HTTP with authentication

    def _auth_candidates(self, endpoint: Endpoint, repository: str) -> list[Credential]:
        found = []
        if endpoint.auth is not None:
            found.append(Credential(endpoint.host, endpoint.auth.username,
                                    endpoint.auth.password, endpoint.auth.identity_token))
        found += [c for c in self.credentials if c.matches(endpoint.host, repository)]
        if not endpoint.mirror or not found:
            found += [c for c in self.credentials if c.matches(self.ref.domain, self.ref.path)]
        return list(dict.fromkeys(found))

    async def request(self, endpoint: Endpoint, repository: str, path: str,
                      headers: dict[str, str], what: str) -> aiohttp.ClientResponse:
        """GET `path` under the endpoint's API root, authenticating on 401. The caller
        releases the response. Raises _EndpointFailed."""
        url = f"{endpoint.url}/{repository}/{path}"
        ssl = endpoint.tls.ssl_context() if endpoint.tls else True
        # after a 401: an anonymous token first (public images on Docker Hub), then each
        # credential that applies, in order
        attempts: list[Credential | None] = [None, *self._auth_candidates(endpoint, repository)]
        tried = 0

        async def send() -> aiohttp.ClientResponse:
            h = dict(headers)
            if endpoint.url in self.authorization:
                h["Authorization"] = self.authorization[endpoint.url]
            try:
                return await self.session.get(url, headers=h, ssl=ssl)
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                raise _EndpointFailed(self.fail(
                    f'{what}: failed to do request: Get "{url}": {e or type(e).__name__}'
                )) from None

        resp = await send()
        while resp.status in (401, 403):
            challenge = resp.headers.get("WWW-Authenticate", "")
            message = await _server_message(resp)
            resp.release()
            while resp.status == 401 and challenge and tried < len(attempts):
                tried += 1
                try:
                    if await self.authorize(endpoint, repository, challenge,
                                            attempts[tried - 1], what):
                        break
                except _EndpointFailed as e:  # the token service refused: next credential
                    if not isinstance(e.error, PullAccessDenied) or tried == len(attempts):
                        raise
            else:
                server = f": server message: {message}" if message else ""
                raise _EndpointFailed(self.fail(
                    f"{what}: pull access denied, repository does not exist or may require "
                    f"authorization{server}", PullAccessDenied))
            resp = await send()
        return resp

    async def authorize(self, endpoint: Endpoint, repository: str, challenge: str,
                        credential: Credential | None, what: str) -> bool:
        """Set the endpoint's Authorization for `credential` (None: anonymous); False when
        the challenge gives that credential nothing to try."""
        scheme, params = _parse_challenge(challenge)
        if scheme == "basic":
            if credential is None or not credential.username:
                return False
            raw = f"{credential.username}:{credential.password}".encode()
            self.authorization[endpoint.url] = "Basic " + base64.b64encode(raw).decode()
            return True
        if scheme != "bearer" or "realm" not in params:
            raise _EndpointFailed(self.fail(f"{what}: unsupported authentication challenge "
                                            f"{challenge!r}", PullAccessDenied))
        self.authorization[endpoint.url] = "Bearer " + await self.fetch_token(
            endpoint, repository, params, credential, what)
        return True

    async def fetch_token(self, endpoint: Endpoint, repository: str, params: dict[str, str],
                          credential: Credential | None, what: str) -> str:
        realm = params["realm"]
        scope = params.get("scope") or f"repository:{repository}:pull"
        query = {k: v for k, v in (("service", params.get("service")), ("scope", scope)) if v}
        same_host = urlsplit(realm).netloc == endpoint.host
        ssl = endpoint.tls.ssl_context() if endpoint.tls and same_host else True
        try:
            if credential is not None and credential.identity_token:
                form = {**query, "grant_type": "refresh_token", "client_id": "pinnace",
                        "refresh_token": credential.identity_token}
                resp = await self.session.post(realm, data=form, ssl=ssl)
            else:
                headers = {}
                if credential is not None and credential.username:
                    raw = f"{credential.username}:{credential.password}".encode()
                    headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
                resp = await self.session.get(f"{realm}?{urlencode(query)}", headers=headers,
                                              ssl=ssl)
            async with resp:
                if resp.status in (401, 403):
                    raise _EndpointFailed(self.fail(
                        f"{what}: failed to authorize: failed to fetch "
                        f"{'oauth' if credential else 'anonymous'} token: unexpected status "
                        f"from GET request to {realm}: {resp.status} {resp.reason}",
                        PullAccessDenied))
                if resp.status != 200:
                    raise _EndpointFailed(self.fail(
                        f"{what}: failed to authorize: unexpected status from token "
                        f"request to {realm}: {resp.status} {resp.reason}"))
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as e:
            raise _EndpointFailed(self.fail(f"{what}: failed to authorize: {e}")) from None
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else ""
        if not token:
            raise _EndpointFailed(self.fail(f"{what}: failed to authorize: the token "
                                            f"response from {realm} holds no token"))
        return str(token)

    # -------------------------------------------------------- manifests

    async def manifest(self, endpoint: Endpoint, repository: str, tag_or_digest: str,
                       what: str) -> tuple[bytes, str, str]:
        """(body, media type, digest the registry gave) of one manifest."""
        resp = await self.request(endpoint, repository, f"manifests/{tag_or_digest}",
                                  {"Accept": MANIFEST_ACCEPT}, what)
        async with resp:
            if resp.status == 404:
                raise _EndpointFailed(self.fail(f"{what}: {self.name}: not found",
                                                ImageNotFoundInRegistry))
            if resp.status != 200:
                message = await _server_message(resp)
                raise _EndpointFailed(self.fail(
                    f"{what}: unexpected status from GET request to {resp.url}: "
                    f"{resp.status} {resp.reason}" + (f": {message}" if message else "")))
            try:
                body = await resp.content.read(MAX_MANIFEST_BYTES + 1)
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                raise _EndpointFailed(self.fail(f"{what}: reading the manifest: {e}")) from None
            if len(body) > MAX_MANIFEST_BYTES:
                raise self.fail(f"{what}: manifest larger than {MAX_MANIFEST_BYTES} bytes")
            media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
            return body, media_type, resp.headers.get("Docker-Content-Digest", "")

    def choose_platform(self, index: dict) -> dict:
        os_name, arch = self.platform
        for desc in index.get("manifests") or []:
            plat = desc.get("platform") or {}
            if plat.get("os") == os_name and plat.get("architecture") == arch:
                return desc
        raise self.fail(f"no match for platform {os_name}/{arch} in manifest: not found")

    async def pull_from(self, endpoint: Endpoint) -> ImageInfo:
        repository = endpoint.repository(self.ref.path)
        resolve = f'failed to resolve reference "{self.name}"'
        wanted = self.ref.digest or self.ref.tag
        body, media_type, given = await self.manifest(endpoint, repository, wanted, resolve)
        digest = _sha256(body)
        if self.ref.digest and digest != self.ref.digest:
            raise self.fail(f"{resolve}: manifest content is {digest}, not the requested "
                            f"{self.ref.digest}: failed precondition")
        if given and given != digest:
            raise self.fail(f"{resolve}: manifest content is {digest}, the registry says "
                            f"{given}: failed precondition")
        doc = self.parse_manifest(body)
        media_type = doc.get("mediaType") or media_type
        if media_type in INDEX_TYPES or "manifests" in doc:
            desc = self.choose_platform(doc)
            body, media_type, _ = await self.manifest(endpoint, repository, desc["digest"],
                                                      "failed to copy")
            digest = _sha256(body)
            if digest != desc["digest"] or len(body) != desc.get("size", len(body)):
                raise self.fail(f"failed to copy: unexpected commit digest {digest}, expected "
                                f"{desc['digest']}: failed precondition")
            doc = self.parse_manifest(body)
            media_type = doc.get("mediaType") or media_type
        if media_type not in MANIFEST_TYPES or "config" not in doc:
            raise self.fail(f"unsupported manifest type {media_type or 'unknown'!r} "
                            "(schema 1 images are not supported)")
        names = ([f"{self.ref.repository}@{self.ref.digest}"] if self.ref.digest
                 else [self.name])
        for attempt in (1, 2):
            await self.download(endpoint, repository, digest, body, doc)
            try:
                return await asyncio.to_thread(self.store.record, digest, names)
            except ImageNotFound:
                if attempt == 2:  # an image removal collected our blobs twice: give up
                    raise
        raise AssertionError("unreachable")

    def parse_manifest(self, body: bytes) -> dict:
        try:
            doc = json.loads(body)
        except ValueError as e:
            raise self.fail(f"the manifest is not JSON: {e}") from None
        if not isinstance(doc, dict):
            raise self.fail("the manifest is not a JSON object")
        return doc

    # -------------------------------------------------------- blobs

    async def download(self, endpoint: Endpoint, repository: str, digest: str, body: bytes,
                       doc: dict) -> None:
        blobs = [doc["config"], *(doc.get("layers") or [])]
        for desc in blobs:
            if not reference.is_digest(desc.get("digest", "")) or not isinstance(
                    desc.get("size"), int):
                raise self.fail(f"failed to copy: invalid descriptor {desc!r} in manifest "
                                f"{digest}")
        lock = self.store.pull_lock()
        taking = asyncio.ensure_future(asyncio.to_thread(lock.acquire))
        try:
            await asyncio.shield(taking)
        except asyncio.CancelledError:  # the thread still takes the lock: give it back
            taking.add_done_callback(lambda _: lock.release())
            raise
        try:
            await asyncio.to_thread(self.store.put, io.BytesIO(body), expected=digest)
            missing = list({d["digest"]: d for d in blobs
                            if not self.store.has_blob(d["digest"])}.values())
            limit = asyncio.Semaphore(MAX_CONCURRENT_DOWNLOADS)

            async def fetch(desc: dict) -> None:
                async with limit:
                    await self.fetch_blob(endpoint, repository, desc)

            results = await asyncio.gather(*(fetch(d) for d in missing),
                                           return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        finally:
            lock.release()

    async def fetch_blob(self, endpoint: Endpoint, repository: str, desc: dict) -> None:
        digest, size = desc["digest"], desc["size"]
        what = f"failed to copy: blob {digest}"
        try:
            resp = await self.request(endpoint, repository, f"blobs/{digest}", {}, what)
        except _EndpointFailed as e:
            raise e.error from None
        async with resp:
            if resp.status != 200:
                raise self.fail(f"{what}: unexpected status from GET request to {resp.url}: "
                                f"{resp.status} {resp.reason}",
                                ImageNotFoundInRegistry if resp.status == 404 else PullError)
            writer = self.store.blob_writer(digest, size)
            try:
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    writer.write(chunk)
                writer.commit()
            except ImageError as e:
                writer.discard()
                raise self.fail(f"failed to copy: {e}") from None
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                writer.discard()
                raise self.fail(f"{what}: {e or type(e).__name__}") from None
            except BaseException:
                writer.discard()
                raise


# ------------------------------------------------------------ entry point

_in_flight: dict[tuple[str, str, str, str], asyncio.Task[ImageInfo]] = {}


def _default_platform() -> tuple[str, str]:
    return ("linux", host_architecture())


async def _pull(store: ImageStore, ref: reference.Reference, registries: Registries,
                credentials: Sequence[Credential], platform: tuple[str, str]) -> ImageInfo:
    async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
        puller = _Puller(store, ref, registries=registries, credentials=credentials,
                         platform=platform, session=session)
        return await puller.run()


async def pull_image(store: ImageStore, ref: str, *, registries: Registries,
                     credentials: Sequence[Credential] = (),
                     platform: tuple[str, str] | None = None) -> ImageInfo:
    """Pull `ref` (e.g. `busybox:1.28`, `quay.io/x/y@sha256:…`) into `store` for
    `platform` (os, architecture; default this machine's). Raises PullError."""
    try:
        parsed = reference.parse(ref)
    except reference.InvalidReference as e:
        raise PullError(f'failed to pull and unpack image "{ref}": {e}') from None
    platform = platform or _default_platform()
    key = (str(store.root), str(parsed), *platform)
    task = _in_flight.get(key)
    if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
        task = asyncio.create_task(_pull(store, parsed, registries, list(credentials),
                                         platform))
        _in_flight[key] = task

        def forget(done: asyncio.Task[ImageInfo], key: tuple[str, str, str, str] = key) -> None:
            if _in_flight.get(key) is done:
                del _in_flight[key]
            if not done.cancelled():
                done.exception()  # retrieved: every caller may have gone

        task.add_done_callback(forget)
    return await asyncio.shield(task)
