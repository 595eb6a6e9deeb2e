"""ControllerRevisions: the saved pod templates of StatefulSets and DaemonSets
(Kubernetes' `controller/history`).

- A revision's `data` is a strategic-merge patch that restores the owner's pod
  template, `{"spec": {"template": {…, "$patch": "replace"}}}`: the form
  `kubectl rollout undo` applies to the owner as is, and `kubectl rollout history
  --revision=N` merges onto it to show that revision's template.
- A revision is named `<owner>-<hash>`, the hash being the FNV hash of its data and
  the owner's `collisionCount` (`_rollout.template_hash`, the Deployment's). When a
  revision of that name exists with other data (a collision), the caller raises its
  `collisionCount` and tries the next name.
- `revision` numbers only grow: going back to an earlier template (an undo) reuses
  that template's revision object and gives it the next number.
- History is trimmed to `revisionHistoryLimit`: the oldest revisions that no live
  pod, nor the owner's current or update revision, refers to are deleted.

Pure functions, and one async step (`sync_revision`) that creates or renumbers the
owner's revision through the API.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from pinnace.api.errors import ApiError
from pinnace.api.kinds import ResourceType
from pinnace.api.types import Obj
from pinnace.client.client import Client
from pinnace.controllers._rollout import template_hash
from pinnace.controllers.pod_template import controller_ref

REVISION_HASH_LABEL = "controller-revision-hash"


def revision_data(template: Obj | None) -> Obj:
    """The patch a revision stores: it replaces the whole pod template."""
    return {"spec": {"template": {**copy.deepcopy(template or {}), "$patch": "replace"}}}


def template_of(revision: Obj) -> Obj:
    """The pod template a revision restores."""
    template = dict(((revision.get("data") or {}).get("spec") or {}).get("template") or {})
    template.pop("$patch", None)
    return copy.deepcopy(template)


def number(revision: Obj) -> int:
    return int(revision.get("revision") or 0)


def sort_revisions(revisions: list[Obj]) -> list[Obj]:
    """Oldest first: by revision number, then creation time, then name."""
    return sorted(revisions, key=lambda r: (number(r), r["metadata"].get("creationTimestamp")
                                            or "", r["metadata"]["name"]))


def next_number(revisions: list[Obj]) -> int:
    return max((number(r) for r in revisions), default=0) + 1


def equal_revisions(revisions: list[Obj], data: Obj) -> list[Obj]:
    """The revisions holding exactly `data`, oldest first."""
    return [r for r in sort_revisions(revisions) if r.get("data") == data]


def revision_name(owner: Obj, data: Obj, collision_count: int) -> str:
    return f"{owner['metadata']['name']}-{template_hash(data, collision_count)}"


def new_revision(owner: Obj, data: Obj, *, revision: int, collision_count: int,
                 annotations: dict[str, str] | None = None) -> Obj:
    """A ControllerRevision of owner for data: the template's labels plus the hash label
    (so the owner's selector finds it, as kubectl does), owner as its controller."""
    labels = dict((((data.get("spec") or {}).get("template") or {}).get("metadata") or {})
                  .get("labels") or {})
    name = revision_name(owner, data, collision_count)
    labels[REVISION_HASH_LABEL] = name.rsplit("-", 1)[1]
    meta: Obj = {"name": name, "namespace": owner["metadata"].get("namespace"),
                 "labels": labels, "ownerReferences": [controller_ref(owner)]}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": meta,
            "data": data, "revision": revision}


def revisions_to_delete(revisions: list[Obj], live: set[str], limit: int) -> list[Obj]:
    """The revisions beyond `limit` that nothing refers to (names in `live`), oldest first."""
    unused = [r for r in sort_revisions(revisions) if r["metadata"]["name"] not in live]
    return unused[:max(len(unused) - max(limit, 0), 0)]


@dataclass
class Synced:
    revision: Obj  # the owner's revision of data, as written
    collision_count: int  # the owner's collisionCount, possibly raised
    revisions: list[Obj]  # every revision of the owner, this one included


async def sync_revision(client: Client, rt: ResourceType, owner: Obj, data: Obj,
                        revisions: list[Obj], *, collision_count: int,
                        annotations: dict[str, str] | None = None) -> Synced:
    """Make sure a revision holding `data` exists and is owner's newest: reuse the newest
    equal one, renumber an older equal one (an undo), or create one (raising the
    collision count while the name is taken by other data)."""
    equal = equal_revisions(revisions, data)
    latest = sort_revisions(revisions)[-1] if revisions else None
    ns = owner["metadata"].get("namespace")
    if equal and latest is not None and equal[-1]["metadata"]["name"] == \
            latest["metadata"]["name"]:
        return Synced(equal[-1], collision_count, revisions)
    if equal:
        found = equal[-1]
        renumbered = await client.patch(rt, found["metadata"]["name"],
                                        {"revision": next_number(revisions)}, namespace=ns,
                                        patch_type="merge")
        return Synced(renumbered, collision_count,
                      [r for r in revisions if r["metadata"]["name"] !=
                       found["metadata"]["name"]] + [renumbered])
    while True:
        body = new_revision(owner, data, revision=next_number(revisions),
                            collision_count=collision_count, annotations=annotations)
        try:
            created = await client.create(rt, body, ns)
            return Synced(created, collision_count, [*revisions, created])
        except ApiError as e:
            if e.code != 409:
                raise
        existing = await client.get(rt, body["metadata"]["name"], ns)
        ref = next((r for r in existing["metadata"].get("ownerReferences") or []
                    if r.get("controller")), None)
        if existing.get("data") == data and ref is not None and \
                ref.get("uid") == owner["metadata"]["uid"]:
            # ours, not yet in the caller's cache
            return Synced(existing, collision_count, [*revisions, existing])
        collision_count += 1
