"""Join tokens in k3s' format and the bootstrap-token Secrets behind `pinnace token`."""

from __future__ import annotations

import datetime
import hashlib

import pytest

from pinnace.api import join_tokens as jt

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def test_a_token_pins_the_sha256_of_the_ca_pem() -> None:
    pem = b"-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n"
    token = jt.JoinToken(jt.ca_hash(pem), "server:s3cret")
    assert str(token) == f"K10{hashlib.sha256(pem).hexdigest()}::server:s3cret"
    assert jt.parse(str(token) + "\n") == token


@pytest.mark.parametrize("bad", ["s3cret", "K10abc::server:x", f"K10{'0' * 64}::",
                                 f"K10{'G' * 64}::server:x", f"{'0' * 64}::server:x"])
def test_malformed_tokens_are_refused(bad: str) -> None:
    with pytest.raises(jt.TokenFormatError, match="K10<CA hash>::<credentials>"):
        jt.parse(bad)


def test_bootstrap_tokens_look_like_kubeadms() -> None:
    token_id, secret = jt.new_bootstrap_token()
    assert jt.split_bootstrap(f"{token_id}.{secret}") == (token_id, secret)
    assert jt.split_bootstrap("server:abc") is None
    assert jt.split_bootstrap("ABCDEF.0123456789abcdef") is None


def test_a_bootstrap_secret_is_valid_until_it_expires() -> None:
    secret = jt.bootstrap_secret("abcdef", "0123456789abcdef", ttl=3600, description="n2",
                                 now=NOW)
    assert secret["type"] == "bootstrap.kubernetes.io/token"
    assert secret["metadata"] == {"name": "bootstrap-token-abcdef",
                                  "namespace": "kube-system"}
    assert jt.secret_field(secret, "expiration") == "2026-01-01T01:00:00Z"
    assert jt.secret_field(secret, "description") == "n2"
    assert jt.bootstrap_valid(secret, "abcdef", "0123456789abcdef", now=NOW)
    assert not jt.bootstrap_valid(secret, "abcdef", "0123456789abcdeX", now=NOW)
    assert not jt.bootstrap_valid(secret, "abcdef", "0123456789abcdef",
                                  now=NOW + datetime.timedelta(hours=2))
    forever = jt.bootstrap_secret("abcdef", "0123456789abcdef", ttl=None, description="",
                                  now=NOW)
    assert jt.bootstrap_valid(forever, "abcdef", "0123456789abcdef",
                              now=NOW + datetime.timedelta(days=3650))


def test_node_tokens_name_their_node() -> None:
    token = jt.node_token("worker.example.com", "a-b_c")
    assert jt.split_node_token(token) == ("worker.example.com", "a-b_c")
    for other in ("server:secret", "abcdef.0123456789abcdef", "node.", "node.x", "node..s",
                  "node.x."):
        assert jt.split_node_token(other) is None
