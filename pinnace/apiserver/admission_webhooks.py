"""Admission webhooks: Mutating- and ValidatingWebhookConfigurations, called over HTTPS.

An `AdmissionPlugin` (see `admission_chain.py`). The configurations are read, per
request, from the API server's own watch caches (in memory; a configuration applies
from the moment its write returned). For each request:

    match       rules (operations, apiGroups, apiVersions, resources incl. `pods/status`,
                `pods/*`, `*/*`, scope), namespaceSelector (the namespace's labels, read
                from the Namespace cache), objectSelector (new or old object's labels),
                matchConditions (CEL over object, oldObject, request)
    dry run     a webhook whose sideEffects is not None/NoneOnDryRun refuses a dryRun
                request (400), as Kubernetes does, instead of being called
    call        POST an AdmissionReview v1 to `clientConfig.url`, or to the Service
                (`webhook_client.py`: a ready endpoint, the certificate verified
                against `caBundle`); `timeoutSeconds` (default 10, at most 30) bounds
                the whole call
    response    uid must match; `allowed: false` → the response's status code (403 by
                default) with `admission webhook "<name>" denied the request: <msg>`;
                `patch` (base64 JSONPatch) is applied to the object by mutating
                webhooks; `warnings` go to the client
    failure     unreachable, timeout, bad response: `failurePolicy: Fail` (the default)
                refuses with 500 `Internal error occurred: failed calling webhook
                "<name>": failed to call webhook: Post "<url>?timeout=10s": …`; `Ignore` goes on

matchPolicy `Equivalent` (the default): a webhook whose rules name another served
version of the request's custom resource is called for that version — the objects
converted to it (the definition's conversion), `kind`/`resource` that version,
`requestKind`/`requestResource` the request's; a patch is converted back. `Exact`
matches only the request's version.

Mutating webhooks run in configuration-name order, each configuration's webhooks in
order; with `reinvocationPolicy: IfNeeded` a webhook runs once more when a later one
changed the object. Requests for admissionregistration.k8s.io objects are never sent
to webhooks (so a broken webhook cannot lock its own configuration in), as in Kubernetes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import logging
import uuid
from typing import Any

from pinnace.api import cel, errors, patch
from pinnace.api.kinds import ResourceType
from pinnace.api.selectors import LabelSelector
from pinnace.api.types import Obj
from pinnace.apiserver.admission_chain import Attributes
from pinnace.apiserver.webhook_client import WebhookClient, WebhookFailure, review_response

log = logging.getLogger(__name__)

_GROUP = "admissionregistration.k8s.io"
_DEFAULT_TIMEOUT = 10
_MAX_TIMEOUT = 30
_TRUSTED_USER = {"username": "system:apiserver", "uid": "", "groups": ["system:masters"]}


class WebhookAdmission:
    """Calls the webhooks that match a request (Kubernetes' mutating and validating
    webhook admission plugins)."""

    def __init__(self, registry: Any) -> None:
        # the ObjectRegistry: its watch caches hold configurations, namespaces, services
        self._registry = registry
        kinds = registry.kinds
        self._mutating = kinds.by_kind(_GROUP, "v1", "MutatingWebhookConfiguration")
        self._validating = kinds.by_kind(_GROUP, "v1", "ValidatingWebhookConfiguration")
        self._namespaces = kinds.by_kind("", "v1", "Namespace")
        self._client = WebhookClient(registry)

    async def close(self) -> None:
        await self._client.close()

    # -- the two phases --------------------------------------------------------------

    async def mutate(self, attrs: Attributes) -> None:
        webhooks = self._matching(self._mutating, attrs)
        changed_after: list[bool] = []
        for hook, as_rt in webhooks:
            changed = await self._call(hook, attrs, as_rt, mutating=True)
            changed_after = [c or changed for c in changed_after] + [False]
        # reinvocation: once, for IfNeeded webhooks that ran before a later change
        for (hook, as_rt), changed in zip(webhooks, changed_after, strict=True):
            if changed and hook.get("reinvocationPolicy") == "IfNeeded":
                await self._call(hook, attrs, as_rt, mutating=True)

    async def validate(self, attrs: Attributes) -> None:
        hooks = self._matching(self._validating, attrs)
        # validating webhooks may run in parallel (they cannot change the object)
        await asyncio.gather(*(self._call(h, attrs, as_rt, mutating=False)
                               for h, as_rt in hooks))

    # -- matching --------------------------------------------------------------------

    def _matching(self, rt: Any, attrs: Attributes) -> list[tuple[Obj, ResourceType]]:
        """The webhooks to call, each with the version of the resource it is called
        for (the request's, or an equivalent one its rules name)."""
        if rt is None or attrs.rt.group == _GROUP:
            return []
        configs = sorted(self._registry.caches[rt].list(None),
                         key=lambda c: c["metadata"]["name"])
        out = []
        for hook in (h for c in configs for h in c.get("webhooks") or []):
            as_rt = self._matches(hook, attrs)
            if as_rt is not None:
                out.append((hook, as_rt))
        return out

    def _matches(self, hook: Obj, attrs: Attributes) -> ResourceType | None:
        rules = hook.get("rules") or []
        as_rt: ResourceType | None = attrs.rt
        if not any(rule_matches(r, attrs) for r in rules):
            # matchPolicy Equivalent (the default): a rule naming another version of
            # the same custom resource matches, and the webhook sees that version
            as_rt = None
            if hook.get("matchPolicy", "Equivalent") == "Equivalent":
                as_rt = next((rt for rt in self._equivalents(attrs.rt) if any(
                    rule_matches(r, attrs, rt) for r in rules)), None)
            if as_rt is None:
                return None
        if not self._namespace_matches(hook.get("namespaceSelector"), attrs):
            return None
        selector = hook.get("objectSelector")
        if selector and not any(
                _selects(selector, o) for o in (attrs.obj, attrs.old) if o is not None):
            return None
        return as_rt if _conditions_match(hook, attrs) else None

    def _equivalents(self, rt: ResourceType) -> list[ResourceType]:
        """The other served versions of a custom resource (what converts to them)."""
        if rt.custom is None:
            return []
        return [other for other in self._registry.kinds if other is not rt and
                other.group == rt.group and other.plural == rt.plural]

    def _namespace_matches(self, selector: Obj | None, attrs: Attributes) -> bool:
        if not selector:
            return True
        if attrs.rt.kind == "Namespace" and attrs.rt.group == "":
            return _selects(selector, attrs.obj or attrs.old)
        if not attrs.rt.namespaced:
            return True  # cluster-scoped objects are never excluded by namespace
        ns = self._registry.caches[self._namespaces].get(None, attrs.namespace)
        return _selects(selector, ns)

    # -- calling ---------------------------------------------------------------------

    async def _call(self, hook: Obj, attrs: Attributes, as_rt: ResourceType, *,
                    mutating: bool) -> bool:
        """Run one webhook for the resource version `as_rt`; True when it changed the
        object."""
        name = hook.get("name", "")
        if attrs.dry_run and hook.get("sideEffects") not in ("None", "NoneOnDryRun"):
            raise errors.bad_request(f'admission webhook "{name}" does not support dry run')
        asked = attrs
        if as_rt is not attrs.rt:
            asked = dataclasses.replace(attrs, rt=as_rt, obj=await _as_version(attrs.obj, as_rt),
                                        old=await _as_version(attrs.old, as_rt), warnings=[])
        review = admission_review(asked, requested=attrs.rt)
        try:
            response = await self._post(hook, review)
            result = review_response(response, "admission.k8s.io/v1", "AdmissionReview",
                                     review["request"]["uid"])
        except WebhookFailure as e:
            if hook.get("failurePolicy", "Fail") == "Ignore":
                log.warning("failed calling webhook %r (ignored): %s", name, e)
                return False
            raise _failed(name, str(e)) from None
        attrs.warnings.extend(w for w in result.get("warnings") or [] if isinstance(w, str))
        if not result.get("allowed"):
            status = result.get("status") or {}
            message = status.get("message") or ""
            code = status.get("code") or 403
            text = f'admission webhook "{name}" denied the request' + (
                f": {message}" if message else " without explanation")
            raise errors.ApiError(code, status.get("reason") or _reason(code), text)
        if not (mutating and result.get("patch")):
            return False
        if result.get("patchType") != "JSONPatch":
            raise _failed(name, f'unsupported patch type "{result.get("patchType")}"')
        try:
            ops = json.loads(base64.b64decode(result["patch"]))
            new = patch.json_patch(asked.obj, ops)
        except (binascii.Error, ValueError, errors.ApiError) as e:
            raise _failed(name, f"the patch could not be applied: {e}") from None
        if not isinstance(new, dict) or new == asked.obj:
            return False
        new = await _as_version(new, attrs.rt)
        attrs.obj = new
        return True

    async def _post(self, hook: Obj, review: Obj) -> Any:
        if "v1" not in (hook.get("admissionReviewVersions") or ["v1"]):
            raise WebhookFailure("none of the AdmissionReview versions "
                                 f"{hook.get('admissionReviewVersions')} is v1")
        timeout = min(max(int(hook.get("timeoutSeconds") or _DEFAULT_TIMEOUT), 1), _MAX_TIMEOUT)
        return await self._client.post(hook.get("clientConfig") or {}, review,
                                       seconds=timeout)


def _failed(name: str, why: str) -> errors.ApiError:
    """A 500 worded as Kubernetes' internal error wrapping ErrCallingWebhook."""
    return errors.internal(f'Internal error occurred: failed calling webhook "{name}": {why}')


def _reason(code: int) -> str:
    return {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
            409: "Conflict", 422: "Invalid", 429: "TooManyRequests"}.get(code, "")


def _selects(selector: Obj, obj: Obj | None) -> bool:
    labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
    try:
        return LabelSelector.from_dict(selector).matches(labels)
    except errors.ApiError:
        return False


def rule_matches(rule: Obj, attrs: Attributes, rt: ResourceType | None = None) -> bool:
    """Does a RuleWithOperations (or a policy's NamedRuleWithOperations) cover the
    request? Resources: `pods` (the main resource only), `pods/status`, `pods/*`,
    `*` (every main resource), `*/status`, `*/*`. `rt`: judge as that version of the
    resource (an equivalent one) instead of the request's."""
    rt = rt or attrs.rt
    ops = rule.get("operations") or []
    if "*" not in ops and attrs.operation not in ops:
        return False
    groups, versions = rule.get("apiGroups") or [], rule.get("apiVersions") or []
    if "*" not in groups and rt.group not in groups:
        return False
    if "*" not in versions and rt.version not in versions:
        return False
    scope = rule.get("scope") or "*"
    if scope != "*" and (scope == "Namespaced") != rt.namespaced:
        return False
    sub = attrs.subresource
    for res in rule.get("resources") or []:
        main, _, want_sub = res.partition("/")
        if main not in ("*", rt.plural):
            continue
        if (not want_sub and not sub) or want_sub == "*" or (want_sub and want_sub == sub):
            return True
    return False


async def _as_version(obj: Obj | None, rt: ResourceType) -> Obj | None:
    """A custom object in another version of its resource: through the definition's
    conversion webhook, or (conversion None) with its apiVersion rewritten."""
    if obj is None or obj.get("apiVersion") == rt.api_version:
        return obj
    converter = getattr(rt.custom, "converter", None)
    if converter is not None:
        return (await converter.convert([obj], rt.api_version))[0]
    return {**obj, "apiVersion": rt.api_version}


def request_info(attrs: Attributes, uid: str, requested: ResourceType | None = None) -> Obj:
    """The AdmissionRequest of an AdmissionReview v1 (also `request` in CEL);
    `requested`: the version the client asked for, when the webhook is called for an
    equivalent one."""
    rt = attrs.rt
    user = attrs.user
    user_info = {"username": user.name, "uid": user.uid, "groups": list(user.groups)} \
        if user is not None else dict(_TRUSTED_USER)
    kind = {"group": rt.group, "version": rt.version, "kind": rt.kind}
    resource = {"group": rt.group, "version": rt.version, "resource": rt.plural}
    asked = requested or rt
    out: Obj = {"uid": uid, "kind": kind, "resource": resource,
                "requestKind": {**kind, "version": asked.version},
                "requestResource": {**resource, "version": asked.version},
                "name": attrs.name,
                "operation": attrs.operation, "userInfo": user_info,
                "object": attrs.obj, "oldObject": attrs.old, "dryRun": attrs.dry_run,
                "options": attrs.options}
    if attrs.subresource:
        out["subResource"] = out["requestSubResource"] = attrs.subresource
    if attrs.namespace:
        out["namespace"] = attrs.namespace
    return out


def admission_review(attrs: Attributes, requested: ResourceType | None = None) -> Obj:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": request_info(attrs, str(uuid.uuid4()), requested)}


def _conditions_match(hook: Obj, attrs: Attributes) -> bool:
    """matchConditions: every CEL expression true (an error counts as a failure to call
    the webhook, so failurePolicy applies — here: Fail refuses, Ignore skips)."""
    conditions = hook.get("matchConditions") or []
    if not conditions:
        return True
    activation = {"object": attrs.obj, "oldObject": attrs.old,
                  "request": request_info(attrs, "")}
    for c in conditions:
        try:
            if cel.compile(c.get("expression", "")).evaluate(activation) is not True:
                return False
        except cel.CelError as e:
            if hook.get("failurePolicy", "Fail") == "Ignore":
                return False
            raise _failed(hook.get("name", ""),
                          f'matchCondition "{c.get("name")}" failed: {e}') from None
    return True
