"""Token controller: fills legacy `kubernetes.io/service-account-token` Secrets.

Kubernetes' tokens controller, for the Secrets users still create by hand:

    type: kubernetes.io/service-account-token
    metadata.annotations: {kubernetes.io/service-account.name: <sa>}

gets `data.token` (a non-expiring JWT with the legacy claims, signed with the
cluster's service-account key: kube-controller-manager's
`--service-account-private-key-file`), `data.ca.crt` (`--root-ca-file`),
`data.namespace`, and the annotation `kubernetes.io/service-account.uid`. A Secret
whose ServiceAccount is gone, or is another one of the same name (uid differs), is
deleted. The API server accepts such a token only while the Secret holds it and the
ServiceAccount is the one it names (`apiserver/service_accounts.py`).

Watches those Secrets (key `namespace/name`) and ServiceAccounts (a deleted or
recreated one queues its Secrets).
"""

from __future__ import annotations

import base64

from pinnace.api import errors
from pinnace.api import service_account_tokens as sat
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.factory import InformerFactory
from pinnace.controllers.base import Controller

TOKEN_TYPE = "kubernetes.io/service-account-token"
NAME_ANNOTATION = "kubernetes.io/service-account.name"
UID_ANNOTATION = "kubernetes.io/service-account.uid"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class TokensController(Controller):
    name = "serviceaccount-token"

    def __init__(self, client: Client, factory: InformerFactory, *, keys: sat.TokenKeys,
                 root_ca: bytes) -> None:
        super().__init__(client, factory)
        self.keys = keys
        self.root_ca = root_ca.decode()
        self.secret_rt = client.resource("v1", "Secret")
        self.secrets = factory.informer("v1", "Secret")
        self.secrets.add_handler(on_add=self._on_secret,
                                 on_update=lambda _old, new: self._on_secret(new))
        self.accounts = factory.informer("v1", "ServiceAccount")
        self.accounts.add_handler(on_add=self._on_account,
                                  on_update=lambda _old, new: self._on_account(new),
                                  on_delete=self._on_account)

    def _on_secret(self, secret: Obj) -> None:
        if secret.get("type") == TOKEN_TYPE:
            self.enqueue(secret)

    def _on_account(self, sa: Obj) -> None:
        namespace, name = sa["metadata"]["namespace"], sa["metadata"]["name"]
        for secret in self.secrets.list(namespace):
            if secret.get("type") == TOKEN_TYPE and \
                    (secret["metadata"].get("annotations") or {}).get(NAME_ANNOTATION) == name:
                self.enqueue(secret)

    async def reconcile(self, key: str) -> None:
        secret = self.secrets.get(key)
        if secret is None or secret.get("type") != TOKEN_TYPE or \
                secret["metadata"].get("deletionTimestamp"):
            return
        meta = secret["metadata"]
        annotations = meta.get("annotations") or {}
        sa_name = annotations.get(NAME_ANNOTATION, "")
        sa = self.accounts.get_by_name(sa_name, meta["namespace"]) if sa_name else None
        wanted_uid = annotations.get(UID_ANNOTATION)
        if sa is None or (wanted_uid and wanted_uid != sa["metadata"]["uid"]):
            await self._delete(secret)
            return
        data = dict(secret.get("data") or {})
        if data.get("token") and wanted_uid and data.get("ca.crt") and data.get("namespace"):
            return
        if not data.get("token"):
            data["token"] = _b64(self.keys.sign(sat.legacy_claims(
                namespace=meta["namespace"], sa_name=sa_name, sa_uid=sa["metadata"]["uid"],
                secret_name=meta["name"])))
        data.setdefault("ca.crt", _b64(self.root_ca))
        data.setdefault("namespace", _b64(meta["namespace"]))
        new = {**secret, "data": data, "metadata": {
            **meta, "annotations": {**annotations, UID_ANNOTATION: sa["metadata"]["uid"]}}}
        try:
            await self.client.update(self.secret_rt, new)
        except errors.ApiError as e:
            if e.code not in (404, 409):  # gone, or changed meanwhile: its event requeues
                raise

    async def _delete(self, secret: Obj) -> None:
        try:
            await self.client.delete(self.secret_rt, secret["metadata"]["name"],
                                     secret["metadata"]["namespace"],
                                     preconditions={"uid": secret["metadata"]["uid"]})
        except errors.ApiError as e:
            if e.code not in (404, 409):
                raise
