"""Root CA publisher: the `kube-root-ca.crt` ConfigMap in every namespace.

Kubernetes' `root-ca-cert-publisher`: each active namespace holds a ConfigMap
`kube-root-ca.crt` whose `ca.crt` is the cluster CA (kube-controller-manager's
`--root-ca-file`), so pods can verify the API server; the ServiceAccount admission
projects it into every pod's `kube-api-access-*` volume. Watches Namespaces and those
ConfigMaps; the key is the namespace's name. A missing ConfigMap is created, a changed
one put back; terminating namespaces are left alone.
"""

from __future__ import annotations

from pinnace.api import errors
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.factory import InformerFactory
from pinnace.controllers.base import Controller
from pinnace.controllers.namespace import namespace_active

CONFIG_MAP = "kube-root-ca.crt"
DATA_KEY = "ca.crt"
DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when "
               "using internal endpoints such as the internal service IP or "
               "kubernetes.default.svc. No other usage is guaranteed across distributions "
               "of Kubernetes clusters.")
_ANNOTATION = "kubernetes.io/description"


class RootCAPublisher(Controller):
    name = "root-ca-cert-publisher"

    def __init__(self, client: Client, factory: InformerFactory, *, root_ca: bytes) -> None:
        super().__init__(client, factory)
        self.root_ca = root_ca.decode()
        self.cm_rt = client.resource("v1", "ConfigMap")
        self.namespaces = self.watch("v1", "Namespace")
        self.config_maps = factory.informer("v1", "ConfigMap")
        self.config_maps.add_handler(on_update=lambda _old, new: self._on_config_map(new),
                                     on_delete=self._on_config_map)

    def _on_config_map(self, cm: Obj) -> None:
        if cm["metadata"]["name"] == CONFIG_MAP:
            self.queue.add(cm["metadata"]["namespace"])

    async def reconcile(self, key: str) -> None:
        if not namespace_active(self.namespaces.get(key)):
            return
        data = {DATA_KEY: self.root_ca}
        current = self.config_maps.get_by_name(CONFIG_MAP, key)
        try:
            if current is None:
                await self.client.create(self.cm_rt, {
                    "metadata": {"name": CONFIG_MAP, "annotations": {_ANNOTATION: DESCRIPTION}},
                    "data": data}, key)
            elif current.get("data") != data:
                await self.client.update(self.cm_rt, {**current, "data": data})
        except errors.ApiError as e:
            # AlreadyExists/Conflict: the cache lagged (the next event requeues);
            # Forbidden/NotFound: the namespace is going away
            if e.code not in (403, 404, 409):
                raise
