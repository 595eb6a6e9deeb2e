"""Subresources: status, scale and binding.

- `status`: GET returns the object; PUT/PATCH change only `.status`.
- `ephemeralcontainers` (pods): PUT/PATCH change only `.spec.ephemeralContainers`.
- `finalize` (namespaces): PUT changes only `.spec.finalizers`; emptying them on a
  terminating namespace removes it.
- `scale`: an `autoscaling/v1 Scale` view of `.spec.replicas`; writes to it patch
  the parent's replicas.
- `binding` (and the `bindings` collection): assigns a pod to a node, once.
- `token` (serviceaccounts): a TokenRequest (`service_accounts.py`).

- `log`, `exec`, `attach`, `portforward` (pods): proxied to the pod's kubelet by
  `node_proxy`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from pinnace.api import errors, patch
from pinnace.api.names import subdomain_problems
from pinnace.api.timestamps import now_rfc3339
from pinnace.api.types import Obj
from pinnace.apiserver import negotiation as neg
from pinnace.apiserver import node_proxy
from pinnace.apiserver.objects import deep_copy
from pinnace.apiserver.registry import ObjectRegistry, WriteOptions

if TYPE_CHECKING:
    from pinnace.apiserver.handlers import ResourceHandlers, Target


async def dispatch(h: ResourceHandlers, request: web.Request, t: Target) -> web.StreamResponse:
    method = request.method
    assert t.name is not None
    if t.subresource in ("status", "ephemeralcontainers"):
        if method == "GET":
            return h.get(request, t)
        if method == "PUT":
            return await h.update(request, t, subresource=t.subresource)
        if method == "PATCH":
            return await h.patch(request, t, subresource=t.subresource)
        raise errors.method_not_allowed()
    if t.subresource == "finalize":
        if method != "PUT":
            raise errors.method_not_allowed()
        return await h.update(request, t, subresource="finalize")
    # only pods have these (parse_path admits a subresource only where the kind has it)
    if t.subresource in ("log", "exec", "attach", "portforward"):
        assert t.namespace is not None
        return await node_proxy.serve(h.registry, request, t.namespace, t.name, t.subresource)
    if t.subresource == "scale":
        return await scale(h, request, t)
    if t.subresource == "token":  # serviceaccounts: a TokenRequest, answered, not stored
        tokens = h.registry.service_account_tokens
        if method != "POST":
            raise errors.method_not_allowed()
        if tokens is None or t.namespace is None:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested "
                                  "resource")
        answer = tokens.create_token(t.namespace, t.name, await h.body(request))
        return web.Response(body=neg.dump(answer), status=201, content_type="application/json")
    if t.subresource == "binding":
        if method != "POST":
            raise errors.method_not_allowed()
        body = await h.body(request)
        obj = await bind(h.registry, t.namespace, t.name, body, h.write_options(request))
        return web.Response(body=neg.dump(obj), status=201, content_type="application/json")
    raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")


async def scale(h: ResourceHandlers, request: web.Request, t: Target) -> web.Response:
    assert t.name is not None
    reg = h.registry
    strategy = reg.strategies[t.rt]
    obj = reg.get(t.rt, t.namespace, t.name)
    if request.method == "GET":
        return web.Response(body=neg.dump(strategy.scale_of(obj)),
                            content_type="application/json")
    if request.method not in ("PUT", "PATCH"):
        raise errors.method_not_allowed()
    body = await h.body(request)
    opts = h.write_options(request)
    current = strategy.scale_of(obj)
    if request.method == "PUT":
        new_scale = body
    else:
        ptype = neg.PATCH_TYPES.get(
            (request.headers.get("Content-Type") or "").split(";")[0].strip().lower())
        if ptype == "json":
            new_scale = patch.json_patch(deep_copy(current), body)
        elif ptype in ("merge", "strategic"):
            new_scale = patch.merge_patch(deep_copy(current), body)
        else:
            raise errors.unsupported_media_type(request.headers.get("Content-Type", ""))
    replicas = (new_scale.get("spec") or {}).get("replicas") if isinstance(new_scale, dict) \
        else None
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise errors.invalid("Scale", t.name, [errors.Cause(
            "spec.replicas", f"Invalid value: {replicas!r}: must be greater than or equal to 0")],
            "autoscaling")
    rv = (new_scale.get("metadata") or {}).get("resourceVersion")
    if rv and rv != obj["metadata"]["resourceVersion"]:
        raise errors.conflict(t.rt.plural, t.name, "the object has been modified; please apply "
                              "your changes to the latest version and try again", t.rt.group)
    updated, _ = await reg.patch(t.rt, t.namespace, t.name, "merge",
                                 strategy.replicas_patch(replicas), opts)
    return web.Response(body=neg.dump(strategy.scale_of(updated)),
                        content_type="application/json")


async def bind(reg: ObjectRegistry, namespace: str | None, name: str | None, body: Any,
               opts: WriteOptions) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise errors.bad_request("Binding must be an object")
    name = name or (body.get("metadata") or {}).get("name")
    target = body.get("target") or {}
    node = target.get("name") if isinstance(target, dict) else None
    if not name or not node:
        raise errors.invalid("Binding", name or "", [errors.Cause(
            "target.name", "Required value", errors.REQUIRED)])
    problems = subdomain_problems(str(node))
    if problems:
        raise errors.invalid("Binding", name, [errors.Cause(
            "target.name", f"Invalid value: {node!r}: {problems[0]}", errors.INVALID)])
    pods = reg.kinds.by_kind("", "v1", "Pod")
    assert pods is not None
    uid = (body.get("metadata") or {}).get("uid")

    def assign(pod: Obj) -> Obj:
        """The pod with its node and PodScheduled=True (Kubernetes' assignPod): copies of
        only what changes, since the cached pod is shared and is not ours to change."""
        if pod["metadata"].get("deletionTimestamp"):
            raise errors.conflict("pods", name, "pod is being deleted, cannot be assigned to "
                                  "a host")
        assigned = (pod.get("spec") or {}).get("nodeName")
        if assigned:
            raise errors.conflict("pods", name, f"pod {name} is already assigned to node "
                                  f'"{assigned}"')
        if uid and uid != pod["metadata"].get("uid"):
            raise errors.conflict("pods", name, "Precondition failed: UID in precondition: "
                                  f"{uid}, UID in object meta: {pod['metadata'].get('uid')}")
        status = dict(pod.get("status") or {})
        status["conditions"] = [c for c in status.get("conditions") or []
                                if c.get("type") != "PodScheduled"]
        status["conditions"].append({"type": "PodScheduled", "status": "True",
                                     "lastProbeTime": None,
                                     "lastTransitionTime": now_rfc3339()})
        return {**pod, "spec": {**pod["spec"], "nodeName": node}, "status": status}
    # straight to storage as Kubernetes' binding does: the pod was validated when created
    # and only the node name and a condition change, so the generic update's decoding,
    # validation and managedFields would cost the most of every bind for nothing
    await reg.guaranteed_update(pods, namespace, name, assign, opts, subresource="binding")
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "code": 201}
