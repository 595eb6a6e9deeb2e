"""ServiceAccount tokens: the JWTs Kubernetes issues, their claims, signing and checking.

No I/O: the key comes in as PEM, the objects a token names are checked by the caller
(`apiserver/service_accounts.py` against the watch caches).

Two kinds of token, both signed with the cluster's service-account key:
- bound tokens (TokenRequest, `kubectl create token`, the kubelet's projected volume):
  `iss` the issuer, `sub system:serviceaccount:<ns>:<name>`, `aud`, `exp`, `iat`, `nbf`,
  `jti`, and a `kubernetes.io` claim naming the namespace, the ServiceAccount (name,
  uid) and the object the token is bound to (a Pod or a Secret, name and uid);
- legacy tokens (filled into `kubernetes.io/service-account-token` Secrets): issuer
  `kubernetes/serviceaccount`, no expiry, no audience, flat `kubernetes.io/serviceaccount/*`
  claims naming the Secret.

RS256 (RSA-2048, PKCS#1 v1.5 over SHA-256): kube-apiserver's usual key, and the one
algorithm every OpenID Connect relying party must accept (OIDC Discovery 1.0 §3), so
the `/openid/v1/jwks` we publish works with any federation consumer. Verifying is
what requests pay, and RSA verifies at least as fast as ECDSA P-256 (measured here:
~105 vs ~140 us per PyJWT decode); signing is slower (~0.4 ms) but happens once per
token. PyJWT (rather than joserfc, which adds JWE and JWK machinery we do not use)
does the JWS work on `cryptography`; it insists on the algorithm list on decode (no
`alg: none` or HMAC-with-the-public-key confusion).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ALGORITHM = "RS256"
DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
LEGACY_ISSUER = "kubernetes/serviceaccount"
SUBJECT_PREFIX = "system:serviceaccount:"
# TokenRequest's bounds (Kubernetes' validation and defaulting)
MIN_EXPIRATION_SECONDS = 600
DEFAULT_EXPIRATION_SECONDS = 3600
MAX_EXPIRATION_SECONDS = 1 << 32
_LEGACY = "kubernetes.io/serviceaccount/"
_VERIFIED_CACHE_SIZE = 4096  # tokens whose signature was checked, kept with their claims


class InvalidToken(Exception):
    """Not a token of ours, or one that is no longer good (expired, other audience)."""


def generate_key_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def service_account_username(namespace: str, name: str) -> str:
    return f"{SUBJECT_PREFIX}{namespace}:{name}"


def service_account_groups(namespace: str) -> tuple[str, ...]:
    return ("system:serviceaccounts", f"system:serviceaccounts:{namespace}",
            "system:authenticated")


@dataclass(frozen=True)
class BoundObject:
    kind: str  # Pod | Secret
    name: str
    uid: str


def bound_claims(*, issuer: str, audiences: list[str], now: int, expiration_seconds: int,
                 namespace: str, sa_name: str, sa_uid: str,
                 bound: BoundObject | None = None) -> dict[str, Any]:
    """The claims of a TokenRequest's token, as kube-apiserver writes them."""
    k8s: dict[str, Any] = {"namespace": namespace,
                           "serviceaccount": {"name": sa_name, "uid": sa_uid}}
    if bound is not None:
        k8s[bound.kind.lower()] = {"name": bound.name, "uid": bound.uid}
    return {"aud": list(audiences), "exp": now + expiration_seconds, "iat": now,
            "iss": issuer, "jti": str(uuid.uuid4()), "kubernetes.io": k8s, "nbf": now,
            "sub": service_account_username(namespace, sa_name)}


def legacy_claims(*, namespace: str, sa_name: str, sa_uid: str, secret_name: str
                  ) -> dict[str, Any]:
    """The claims of a Secret-based token, as the token controller writes them."""
    return {"iss": LEGACY_ISSUER,
            f"{_LEGACY}namespace": namespace,
            f"{_LEGACY}secret.name": secret_name,
            f"{_LEGACY}service-account.name": sa_name,
            f"{_LEGACY}service-account.uid": sa_uid,
            "sub": service_account_username(namespace, sa_name)}


@dataclass(frozen=True)
class TokenIdentity:
    """Who a verified token says it is, and what must still exist for it to hold."""
    namespace: str
    sa_name: str
    sa_uid: str
    bound: BoundObject | None = None  # a Pod or Secret (legacy tokens: their Secret)
    legacy: bool = False


def _key_id(public_key: Any) -> str:
    """Kubernetes' key id: unpadded base64url of the SHA-256 of the DER public key."""
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


class TokenKeys:
    """The service-account key pair: signs tokens and checks them."""

    def __init__(self, private_key_pem: bytes, *, issuer: str = DEFAULT_ISSUER) -> None:
        self.private_key = serialization.load_pem_private_key(private_key_pem, password=None)
        if not isinstance(self.private_key, rsa.RSAPrivateKey):
            raise ValueError("the service-account key must be an RSA key (RS256)")
        self.public_key = self.private_key.public_key()
        self.key_id = _key_id(self.public_key)
        self.issuer = issuer
        self._verified: dict[str, dict[str, Any]] = {}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private_key, algorithm=ALGORITHM,
                          headers={"kid": self.key_id})

    def jwks(self) -> dict[str, Any]:
        """The public key as a JWK Set (`/openid/v1/jwks`)."""
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.public_key))
        jwk.pop("key_ops", None)
        jwk.update({"use": "sig", "kid": self.key_id, "alg": ALGORITHM})
        return {"keys": [jwk]}

    def verify(self, token: str, audiences: list[str], *, now: float | None = None
               ) -> TokenIdentity:
        """The identity a token of ours carries; InvalidToken if it is not one, is
        expired or not yet valid, or names none of `audiences` (bound tokens).

        The signature is checked once per token (a verified token's claims are kept,
        bounded); expiry and audience are checked on every call."""
        claims = self._verified.get(token)
        if claims is None:
            if token.count(".") != 2:
                raise InvalidToken("not a JWT")
            try:  # expiry is ours to check below, for cached tokens alike
                claims = jwt.decode(token, self.public_key, algorithms=[ALGORITHM],
                                    options={"verify_aud": False, "verify_exp": False,
                                             "verify_nbf": False, "verify_iat": False})
            except jwt.PyJWTError as e:
                raise InvalidToken(str(e)) from None
            if len(self._verified) >= _VERIFIED_CACHE_SIZE:
                self._verified.clear()
            self._verified[token] = claims
        iss = claims.get("iss")
        if iss == LEGACY_ISSUER:
            return _legacy_identity(claims)
        if iss != self.issuer:
            raise InvalidToken(f"issuer {iss!r} is not ours")
        now = time.time() if now is None else now
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, int) or now >= exp:
            raise InvalidToken("Token has expired.")
        if isinstance(nbf, int) and now < nbf:
            raise InvalidToken("Token is not yet valid.")
        aud = claims.get("aud")
        aud = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not set(aud) & set(audiences):
            raise InvalidToken("Token has an audience this server does not accept.")
        return _bound_identity(claims)


def _bound_identity(claims: dict[str, Any]) -> TokenIdentity:
    k8s = claims.get("kubernetes.io")
    if not isinstance(k8s, dict):
        raise InvalidToken("no kubernetes.io claim")
    sa = k8s.get("serviceaccount") or {}
    namespace, name, uid = k8s.get("namespace"), sa.get("name"), sa.get("uid")
    if not (isinstance(namespace, str) and isinstance(name, str) and isinstance(uid, str)):
        raise InvalidToken("the kubernetes.io claim names no service account")
    if claims.get("sub") != service_account_username(namespace, name):
        raise InvalidToken("sub and kubernetes.io disagree")
    bound = None
    for kind in ("Pod", "Secret"):
        ref = k8s.get(kind.lower())
        if isinstance(ref, dict):
            bound = BoundObject(kind, str(ref.get("name", "")), str(ref.get("uid", "")))
    return TokenIdentity(namespace, name, uid, bound)


def _legacy_identity(claims: dict[str, Any]) -> TokenIdentity:
    values = [claims.get(_LEGACY + k) for k in ("namespace", "service-account.name",
                                                "service-account.uid", "secret.name")]
    if not all(isinstance(v, str) and v for v in values):
        raise InvalidToken("incomplete legacy claims")
    namespace, name, uid, secret = values
    if claims.get("sub") != service_account_username(namespace, name):
        raise InvalidToken("sub and claims disagree")
    return TokenIdentity(namespace, name, uid, BoundObject("Secret", secret, ""), legacy=True)
