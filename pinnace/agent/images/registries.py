"""Registry mirrors and per-registry settings from `DATA_DIR/registries.yaml` (k3s' format).

    mirrors:
      docker.io:                           # a registry host, or "*" for every other one
        endpoint: ["http://127.0.0.1:5000"]
        rewrite: {"^rancher/(.*)": "mirror/rancher/$1"}   # repository path, Go regexp syntax
    configs:
      "127.0.0.1:5000":                    # an endpoint's host[:port] (or a registry name, "*")
        auth: {username: u, password: p}   # or auth: base64("u:p"), or identitytoken
        tls: {ca_file: …, cert_file: …, key_file: …, insecure_skip_verify: false}

As in containerd under k3s: a pull tries the registry's mirror endpoints in order, then the
registry itself (its "default endpoint", docker.io's being https://registry-1.docker.io),
which takes no rewrites. `"*"` applies to registries without an entry of their own. An
endpoint URL without a path gets the API root `/v2`; one with a path is used as written
(containerd's override_path). A missing file means no mirrors.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from pinnace.agent.images.errors import ImageError

FILE_NAME = "registries.yaml"
DOCKER_HUB = "docker.io"
DOCKER_HUB_ENDPOINT = "https://registry-1.docker.io"
WILDCARD = "*"


class RegistriesConfigError(ImageError):
    """registries.yaml cannot be read or says something impossible; names file and key."""


@dataclass(frozen=True)
class Auth:
    username: str = ""
    password: str = ""
    identity_token: str = ""


@dataclass(frozen=True)
class TLSConfig:
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    insecure_skip_verify: bool = False

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file or None)
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file or None)
        if self.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


@dataclass(frozen=True)
class Endpoint:
    """One place to pull a registry's images from."""

    url: str  # the API root, e.g. "http://127.0.0.1:5000/v2"
    host: str  # host[:port] of the URL, which `configs` and credentials are matched by
    mirror: bool  # False for the registry's own (default) endpoint
    rewrites: tuple[tuple[re.Pattern[str], str], ...] = ()
    auth: Auth | None = None
    tls: TLSConfig | None = None

    def repository(self, path: str) -> str:
        """The repository path to ask this endpoint for (the first matching rewrite)."""
        for pattern, replacement in self.rewrites:
            if pattern.search(path):
                return pattern.sub(replacement, path, count=1)
        return path


@dataclass(frozen=True)
class _Mirror:
    endpoints: tuple[str, ...]
    rewrites: tuple[tuple[re.Pattern[str], str], ...]


@dataclass
class Registries:
    mirrors: dict[str, _Mirror] = field(default_factory=dict)
    configs: dict[str, tuple[Auth | None, TLSConfig | None]] = field(default_factory=dict)

    def endpoints(self, registry_host: str) -> list[Endpoint]:
        """Where to pull `registry_host`'s images from: its mirrors in order, then itself."""
        mirror = self.mirrors.get(registry_host) or self.mirrors.get(WILDCARD)
        result = []
        for url in mirror.endpoints if mirror else ():
            result.append(self._endpoint(url, mirror=True, rewrites=mirror.rewrites,
                                         names=()))
        upstream = DOCKER_HUB_ENDPOINT if registry_host == DOCKER_HUB else _default_url(
            registry_host)
        if not any(e.url == _api_root(upstream) for e in result):
            result.append(self._endpoint(upstream, mirror=False, rewrites=(),
                                         names=(registry_host,)))
        return result

    def _endpoint(self, url: str, *, mirror: bool, rewrites: tuple[Any, ...],
                  names: tuple[str, ...]) -> Endpoint:
        host = urlsplit(url).netloc
        auth, tls = None, None
        for key in (host, *names, WILDCARD):
            if key in self.configs:
                auth, tls = self.configs[key]
                break
        return Endpoint(url=_api_root(url), host=host, mirror=mirror, rewrites=rewrites,
                        auth=auth, tls=tls)


def _default_url(registry_host: str) -> str:
    # containerd talks plain HTTP to localhost registries by default, HTTPS elsewhere
    local = registry_host.split(":")[0] in ("localhost", "127.0.0.1", "::1")
    return f"{'http' if local else 'https'}://{registry_host}"


def _api_root(url: str) -> str:
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{path or '/v2'}"


def _go_replacement(replacement: str) -> str:
    """Go's `$1`/`${1}`/`${name}` → Python's `\\g<…>`; backslashes stay literal."""
    replacement = replacement.replace("\\", "\\\\")
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: rf"\g<{m.group(1) or m.group(2)}>",
                  replacement)


def _mapping(value: Any, where: str, file: Path) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RegistriesConfigError(f"{file}: {where} must be a mapping, not "
                                    f"{type(value).__name__}")
    return value


def _string(value: Any, where: str, file: Path) -> str:
    if value is None:
        return ""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise RegistriesConfigError(f"{file}: {where} must be a string")
    return str(value)


def _parse_mirror(name: str, spec: Any, file: Path) -> _Mirror:
    spec = _mapping(spec, f"mirrors.{name}", file)
    endpoints = spec.get("endpoint") or []
    if isinstance(endpoints, str):
        endpoints = [endpoints]
    if not isinstance(endpoints, list):
        raise RegistriesConfigError(f"{file}: mirrors.{name}.endpoint must be a list of URLs")
    for i, url in enumerate(endpoints):
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise RegistriesConfigError(f"{file}: mirrors.{name}.endpoint[{i}]: {url!r} is not "
                                        "an http:// or https:// URL")
    rewrites = []
    for pattern, replacement in _mapping(spec.get("rewrite"), f"mirrors.{name}.rewrite",
                                         file).items():
        try:
            compiled = re.compile(str(pattern))
        except re.error as e:
            raise RegistriesConfigError(f"{file}: mirrors.{name}.rewrite: bad regular "
                                        f"expression {pattern!r}: {e}") from None
        where = f"mirrors.{name}.rewrite[{pattern!r}]"
        rewrites.append((compiled, _go_replacement(_string(replacement, where, file))))
    return _Mirror(tuple(endpoints), tuple(rewrites))


def _parse_config(name: str, spec: Any, file: Path) -> tuple[Auth | None, TLSConfig | None]:
    spec = _mapping(spec, f"configs.{name}", file)
    auth = tls = None
    if spec.get("auth") is not None:
        where = f"configs.{name}.auth"
        a = _mapping(spec["auth"], where, file)
        username = _string(a.get("username"), f"{where}.username", file)
        password = _string(a.get("password"), f"{where}.password", file)
        encoded = _string(a.get("auth"), f"{where}.auth", file)
        if encoded and not username:
            try:
                username, _, password = base64.b64decode(encoded, validate=True).decode() \
                    .partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise RegistriesConfigError(f"{file}: {where}.auth is not base64 of "
                                            "user:password") from None
        auth = Auth(username, password,
                    _string(a.get("identitytoken"), f"{where}.identitytoken", file))
    if spec.get("tls") is not None:
        where = f"configs.{name}.tls"
        t = _mapping(spec["tls"], where, file)
        skip = t.get("insecure_skip_verify", False)
        if not isinstance(skip, bool):
            raise RegistriesConfigError(f"{file}: {where}.insecure_skip_verify must be true "
                                        "or false")
        tls = TLSConfig(ca_file=_string(t.get("ca_file"), f"{where}.ca_file", file),
                        cert_file=_string(t.get("cert_file"), f"{where}.cert_file", file),
                        key_file=_string(t.get("key_file"), f"{where}.key_file", file),
                        insecure_skip_verify=skip)
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(tls, key)
            if path and not os.path.exists(path):
                raise RegistriesConfigError(f"{file}: {where}.{key}: no such file {path}")
    return auth, tls


def parse_registries(text: str, file: Path) -> Registries:
    """Parse registries.yaml's text (`file` names it in errors)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise RegistriesConfigError(f"{file}: not valid YAML: {e}") from None
    doc = _mapping(doc, "the document", file)
    unknown = set(doc) - {"mirrors", "configs"}
    if unknown:
        raise RegistriesConfigError(f"{file}: unknown key {sorted(unknown)[0]!r} (expected "
                                    "mirrors, configs)")
    registries = Registries()
    for name, spec in _mapping(doc.get("mirrors"), "mirrors", file).items():
        registries.mirrors[str(name)] = _parse_mirror(str(name), spec, file)
    for name, spec in _mapping(doc.get("configs"), "configs", file).items():
        registries.configs[str(name)] = _parse_config(str(name), spec, file)
    return registries


def load_registries(data_dir: str | os.PathLike[str]) -> Registries:
    """The mirrors and configs of `DATA_DIR/registries.yaml`; none when it does not exist."""
    file = Path(data_dir) / FILE_NAME
    try:
        text = file.read_text()
    except FileNotFoundError:
        return Registries()
    except OSError as e:
        raise RegistriesConfigError(f"{file}: {e.strerror}") from None
    return parse_registries(text, file)
