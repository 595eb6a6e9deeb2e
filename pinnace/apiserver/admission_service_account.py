"""The ServiceAccount admission plugin (Kubernetes' `plugin/pkg/admission/serviceaccount`).

On every pod created (mutating phase, before webhooks see the pod):
- `spec.serviceAccountName` defaults to `default` (and `spec.serviceAccount`, its
  deprecated twin, follows it);
- the ServiceAccount must exist, else the pod is refused with Kubernetes' message
  (`error looking up service account <ns>/<name>: serviceaccount "<name>" not found`).
  The `default` one is made by the ServiceAccount controller right after its
  namespace, so, as Kubernetes does, it is waited for a little (up to ~2 s) first;
- unless `automountServiceAccountToken: false` on the pod (or, unset there, on the
  ServiceAccount), the pod gets the projected volume `kube-api-access-<5 random>`
  (a token for the pod, valid 3607 s; `ca.crt` from the `kube-root-ca.crt`
  ConfigMap; the namespace from the downward API), mounted read-only at
  `/var/run/secrets/kubernetes.io/serviceaccount` in every container and init
  container that does not already mount something there. The node agent fills it
  (`agent/volumes/projected.py`, `agent/volumes/token_manager.py`).

Mirror pods (annotation `kubernetes.io/config.mirror`) are left alone, as in Kubernetes.
kube-apiserver's `--disable-admission-plugins=ServiceAccount` turns it off; Kubernetes'
own integration tests do that when no controller manager runs, and so do ours.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from pinnace.api import errors
from pinnace.apiserver.admission_chain import Attributes
from pinnace.apiserver.registry import ObjectRegistry

NAME = "ServiceAccount"
DEFAULT_SERVICE_ACCOUNT = "default"
MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
VOLUME_PREFIX = "kube-api-access-"
ROOT_CA_CONFIG_MAP = "kube-root-ca.crt"
# the kubelet's token lifetime: 1 h plus 7 s, so it is recognisable as the kubelet's
TOKEN_EXPIRATION_SECONDS = 3607
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's utilrand.String
_DEFAULT_WAIT = (0.1, 20)  # seconds between looks, looks: the `default` SA may be on its way


def api_access_volume(name: str) -> dict[str, Any]:
    """The projected volume Kubernetes gives every pod that automounts a token."""
    return {"name": name, "projected": {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS,
                                 "path": "token"}},
        {"configMap": {"name": ROOT_CA_CONFIG_MAP,
                       "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
            "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}}


class ServiceAccountAdmission:
    def __init__(self, registry: ObjectRegistry) -> None:
        rt = registry.kinds.by_kind("", "v1", "ServiceAccount")
        assert rt is not None
        self._accounts = registry.cache(rt)

    async def mutate(self, attrs: Attributes) -> None:
        if attrs.operation != "CREATE" or attrs.subresource or attrs.obj is None or \
                attrs.rt.group != "" or attrs.rt.kind != "Pod":
            return
        pod = attrs.obj
        if MIRROR_ANNOTATION in ((pod.get("metadata") or {}).get("annotations") or {}):
            return
        spec = pod.setdefault("spec", {})
        name = spec.get("serviceAccountName") or spec.get("serviceAccount") or \
            DEFAULT_SERVICE_ACCOUNT
        spec["serviceAccountName"] = spec["serviceAccount"] = name
        namespace = attrs.namespace or ""
        sa = await self._lookup(namespace, name)
        if sa is None:
            raise errors.forbidden(
                f'pods "{attrs.name}" is forbidden: error looking up service account '
                f'{namespace}/{name}: serviceaccount "{name}" not found')
        automount = spec.get("automountServiceAccountToken")
        if automount is None:
            automount = sa.get("automountServiceAccountToken")
        if automount is False:
            return
        self._mount_token(spec)

    async def validate(self, attrs: Attributes) -> None:
        return None

    async def _lookup(self, namespace: str, name: str) -> dict[str, Any] | None:
        sa = self._accounts.get(namespace, name)
        if sa is not None or name != DEFAULT_SERVICE_ACCOUNT:
            return sa
        interval, looks = _DEFAULT_WAIT
        for _ in range(looks):
            await asyncio.sleep(interval)
            sa = self._accounts.get(namespace, name)
            if sa is not None:
                return sa
        return None

    @staticmethod
    def _mount_token(spec: dict[str, Any]) -> None:
        volumes = spec.get("volumes") or []
        existing = next((v["name"] for v in volumes if isinstance(v, dict) and
                         str(v.get("name", "")).startswith(VOLUME_PREFIX)), None)
        name = existing or VOLUME_PREFIX + "".join(
            secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))
        if existing is None:
            spec["volumes"] = [*volumes, api_access_volume(name)]
        mount = {"name": name, "readOnly": True, "mountPath": MOUNT_PATH}
        for key in ("initContainers", "containers"):
            for container in spec.get(key) or []:
                if not isinstance(container, dict):
                    continue
                mounts = container.get("volumeMounts") or []
                if any(isinstance(m, dict) and m.get("mountPath") == MOUNT_PATH
                       for m in mounts):
                    continue
                container["volumeMounts"] = [*mounts, dict(mount)]
