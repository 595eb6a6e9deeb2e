"""ServiceAccount tokens on the server: TokenRequest, authentication, OIDC discovery.

- `create_token` serves `POST …/serviceaccounts/<name>/token` (authentication.k8s.io/v1
  TokenRequest): audiences (default: the API's), expirationSeconds (at least 600,
  default 3600, capped by `max_expiration` like kube-apiserver's
  `--service-account-max-token-expiration`), boundObjectRef to a Pod or Secret whose
  uid, when given, must match. The token is a JWT (`api/service_account_tokens.py`).
- `authenticate` turns a token of ours into the user `system:serviceaccount:<ns>:<name>`
  in `system:serviceaccounts`, `system:serviceaccounts:<ns>` and `system:authenticated`,
  uid the ServiceAccount's. It holds only while what the token names still exists with
  the same uid — the ServiceAccount, the Pod or Secret it is bound to, and for a legacy
  token its Secret still holding it. Those are looked up in the watch caches (a dict
  read each), so revocation is immediate and costs no store read.
- `openid_configuration` and `jwks` are the issuer's discovery document and keys
  (`/.well-known/openid-configuration`, `/openid/v1/jwks`), readable by every
  ServiceAccount through `system:service-account-issuer-discovery`.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from pinnace.api import errors
from pinnace.api import service_account_tokens as sat
from pinnace.api.timestamps import format_time
from pinnace.apiserver.auth import User
from pinnace.apiserver.registry import ObjectRegistry

GROUP = "authentication.k8s.io"
LEGACY_TOKEN_TYPE = "kubernetes.io/service-account-token"


class ServiceAccountTokens:
    def __init__(self, registry: ObjectRegistry, keys: sat.TokenKeys, *,
                 api_audiences: list[str] | None = None,
                 max_expiration: int | None = None) -> None:
        self.registry = registry
        self.keys = keys
        # kube-apiserver's --api-audiences: default, the issuer
        self.api_audiences = list(api_audiences or [keys.issuer])
        self.max_expiration = max_expiration
        kinds = registry.kinds
        self._accounts = registry.cache(_rt(kinds.by_kind("", "v1", "ServiceAccount")))
        self._bound = {kind: registry.cache(_rt(kinds.by_kind("", "v1", kind)))
                       for kind in ("Pod", "Secret")}

    # -- TokenRequest ------------------------------------------------------------------

    def create_token(self, namespace: str, name: str, body: Any) -> dict[str, Any]:
        """The TokenRequest answer, token included (nothing is stored)."""
        if not isinstance(body, dict):
            raise errors.bad_request("TokenRequest must be an object")
        spec = body.get("spec") or {}
        if not isinstance(spec, dict):
            raise errors.bad_request("TokenRequest spec must be an object")
        audiences = spec.get("audiences") or list(self.api_audiences)
        if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
            raise _invalid(name, "spec.audiences", f"Invalid value: {audiences!r}: must be a "
                           "list of strings")
        seconds = spec.get("expirationSeconds")
        if seconds is None:
            seconds = sat.DEFAULT_EXPIRATION_SECONDS
        if not isinstance(seconds, int) or isinstance(seconds, bool):
            raise _invalid(name, "spec.expirationSeconds", f"Invalid value: {seconds!r}: "
                           "must be an integer")
        if seconds < sat.MIN_EXPIRATION_SECONDS:
            raise _invalid(name, "spec.expirationSeconds", f"Invalid value: {seconds}: may "
                           "not specify a duration less than 10 minutes")
        if seconds > sat.MAX_EXPIRATION_SECONDS:
            raise _invalid(name, "spec.expirationSeconds", f"Invalid value: {seconds}: may "
                           "not specify a duration larger than 2^32 seconds")
        sa = self._accounts.get(namespace, name)
        if sa is None:
            raise errors.not_found("serviceaccounts", name)
        bound, ref = self._bound_object(namespace, name, spec.get("boundObjectRef"))
        if self.max_expiration is not None:
            seconds = min(seconds, self.max_expiration)
        now = int(time.time())
        token = self.keys.sign(sat.bound_claims(
            issuer=self.keys.issuer, audiences=audiences, now=now,
            expiration_seconds=seconds, namespace=namespace, sa_name=name,
            sa_uid=sa["metadata"]["uid"], bound=bound))
        out_spec: dict[str, Any] = {"audiences": audiences, "expirationSeconds": seconds,
                                    "boundObjectRef": ref}
        return {"kind": "TokenRequest", "apiVersion": f"{GROUP}/v1",
                "metadata": {"name": name, "namespace": namespace,
                             "creationTimestamp": format_time(now)},
                "spec": out_spec,
                "status": {"token": token, "expirationTimestamp": format_time(now + seconds)}}

    def _bound_object(self, namespace: str, sa_name: str, ref: Any
                      ) -> tuple[sat.BoundObject | None, dict[str, Any] | None]:
        if not ref:
            return None, None
        if not isinstance(ref, dict):
            raise errors.bad_request("spec.boundObjectRef must be an object")
        kind, name = ref.get("kind") or "", ref.get("name") or ""
        if kind not in self._bound or ref.get("apiVersion", "v1") not in ("v1", ""):
            raise errors.bad_request(f'cannot bind token for serviceaccount "{sa_name}" to '
                                     f'object of kind "{ref.get("apiVersion", "")}, '
                                     f'Kind={kind}"')
        if not name:
            raise _invalid(sa_name, "spec.boundObjectRef.name", "Required value")
        obj = self._bound[kind].get(namespace, name)
        if obj is None:
            raise errors.not_found(kind.lower() + "s", name)
        uid = obj["metadata"]["uid"]
        if ref.get("uid") and ref["uid"] != uid:
            raise errors.conflict(kind, name, f"the UID in the bound object reference "
                                  f"({ref['uid']}) does not match the UID in record. The "
                                  "object might have been deleted and then recreated")
        return (sat.BoundObject(kind, name, uid),
                {"kind": kind, "apiVersion": "v1", "name": name, "uid": uid})

    # -- authentication ----------------------------------------------------------------

    def authenticate(self, token: str) -> User | None:
        """The ServiceAccount user of a valid token of ours; None for anything else."""
        try:
            ident = self.keys.verify(token, self.api_audiences)
        except sat.InvalidToken:
            return None
        sa = self._accounts.get(ident.namespace, ident.sa_name)
        if sa is None or sa["metadata"].get("uid") != ident.sa_uid or \
                sa["metadata"].get("deletionTimestamp"):
            return None
        if ident.bound is not None:
            obj = self._bound[ident.bound.kind].get(ident.namespace, ident.bound.name)
            if obj is None:
                return None
            if ident.legacy:  # the Secret must still hold this very token
                if obj.get("type") != LEGACY_TOKEN_TYPE or \
                        (obj.get("data") or {}).get("token") != \
                        base64.b64encode(token.encode()).decode():
                    return None
            elif obj["metadata"].get("uid") != ident.bound.uid:
                return None
        return User(sat.service_account_username(ident.namespace, ident.sa_name),
                    sat.service_account_groups(ident.namespace), ident.sa_uid)

    # -- OIDC discovery ----------------------------------------------------------------

    def openid_configuration(self) -> dict[str, Any]:
        return {"issuer": self.keys.issuer,
                "jwks_uri": self.keys.issuer.rstrip("/") + "/openid/v1/jwks",
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": [sat.ALGORITHM]}

    def jwks(self) -> dict[str, Any]:
        return self.keys.jwks()


def _rt(rt: Any) -> Any:
    assert rt is not None
    return rt


def _invalid(name: str, field: str, message: str) -> errors.ApiError:
    return errors.invalid("TokenRequest", name, [errors.Cause(field, message)], GROUP)
