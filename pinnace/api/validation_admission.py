"""Validation of admissionregistration.k8s.io/v1 objects: webhook configurations,
ValidatingAdmissionPolicies and their bindings (Kubernetes'
`pkg/apis/admissionregistration/validation`), with its field paths and wording.

CEL expressions (matchConditions, validations, messageExpressions, variables) are
compiled here, so a rule that cannot compile is a 422 at write time, not an error on
every request later.
"""

from __future__ import annotations

from typing import Any

from pinnace.api import cel
from pinnace.api.field_errors import FieldErrors, as_dict, as_list, as_str

_OPERATIONS = ("*", "CREATE", "UPDATE", "DELETE", "CONNECT")
_SIDE_EFFECTS = ("None", "NoneOnDryRun")
_FAILURE = ("Ignore", "Fail")
_MATCH = ("Exact", "Equivalent")
_SCOPES = ("*", "Cluster", "Namespaced")
_REINVOCATION = ("Never", "IfNeeded")
_ACTIONS = ("Deny", "Warn", "Audit")


def _expression(path: str, expr: Any, errs: FieldErrors) -> None:
    if not as_str(expr):
        errs.required(path)
        return
    try:
        cel.compile(expr)
    except cel.CelError as e:
        errs.invalid(path, expr, e.message)


def _rules(path: str, rules: Any, errs: FieldErrors) -> None:
    for i, rule in enumerate(as_list(rules)):
        r = as_dict(rule)
        at = f"{path}[{i}]"
        ops = as_list(r.get("operations"))
        if not ops:
            errs.required(f"{at}.operations")
        for j, op in enumerate(ops):
            errs.enum(f"{at}.operations[{j}]", op, _OPERATIONS)
        for key in ("apiGroups", "apiVersions", "resources"):
            if not as_list(r.get(key)):
                errs.required(f"{at}.{key}")
        errs.enum(f"{at}.scope", r.get("scope"), _SCOPES)


def _client_config(path: str, config: Any, errs: FieldErrors) -> None:
    c = as_dict(config)
    url, service = c.get("url"), c.get("service")
    if bool(url) == bool(service):
        errs.required(path, "exactly one of url or service is required")
    elif url and not as_str(url).startswith("https://"):
        errs.invalid(f"{path}.url", url, "'https' is the only allowed URL scheme")
    elif service:
        s = as_dict(service)
        for key in ("name", "namespace"):
            if not s.get(key):
                errs.required(f"{path}.service.{key}")
        port = s.get("port")
        if port is not None and not (isinstance(port, int) and 1 <= port <= 65535):
            errs.invalid(f"{path}.service.port", port, "port is not valid: must be between "
                         "1 and 65535, inclusive")


def _webhooks(obj: dict[str, Any], errs: FieldErrors, *, mutating: bool) -> None:
    seen: set[str] = set()
    for i, hook in enumerate(as_list(obj.get("webhooks"))):
        h, at = as_dict(hook), f"webhooks[{i}]"
        name = as_str(h.get("name"))
        if not name:
            errs.required(f"{at}.name")
        elif name in seen:
            errs.duplicate(f"{at}.name", name)
        elif name.count(".") < 2:
            errs.invalid(f"{at}.name", name, "should be a domain with at least three "
                         "segments separated by dots")
        seen.add(name)
        versions = as_list(h.get("admissionReviewVersions"))
        if not versions:
            errs.required(f"{at}.admissionReviewVersions", "must specify one of v1, v1beta1")
        elif not {"v1", "v1beta1"} & set(versions):
            errs.invalid(f"{at}.admissionReviewVersions", versions,
                         "must include at least one of v1, v1beta1")
        if h.get("sideEffects") is None:
            errs.required(f"{at}.sideEffects", "must specify one of None, NoneOnDryRun")
        else:
            errs.enum(f"{at}.sideEffects", h.get("sideEffects"), _SIDE_EFFECTS)
        errs.enum(f"{at}.failurePolicy", h.get("failurePolicy"), _FAILURE)
        errs.enum(f"{at}.matchPolicy", h.get("matchPolicy"), _MATCH)
        if mutating:
            errs.enum(f"{at}.reinvocationPolicy", h.get("reinvocationPolicy"), _REINVOCATION)
        timeout = h.get("timeoutSeconds")
        if timeout is not None and not (isinstance(timeout, int) and 1 <= timeout <= 30):
            errs.invalid(f"{at}.timeoutSeconds", timeout,
                         "the timeout value must be between 1 and 30 seconds")
        _client_config(f"{at}.clientConfig", h.get("clientConfig"), errs)
        _rules(f"{at}.rules", h.get("rules"), errs)
        for j, cond in enumerate(as_list(h.get("matchConditions"))):
            _expression(f"{at}.matchConditions[{j}].expression",
                        as_dict(cond).get("expression"), errs)


def validate_validating_webhooks(obj: dict[str, Any], errs: FieldErrors) -> None:
    _webhooks(obj, errs, mutating=False)


def validate_mutating_webhooks(obj: dict[str, Any], errs: FieldErrors) -> None:
    _webhooks(obj, errs, mutating=True)


def validate_policy(obj: dict[str, Any], errs: FieldErrors) -> None:
    spec = as_dict(obj.get("spec"))
    match = spec.get("matchConstraints")
    if not match:
        errs.required("spec.matchConstraints")
    else:
        rules = as_dict(match).get("resourceRules")
        if not as_list(rules):
            errs.required("spec.matchConstraints.resourceRules")
        _rules("spec.matchConstraints.resourceRules", rules, errs)
        _rules("spec.matchConstraints.excludeResourceRules",
               as_dict(match).get("excludeResourceRules"), errs)
    errs.enum("spec.failurePolicy", spec.get("failurePolicy"), _FAILURE)
    kind = spec.get("paramKind")
    if kind is not None:
        for key in ("apiVersion", "kind"):
            if not as_dict(kind).get(key):
                errs.required(f"spec.paramKind.{key}")
    if not as_list(spec.get("validations")) and not as_list(spec.get("auditAnnotations")):
        errs.required("spec.validations", "validations or auditAnnotations must contain at "
                      "least one item")
    for i, v in enumerate(as_list(spec.get("validations"))):
        d = as_dict(v)
        _expression(f"spec.validations[{i}].expression", d.get("expression"), errs)
        if d.get("messageExpression"):
            _expression(f"spec.validations[{i}].messageExpression",
                        d.get("messageExpression"), errs)
    for i, v in enumerate(as_list(spec.get("variables"))):
        d = as_dict(v)
        if not as_str(d.get("name")):
            errs.required(f"spec.variables[{i}].name")
        _expression(f"spec.variables[{i}].expression", d.get("expression"), errs)
    for i, c in enumerate(as_list(spec.get("matchConditions"))):
        _expression(f"spec.matchConditions[{i}].expression", as_dict(c).get("expression"),
                    errs)


def validate_policy_binding(obj: dict[str, Any], errs: FieldErrors) -> None:
    spec = as_dict(obj.get("spec"))
    if not as_str(spec.get("policyName")):
        errs.required("spec.policyName")
    actions = as_list(spec.get("validationActions"))
    if not actions:
        errs.required("spec.validationActions")
    seen: set[Any] = set()
    for i, a in enumerate(actions):
        if a in seen:
            errs.duplicate(f"spec.validationActions[{i}]", a)
        seen.add(a)
        errs.enum(f"spec.validationActions[{i}]", a, _ACTIONS)
    if "Deny" in seen and "Warn" in seen:
        errs.invalid("spec.validationActions", actions,
                     "must not contain both Deny and Warn (repeating the same validation "
                     "failure information in the API response and headers serves no purpose)")
    ref = spec.get("paramRef")
    if ref is not None:
        r = as_dict(ref)
        if r.get("name") and r.get("selector") is not None:
            errs.forbidden("spec.paramRef.name", "name and selector are mutually exclusive")
        if not r.get("name") and r.get("selector") is None:
            errs.required("spec.paramRef", "one of name or selector must be specified")
        if r.get("parameterNotFoundAction") is None:
            errs.required("spec.paramRef.parameterNotFoundAction")
        else:
            errs.enum("spec.paramRef.parameterNotFoundAction",
                      r.get("parameterNotFoundAction"), ("Allow", "Deny"))
