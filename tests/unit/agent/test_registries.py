"""registries.yaml (k3s' format) → endpoints to pull from; pull secrets → credentials."""

from __future__ import annotations

import base64
import json
import ssl
from pathlib import Path

import pytest

from pinnace.agent.images import (
    Credential,
    Registries,
    RegistriesConfigError,
    credentials_from_pull_secrets,
    load_registries,
)


def _load(tmp_path: Path, text: str) -> Registries:
    (tmp_path / "registries.yaml").write_text(text)
    return load_registries(tmp_path)


def _urls(registries: Registries, host: str) -> list[str]:
    return [e.url for e in registries.endpoints(host)]


# ------------------------------------------------------------ mirrors


def test_missing_file_means_no_mirrors(tmp_path: Path) -> None:
    registries = load_registries(tmp_path)
    assert _urls(registries, "docker.io") == ["https://registry-1.docker.io/v2"]
    assert _urls(registries, "quay.io") == ["https://quay.io/v2"]
    assert _urls(registries, "localhost:5000") == ["http://localhost:5000/v2"]


def test_mirrors_in_order_then_the_registry_itself(tmp_path: Path) -> None:
    registries = _load(tmp_path, """
mirrors:
  docker.io:
    endpoint:
      - "http://127.0.0.1:5000"
      - "https://mirror.example.com/v2/dockerhub/"
""")
    endpoints = registries.endpoints("docker.io")
    assert [e.url for e in endpoints] == ["http://127.0.0.1:5000/v2",
                                          "https://mirror.example.com/v2/dockerhub",
                                          "https://registry-1.docker.io/v2"]
    assert [e.mirror for e in endpoints] == [True, True, False]
    assert [e.host for e in endpoints] == ["127.0.0.1:5000", "mirror.example.com",
                                           "registry-1.docker.io"]
    assert _urls(registries, "quay.io") == ["https://quay.io/v2"]


def test_wildcard_mirror_serves_registries_without_their_own(tmp_path: Path) -> None:
    registries = _load(tmp_path, """
mirrors:
  "*":
    endpoint: ["http://127.0.0.1:5000"]
  quay.io:
    endpoint: ["https://quay-mirror.example.com"]
""")
    assert _urls(registries, "docker.io") == ["http://127.0.0.1:5000/v2",
                                              "https://registry-1.docker.io/v2"]
    assert _urls(registries, "quay.io") == ["https://quay-mirror.example.com/v2",
                                            "https://quay.io/v2"]


def test_rewrites_apply_to_mirrors_only(tmp_path: Path) -> None:
    registries = _load(tmp_path, """
mirrors:
  docker.io:
    endpoint: ["https://registry.example.com:5000"]
    rewrite:
      "^rancher/(.*)": "mirrorproject/rancher-images/$1"
""")
    mirror, upstream = registries.endpoints("docker.io")
    assert mirror.repository("rancher/coredns") == "mirrorproject/rancher-images/coredns"
    assert mirror.repository("library/busybox") == "library/busybox"
    assert upstream.repository("rancher/coredns") == "rancher/coredns"


def test_configs_attach_auth_and_tls_to_endpoints(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    encoded = base64.b64encode(b"bob:pa:ss").decode()
    registries = _load(tmp_path, f"""
mirrors:
  docker.io:
    endpoint: ["https://registry.example.com:5000"]
configs:
  "registry.example.com:5000":
    auth: {{username: alice, password: s3cret}}
    tls: {{insecure_skip_verify: true}}
  docker.io:
    auth: {{auth: "{encoded}"}}
  quay.io:
    auth: {{identitytoken: tok}}
    tls: {{ca_file: "{ca}"}}
""")
    mirror, upstream = registries.endpoints("docker.io")
    assert (mirror.auth.username, mirror.auth.password) == ("alice", "s3cret")
    assert mirror.tls.ssl_context().verify_mode == ssl.CERT_NONE
    assert (upstream.auth.username, upstream.auth.password) == ("bob", "pa:ss")
    (quay,) = registries.endpoints("quay.io")
    assert quay.auth.identity_token == "tok" and quay.tls.ca_file == str(ca)


@pytest.mark.parametrize(("text", "says"), [
    ("mirrors: [docker.io]", "mirrors must be a mapping"),
    ("mirrors:\n  docker.io:\n    endpoint: [127.0.0.1:5000]",
     "mirrors.docker.io.endpoint[0]: '127.0.0.1:5000' is not an http:// or https:// URL"),
    ("mirrors:\n  docker.io:\n    endpoint: http://x\n    rewrite: {'(': x}",
     "mirrors.docker.io.rewrite: bad regular expression '('"),
    ("configs:\n  r.io:\n    tls: {insecure_skip_verify: yes please}",
     "configs.r.io.tls.insecure_skip_verify must be true or false"),
    ("configs:\n  r.io:\n    tls: {ca_file: /nonexistent/ca.pem}",
     "configs.r.io.tls.ca_file: no such file /nonexistent/ca.pem"),
    ("configs:\n  r.io:\n    auth: {auth: '%%%'}", "configs.r.io.auth.auth is not base64"),
    ("mirror:\n  docker.io: {}", "unknown key 'mirror'"),
    ("mirrors: {docker.io: [", "not valid YAML"),
])
def test_errors_name_the_file_and_the_key(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(RegistriesConfigError) as e:
        _load(tmp_path, text)
    assert str(e.value).startswith(f"{tmp_path / 'registries.yaml'}: ")
    assert says in str(e.value)


def test_empty_file_means_no_mirrors(tmp_path: Path) -> None:
    assert _urls(_load(tmp_path, ""), "docker.io") == ["https://registry-1.docker.io/v2"]


# ------------------------------------------------------------ pull secrets


def _secret(kind: str, field: str, doc: dict) -> dict:
    return {"type": kind, "data": {field: base64.b64encode(json.dumps(doc).encode()).decode()}}


def test_dockerconfigjson_secret() -> None:
    auth = base64.b64encode(b"alice:s3cret").decode()
    secret = _secret("kubernetes.io/dockerconfigjson", ".dockerconfigjson", {"auths": {
        "https://index.docker.io/v1/": {"auth": auth},
        "registry.example.com:5000": {"username": "bob", "password": "pw"},
        "quay.io/team": {"username": "carol", "password": "pw2"},
    }})
    hub, example, quay = credentials_from_pull_secrets([secret])
    assert hub == Credential("docker.io", "alice", "s3cret")
    for alias in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        assert hub.matches(alias, "library/busybox")
    assert example.matches("registry.example.com:5000") and not example.matches(
        "registry.example.com")
    assert quay.matches("quay.io", "team/app") and not quay.matches("quay.io", "other/app")


def test_dockercfg_secret_and_globs() -> None:
    secret = _secret("kubernetes.io/dockercfg", ".dockercfg", {
        "*.example.com": {"username": "dave", "password": "pw", "email": "d@example.com"},
        "docker.io": {"username": "erin", "password": "pw"},
    })
    glob, hub = credentials_from_pull_secrets([secret])
    assert glob.matches("registry.example.com") and not glob.matches("a.b.example.com")
    assert hub.matches("registry-1.docker.io") and hub.username == "erin"


def test_other_and_malformed_secrets_are_skipped() -> None:
    good = _secret("kubernetes.io/dockerconfigjson", ".dockerconfigjson",
                   {"auths": {"r.io": {"username": "u", "password": "p"}}})
    secrets = [
        {"type": "Opaque", "data": {"password": "cHc="}},
        {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "!!"}},
        _secret("kubernetes.io/dockerconfigjson", ".dockerconfigjson", {"auths": []}),
        _secret("kubernetes.io/dockerconfigjson", ".dockerconfigjson",
                {"auths": {"r.io": {"auth": "%%%"}}}),
        good,
    ]
    assert credentials_from_pull_secrets(secrets) == [Credential("r.io", "u", "p")]
