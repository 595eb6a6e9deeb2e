"""ServiceAccount controller: every namespace has a `default` ServiceAccount.

Watches Namespaces and ServiceAccounts; the key is the namespace's name. A
namespace that is active and lacks `default` gets one; deleting `default`
brings it back. Terminating namespaces are left alone (their content is going).
"""

from __future__ import annotations

from pinnace.api import errors
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.client.factory import InformerFactory
from pinnace.controllers.base import Controller
from pinnace.controllers.namespace import namespace_active

DEFAULT_NAME = "default"


class ServiceAccountsController(Controller):
    name = "serviceaccount"

    def __init__(self, client: Client, factory: InformerFactory) -> None:
        super().__init__(client, factory)
        self.sa_rt = client.resource("v1", "ServiceAccount")
        self.namespaces = self.watch("v1", "Namespace")
        self.accounts = factory.informer("v1", "ServiceAccount")
        self.accounts.add_handler(on_delete=self._on_account_deleted)

    def _on_account_deleted(self, sa: Obj) -> None:
        if sa["metadata"]["name"] == DEFAULT_NAME:
            self.queue.add(sa["metadata"]["namespace"])

    async def reconcile(self, key: str) -> None:
        if not namespace_active(self.namespaces.get(key)):
            return
        if self.accounts.get_by_name(DEFAULT_NAME, key) is not None:
            return
        try:
            await self.client.create(self.sa_rt, {"metadata": {"name": DEFAULT_NAME}}, key)
        except errors.ApiError as e:
            # AlreadyExists: the cache lagged; Forbidden/NotFound: namespace is going away
            if e.code not in (403, 404, 409):
                raise
