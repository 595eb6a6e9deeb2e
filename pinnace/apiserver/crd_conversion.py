"""Conversion strategy `Webhook` of CustomResourceDefinitions: ConversionReview v1.

One `Converter` per served definition that asks for it. `convert(objects, apiVersion)`
sends the objects not yet in that version to the definition's webhook in one
ConversionReview (`request.uid`, `desiredAPIVersion`, `objects`) through the server's
one webhook client (`webhook_client.py`: url or Service, caBundle) and checks the
answer as apiextensions-apiserver does: the same uid, `result.status: Success`, as many
`convertedObjects` as were sent, each of the desired apiVersion and the same kind. Of
the metadata only labels and annotations may change; the rest is restored from the
original, so a webhook cannot rename or re-own an object.

Where it runs: writes convert the request's version to the storage version before the
store (`CustomResourceStrategy.to_storage`); each served version's watch cache converts
what is stored into its own version (`watch_cache.py`). A failure — unreachable, slow
past the time limit, an answer that breaks the rules — is a 500 Status worded like
Kubernetes': `conversion webhook for <group>/<version>, Kind=<kind> failed: …`.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from pinnace.api import errors
from pinnace.api.types import Obj
from pinnace.apiserver.webhook_client import WebhookClient, WebhookFailure, review_response

_REVIEW = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview"}
# Kubernetes gives conversion webhooks 30 s; reads wait on it, so pinnace gives 10 s
TIMEOUT_SECONDS = 10


class Converter:
    def __init__(self, client: WebhookClient, webhook: Obj) -> None:
        self._client = client
        self._config = webhook.get("clientConfig") or {}
        self._versions = webhook.get("conversionReviewVersions") or ["v1"]

    async def convert(self, objects: list[Obj], api_version: str) -> list[Obj]:
        """`objects` in `api_version` (those already in it are not sent)."""
        todo = [i for i, o in enumerate(objects) if o.get("apiVersion") != api_version]
        if not todo:
            return objects
        sent = [objects[i] for i in todo]
        try:
            converted = await self._call(sent, api_version)
        except WebhookFailure as e:
            first = sent[0]
            group, _, version = str(first.get("apiVersion", "")).rpartition("/")
            raise errors.internal(
                f"conversion webhook for {group}/{version}, Kind={first.get('kind', '')} "
                f"failed: {e}") from None
        out = list(objects)
        for i, obj in zip(todo, converted, strict=True):
            out[i] = obj
        return out

    async def _call(self, objects: list[Obj], api_version: str) -> list[Obj]:
        if "v1" not in self._versions:
            raise WebhookFailure(f"none of the ConversionReview versions {self._versions} "
                                 "is v1")
        uid = str(uuid.uuid4())
        review = {**_REVIEW, "request": {"uid": uid, "desiredAPIVersion": api_version,
                                         "objects": objects}}
        body = await self._client.post(self._config, review, seconds=TIMEOUT_SECONDS)
        return checked(body, uid, objects, api_version)


def checked(body: Any, uid: str, sent: list[Obj], api_version: str) -> list[Obj]:
    """The converted objects of a ConversionReview answer, or WebhookFailure saying
    what is wrong with it."""
    response = review_response(body, _REVIEW["apiVersion"], _REVIEW["kind"], uid)
    result = response.get("result") or {}
    if result.get("status") != "Success":
        raise WebhookFailure(f"conversion webhook returned failure: "
                             f"{result.get('message') or 'no message'}")
    converted = response.get("convertedObjects")
    if not isinstance(converted, list) or len(converted) != len(sent):
        raise WebhookFailure(f"expected {len(sent)} converted objects, got "
                             f"{len(converted) if isinstance(converted, list) else 0}")
    out = []
    for i, (new, old) in enumerate(zip(converted, sent, strict=True)):
        if not isinstance(new, dict) or new.get("apiVersion") != api_version:
            raise WebhookFailure(f"invalid converted object at index {i}: apiVersion is "
                                 f"not {api_version}")
        if new.get("kind") != old.get("kind"):
            raise WebhookFailure(f"invalid converted object at index {i}: kind is not "
                                 f"{old.get('kind')}")
        meta = json.loads(json.dumps(old.get("metadata") or {}))
        theirs = new.get("metadata") if isinstance(new.get("metadata"), dict) else {}
        for field in ("labels", "annotations"):
            value = theirs.get(field)
            if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
                meta[field] = value
            elif field in meta and field not in theirs:
                del meta[field]
        out.append({**new, "metadata": meta})
    return out
