"""ServiceAccount JWTs: the claims Kubernetes writes, signature, expiry and audience checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pinnace.api import service_account_tokens as sat


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def keys() -> sat.TokenKeys:
    return sat.TokenKeys(sat.generate_key_pem())


def issue(keys: sat.TokenKeys, *, now: int, seconds: int = 600,
          audiences: list[str] | None = None, bound: sat.BoundObject | None = None) -> str:
    return keys.sign(sat.bound_claims(
        issuer=keys.issuer, audiences=audiences or [keys.issuer], now=now,
        expiration_seconds=seconds, namespace="ns", sa_name="robot", sa_uid="sa-uid",
        bound=bound))


def test_claims_are_kubernetes_own(keys: sat.TokenKeys) -> None:
    now = int(time.time())
    token = issue(keys, now=now, bound=sat.BoundObject("Pod", "p", "pod-uid"))
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256" and header["kid"] == keys.key_id
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == "https://kubernetes.default.svc.cluster.local"
    assert claims["sub"] == "system:serviceaccount:ns:robot"
    assert claims["aud"] == [keys.issuer]
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (now, now, now + 600)
    assert claims["kubernetes.io"] == {"namespace": "ns",
                                       "serviceaccount": {"name": "robot", "uid": "sa-uid"},
                                       "pod": {"name": "p", "uid": "pod-uid"}}
    assert keys.verify(token, [keys.issuer]) == sat.TokenIdentity(
        "ns", "robot", "sa-uid", sat.BoundObject("Pod", "p", "pod-uid"))


def test_expired_not_yet_valid_and_other_audiences_are_refused(keys: sat.TokenKeys) -> None:
    now = int(time.time())
    token = issue(keys, now=now, seconds=600)
    assert keys.verify(token, [keys.issuer], now=now + 599).sa_name == "robot"
    with pytest.raises(sat.InvalidToken, match="expired"):
        keys.verify(token, [keys.issuer], now=now + 600)
    with pytest.raises(sat.InvalidToken, match="not yet valid"):
        keys.verify(token, [keys.issuer], now=now - 5)
    with pytest.raises(sat.InvalidToken, match="audience"):
        keys.verify(token, ["https://elsewhere"])
    other = issue(keys, now=now, audiences=["vault", keys.issuer])
    assert keys.verify(other, [keys.issuer]).namespace == "ns"


def test_forged_and_foreign_tokens_are_refused(keys: sat.TokenKeys) -> None:
    now = int(time.time())
    token = issue(keys, now=now)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["kubernetes.io"]["serviceaccount"]["name"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(sat.InvalidToken):
        keys.verify(f"{header}.{forged}.{signature}", [keys.issuer])
    # another key's token, an HMAC token keyed with our public key, alg none
    stranger = sat.TokenKeys(sat.generate_key_pem())
    with pytest.raises(sat.InvalidToken):
        keys.verify(issue(stranger, now=now), [keys.issuer])
    public_pem = keys.public_key.public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = (_b64url(b'{"alg":"HS256","typ":"JWT"}') + "." + token.split(".")[1])
    hs = signing_input + "." + _b64url(hmac.new(public_pem, signing_input.encode(),
                                                hashlib.sha256).digest())
    claims = jwt.decode(token, options={"verify_signature": False})
    for bad in (hs, jwt.encode(claims, None, algorithm="none"), "static-token", "a.b.c"):
        with pytest.raises(sat.InvalidToken):
            keys.verify(bad, [keys.issuer])
    # an ECDSA key is not a service-account key of ours
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    with pytest.raises(ValueError, match="RSA"):
        sat.TokenKeys(ec_pem)


def test_legacy_tokens(keys: sat.TokenKeys) -> None:
    token = keys.sign(sat.legacy_claims(namespace="ns", sa_name="robot", sa_uid="sa-uid",
                                        secret_name="robot-token"))
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims == {
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": "ns",
        "kubernetes.io/serviceaccount/secret.name": "robot-token",
        "kubernetes.io/serviceaccount/service-account.name": "robot",
        "kubernetes.io/serviceaccount/service-account.uid": "sa-uid",
        "sub": "system:serviceaccount:ns:robot"}
    ident = keys.verify(token, [keys.issuer])
    assert ident.legacy and ident.bound == sat.BoundObject("Secret", "robot-token", "")


def test_jwks_publishes_the_verifying_key(keys: sat.TokenKeys) -> None:
    [jwk] = keys.jwks()["keys"]
    assert {jwk["kty"], jwk["alg"], jwk["use"], jwk["kid"]} == {"RSA", "RS256", "sig",
                                                                keys.key_id}
    token = issue(keys, now=int(time.time()))
    assert jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=["RS256"],
                      audience=keys.issuer)["sub"] == "system:serviceaccount:ns:robot"
