"""The admission chain: plugins that see every write after the strategy's own admission.

Kubernetes runs admission in two phases around schema validation, and so does the
registry (`registry.py`):

    mutating admission   the strategy's admit_create, then each plugin's `mutate`
                         (mutating webhooks) — may change the object
    validation           the kind's validation
    validating admission each plugin's `validate` (ValidatingAdmissionPolicies,
                         validating webhooks) — may only refuse, by raising ApiError

A plugin gets one `Attributes` per request (Kubernetes' admission.Attributes): the
operation, the resource, the object and the old one, the caller, dryRun. Warnings
a plugin adds go to the client in `Warning` headers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from pinnace.api.kinds import ResourceType
from pinnace.api.types import Obj


@dataclass
class Attributes:
    operation: str  # CREATE | UPDATE | DELETE | CONNECT
    rt: ResourceType
    subresource: str
    namespace: str | None
    name: str
    obj: Obj | None  # None for DELETE
    old: Obj | None  # None for CREATE
    user: Any  # auth.User; None for trusted callers in this process
    dry_run: bool = False
    options: Obj | None = None
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, operation: str, rt: ResourceType, obj: Obj | None, old: Obj | None, *,
           subresource: str, user: Any, dry_run: bool, field_manager: str,
           warnings: list[str]) -> Attributes:
        """A write's attributes, with the options Kubernetes sends webhooks."""
        m = (obj or old or {}).get("metadata") or {}
        kind = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions"}.get(
            operation, "DeleteOptions")
        options: Obj = {"kind": kind, "apiVersion": "meta.k8s.io/v1"}
        if field_manager and operation != "DELETE":
            options["fieldManager"] = field_manager
        if dry_run:
            options["dryRun"] = ["All"]
        return cls(operation=operation, rt=rt, subresource=subresource,
                   namespace=m.get("namespace"), name=m.get("name") or "", obj=obj, old=old,
                   user=user, dry_run=dry_run, options=options, warnings=warnings)


class AdmissionPlugin(Protocol):
    async def mutate(self, attrs: Attributes) -> None:
        """Change `attrs.obj` in place (or replace it), or raise ApiError to refuse."""
        ...

    async def validate(self, attrs: Attributes) -> None:
        """Raise ApiError to refuse the request; may add warnings."""
        ...
