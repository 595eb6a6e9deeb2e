"""ValidatingAdmissionPolicy and its bindings: CEL rules run in the API server.

An `AdmissionPlugin` (see `admission_chain.py`) of the validating phase only. Policies,
bindings and params are read per request from the API server's watch caches. For each
binding of each policy (both sorted by name):

    match       the policy's matchConstraints (resourceRules with resourceNames,
                excludeResourceRules, namespaceSelector, objectSelector), then the
                binding's own matchResources if set, then the policy's matchConditions
    params      paramKind + the binding's paramRef: one object by name, or every object
                its selector selects, from the kind's watch cache (in the request's
                namespace when paramRef names none and the kind is namespaced); none
                found → parameterNotFoundAction (Deny refuses, Allow skips)
    variables   evaluated in order, each seeing the ones before as `variables.<name>`
    validations each expression must be true; when not, the message is the
                messageExpression's value, else `message`, else `failed expression: <e>`
    actions     validationActions: Deny refuses (the validation's reason, Invalid → 422),
                Warn adds a Warning header, Audit logs
    errors      a rule that does not evaluate (a CelError) obeys the policy's
                failurePolicy: Fail (default) refuses, Ignore skips it

CEL sees `object`, `oldObject` (null on CREATE/DELETE respectively), `request` (the
AdmissionRequest as webhooks get it), `params`, `namespaceObject` and `variables`.
Denials are worded as Kubernetes words them:
`ValidatingAdmissionPolicy '<policy>' with binding '<binding>' denied request: <message>`.
"""

from __future__ import annotations

import logging
from typing import Any

from pinnace.api import cel, errors
from pinnace.api.selectors import LabelSelector
from pinnace.api.types import Obj
from pinnace.apiserver.admission_chain import Attributes
from pinnace.apiserver.admission_webhooks import request_info, rule_matches

log = logging.getLogger(__name__)

_GROUP = "admissionregistration.k8s.io"
_CODES = {"Unauthorized": 401, "Forbidden": 403, "Invalid": 422,
          "RequestEntityTooLarge": 413}


class _RuleError(Exception):
    """A policy that could not be evaluated (failurePolicy decides)."""


class PolicyAdmission:
    def __init__(self, registry: Any) -> None:
        self._registry = registry
        kinds = registry.kinds
        self._policies = kinds.by_kind(_GROUP, "v1", "ValidatingAdmissionPolicy")
        self._bindings = kinds.by_kind(_GROUP, "v1", "ValidatingAdmissionPolicyBinding")
        self._namespaces = kinds.by_kind("", "v1", "Namespace")

    async def mutate(self, attrs: Attributes) -> None:
        return None

    async def validate(self, attrs: Attributes) -> None:
        if attrs.rt.group == _GROUP:
            return  # policies never govern policies (or webhooks), as in Kubernetes
        caches = self._registry.caches
        bindings = caches[self._bindings].list(None)
        if not bindings:
            return
        by_policy: dict[str, list[Obj]] = {}
        for b in sorted(bindings, key=lambda b: b["metadata"]["name"]):
            by_policy.setdefault((b.get("spec") or {}).get("policyName", ""), []).append(b)
        for name in sorted(by_policy):
            policy = caches[self._policies].get(None, name)
            if policy is None:
                continue
            for binding in by_policy[name]:
                self._run(policy, binding, attrs)

    def _namespace(self, attrs: Attributes) -> Obj | None:
        if not attrs.rt.namespaced or not attrs.namespace:
            return None
        return self._registry.caches[self._namespaces].get(None, attrs.namespace)

    def _run(self, policy: Obj, binding: Obj, attrs: Attributes) -> None:
        spec, bspec = policy.get("spec") or {}, binding.get("spec") or {}
        pname, bname = policy["metadata"]["name"], binding["metadata"]["name"]
        namespace = self._namespace(attrs)
        if not _resources_match(spec.get("matchConstraints"), attrs, namespace):
            return
        if bspec.get("matchResources") and \
                not _resources_match(bspec["matchResources"], attrs, namespace):
            return
        actions = bspec.get("validationActions") or ["Deny"]
        fail = (spec.get("failurePolicy") or "Fail") == "Fail"
        prefix = f"ValidatingAdmissionPolicy '{pname}' with binding '{bname}' denied request"
        try:
            for params in self._params(spec, bspec, attrs):
                activation = {"object": attrs.obj, "oldObject": attrs.old,
                              "request": request_info(attrs, ""), "params": params,
                              "namespaceObject": namespace}
                if not _conditions_match(spec, activation):
                    continue
                activation["variables"] = _variables(spec, activation)
                for message, reason in _violations(spec, activation):
                    self._act(actions, prefix, pname, bname, message, reason, attrs)
        except _RuleError as e:
            if fail:
                raise errors.ApiError(422, "Invalid", f"{prefix}: {e}") from None
            log.warning("%s: %s (failurePolicy Ignore)", prefix, e)

    @staticmethod
    def _act(actions: list[str], prefix: str, pname: str, bname: str, message: str,
             reason: str, attrs: Attributes) -> None:
        if "Warn" in actions:
            attrs.warnings.append(f"Validation failed for ValidatingAdmissionPolicy "
                                  f"'{pname}' with binding '{bname}': {message}")
        if "Audit" in actions:
            log.info("audit: ValidatingAdmissionPolicy %r binding %r: %s", pname, bname,
                     message)
        if "Deny" in actions:
            raise errors.ApiError(_CODES.get(reason, 422), reason, f"{prefix}: {message}")

    def _params(self, spec: Obj, bspec: Obj, attrs: Attributes) -> list[Obj | None]:
        """The params each evaluation sees: [None] for a policy without paramKind."""
        kind = spec.get("paramKind")
        if not kind:
            return [None]
        ref = bspec.get("paramRef")
        if not ref:
            raise _RuleError("policy has paramKind but its binding has no paramRef")
        group, _, version = (kind.get("apiVersion") or "").rpartition("/")
        rt = self._registry.kinds.by_kind(group, version, kind.get("kind", ""))
        if rt is None or rt not in self._registry.caches:
            raise _RuleError(f"paramKind {kind.get('apiVersion')}, Kind={kind.get('kind')} "
                             f"is not served")
        ns = (ref.get("namespace") or attrs.namespace) if rt.namespaced else None
        cache = self._registry.caches[rt]
        if ref.get("name"):
            found = [o for o in [cache.get(ns, ref["name"])] if o is not None]
        else:
            selector = LabelSelector.from_dict(ref.get("selector") or {})
            found = [o for o in cache.list(ns)
                     if selector.matches(o["metadata"].get("labels") or {})]
        if found:
            return found
        if ref.get("parameterNotFoundAction") == "Allow":
            return []
        raise _RuleError("no params found for policy binding with `Deny` "
                         "parameterNotFoundAction")


def _evaluate(expression: str, activation: Obj) -> Any:
    try:
        return cel.compile(expression).evaluate(activation)
    except cel.CelError as e:
        raise _RuleError(f"expression '{expression}' resulted in error: {e.message}") \
            from None


def _conditions_match(spec: Obj, activation: Obj) -> bool:
    return all(_evaluate(c.get("expression", ""), activation) is True
               for c in spec.get("matchConditions") or [])


def _variables(spec: Obj, activation: Obj) -> Obj:
    values: Obj = {}
    for v in spec.get("variables") or []:
        values[v.get("name", "")] = _evaluate(v.get("expression", ""),
                                              {**activation, "variables": values})
    return values


def _violations(spec: Obj, activation: Obj) -> list[tuple[str, str]]:
    out = []
    for v in spec.get("validations") or []:
        expression = v.get("expression", "")
        result = _evaluate(expression, activation)
        if result is True:
            continue
        if result is not False:
            raise _RuleError(f"expression '{expression}' resulted in a non-boolean value")
        message = ""
        if v.get("messageExpression"):
            try:
                value = cel.compile(v["messageExpression"]).evaluate(activation)
                message = value.strip() if isinstance(value, str) else ""
            except cel.CelError as e:  # Kubernetes falls back to `message`
                log.info("messageExpression %r failed: %s", v["messageExpression"], e)
        message = message or v.get("message") or f"failed expression: {expression}"
        out.append((message, v.get("reason") or "Invalid"))
    return out


def _selects(selector: Obj | None, obj: Obj | None) -> bool:
    if not selector:
        return True
    labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
    try:
        return LabelSelector.from_dict(selector).matches(labels)
    except errors.ApiError:
        return False


def _resources_match(match: Obj | None, attrs: Attributes, namespace: Obj | None) -> bool:
    """MatchResources: a request matches when a resourceRule (resourceNames included)
    covers it, no excludeResourceRule does, and the selectors select it."""
    if not match:
        return False  # a policy without matchConstraints matches nothing

    def named(rule: Obj) -> bool:
        names = rule.get("resourceNames") or []
        return rule_matches(rule, attrs) and (not names or attrs.name in names)
    if not any(named(r) for r in match.get("resourceRules") or []):
        return False
    if any(named(r) for r in match.get("excludeResourceRules") or []):
        return False
    if attrs.rt.namespaced and not _selects(match.get("namespaceSelector"), namespace):
        return False
    if attrs.rt.kind == "Namespace" and attrs.rt.group == "" and \
            not _selects(match.get("namespaceSelector"), attrs.obj or attrs.old):
        return False
    selector = match.get("objectSelector")
    return not selector or any(
        _selects(selector, o) for o in (attrs.obj, attrs.old) if o is not None)
