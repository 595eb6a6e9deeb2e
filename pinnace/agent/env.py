"""A container's environment, resolved the way the kubelet resolves it.

    env = await container_env(client, pod, container, node_allocatable=alloc)
    argv = expand_command(command, env) + expand_command(args, env)

Order (kubelet's `makeEnvironmentVariables`):
1. `envFrom` sources in order (configMapRef / secretRef, `prefix`, `optional`); keys that
   are not valid environment variable names are skipped (reported through `on_warning`
   as Kubernetes' `InvalidEnvironmentVariableNames` Warning).
2. `env` entries in order, each replacing an earlier value of the same name: `value`
   with `$(VAR)` expanded against everything defined so far and then the service
   variables; else `valueFrom` (configMapKeyRef, secretKeyRef, fieldRef,
   resourceFieldRef). An optional reference that is missing leaves the variable unset.
3. Service variables (`<SVC>_SERVICE_HOST`, `_PORT`, docker links) not already set.

The pod passed in must carry the runtime facts: `status.podIP`/`podIPs` (known once the
sandbox exists: the pod worker fills them from the sandbox before creating containers)
and `status.hostIP`/`hostIPs`. One `container_env` call reads each ConfigMap and Secret
at most once. A failure raises `EnvError` whose text is exactly the message the kubelet
shows with reason `CreateContainerConfigError` (e.g. `configmap "x" not found`).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from fractions import Fraction

from pinnace.api import errors
from pinnace.api.quantity import parse_quantity
from pinnace.api.types import Obj
from pinnace.client.client import Client

WarningHandler = Callable[[str, str], None]
"""Called with (reason, message) for a Warning event on the pod."""

# k8s.io/apimachinery validation.IsEnvVarName
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_SUBSCRIPTED = re.compile(r"^metadata\.(labels|annotations)\['(.*)'\]$")
# resources whose unset limit defaults to the node's allocatable (MergeContainerResourceLimits)
_ALLOCATABLE_DEFAULTED = ("cpu", "memory", "ephemeral-storage")


class EnvError(Exception):
    """The environment cannot be built; str() is the kubelet's waiting message."""


# -- $(VAR) expansion (third_party/forked/golang/expansion) ------------------------------

def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Expand `$(NAME)` references; `$$` is a literal `$`; an unknown name or an unclosed
    `$(` stays as written; any other `$x` is kept."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 == n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":  # escaped operator
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close < 0:  # incomplete reference: keep "$(" and go on after it
                out.append("$(")
                i += 2
                continue
            name = text[i + 2:close]
            value = lookup(name)
            out.append(f"$({name})" if value is None else value)
            i = close + 1
        else:
            out.append(ch + nxt)
            i += 2
    return "".join(out)


def expand_command(args: list[str], env: Mapping[str, str]) -> list[str]:
    """`$(VAR)` expansion of a container's command or args against its environment."""
    return [expand(a, env.get) for a in args]


# -- fieldRef (downward API) --------------------------------------------------------------

def field_ref_value(pod: Obj, field_path: str) -> str:
    """The value of a `fieldRef.fieldPath` of `pod` (podFieldSelectorRuntimeValue)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    match = _SUBSCRIPTED.match(field_path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    if field_path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        return str(meta.get(field_path.split(".")[1], ""))
    if field_path == "spec.nodeName":
        return str(spec.get("nodeName", ""))
    if field_path == "spec.serviceAccountName":
        return str(spec.get("serviceAccountName", ""))
    if field_path in ("status.podIP", "status.podIPs"):
        ips = _ips(status, "podIP", "podIPs")
        return (",".join(ips) if field_path.endswith("s") else (ips[0] if ips else ""))
    if field_path in ("status.hostIP", "status.hostIPs"):
        ips = _ips(status, "hostIP", "hostIPs")
        return (",".join(ips) if field_path.endswith("s") else (ips[0] if ips else ""))
    raise EnvError(f"unsupported fieldPath: {field_path}")


def _ips(status: Obj, single: str, plural: str) -> list[str]:
    ips = [e["ip"] for e in status.get(plural) or [] if e.get("ip")]
    if not ips and status.get(single):
        ips = [status[single]]
    # the kubelet lists the node's preferred family (IPv4 here) first
    return sorted(ips, key=lambda ip: _family(ip) != 4)


def _family(ip: str) -> int:
    try:
        return ipaddress.ip_address(ip).version
    except ValueError:
        return 0


# -- resourceFieldRef ---------------------------------------------------------------------

def resource_field_value(pod: Obj, container: Obj, ref: Obj,
                         node_allocatable: Mapping[str, str] | None = None) -> str:
    """The value of a `resourceFieldRef` (ExtractContainerResourceValue): the quantity
    divided by `divisor` (default 1), rounded up; CPU in millicores first. A limit the
    container does not set is the node's allocatable."""
    name = ref.get("containerName") or ""
    if name and name != container.get("name"):
        spec = pod.get("spec") or {}
        found = [c for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])
                 if c.get("name") == name]
        if not found:
            raise EnvError(f"container {name} not found")
        container = found[0]
    resource = str(ref.get("resource", ""))
    kind, _, resource_name = resource.partition(".")
    if kind not in ("limits", "requests") or not (
            resource_name in _ALLOCATABLE_DEFAULTED or resource_name.startswith("hugepages-")):
        raise EnvError(f"unsupported container resource : {resource}")
    amounts = (container.get("resources") or {}).get(kind) or {}
    raw = amounts.get(resource_name)
    if raw is None and kind == "limits" and resource_name in _ALLOCATABLE_DEFAULTED:
        raw = (node_allocatable or {}).get(resource_name)
    try:
        value = parse_quantity(raw) if raw is not None else Fraction(0)
        divisor = parse_quantity(ref["divisor"]) if ref.get("divisor") else Fraction(0)
    except ValueError as e:
        raise EnvError(str(e)) from None
    if divisor == 0:
        divisor = Fraction(1)
    if resource_name == "cpu":  # milli values, each rounded up, then the ratio rounded up
        return str(math.ceil(Fraction(math.ceil(value * 1000), math.ceil(divisor * 1000))))
    return str(math.ceil(Fraction(math.ceil(value), math.ceil(divisor))))


# -- service links (pkg/kubelet/envvars) --------------------------------------------------

def _env_name(name: str) -> str:
    return name.replace("-", "_").upper()


def service_link_vars(service: Obj) -> dict[str, str]:
    """The variables one Service gives a container (none when it has no cluster IP)."""
    spec = service.get("spec") or {}
    ip = spec.get("clusterIP") or ""
    ports = spec.get("ports") or []
    if ip in ("", "None") or not ports:
        return {}
    prefix = _env_name(service["metadata"]["name"])
    out = {f"{prefix}_SERVICE_HOST": ip, f"{prefix}_SERVICE_PORT": str(ports[0]["port"])}
    for p in ports:
        if p.get("name"):
            out[f"{prefix}_SERVICE_PORT_{_env_name(p['name'])}"] = str(p["port"])
    host = f"[{ip}]" if ":" in ip else ip
    for i, p in enumerate(ports):  # docker-link compatible variables
        proto = (p.get("protocol") or "TCP")
        url = f"{proto.lower()}://{host}:{p['port']}"
        if i == 0:
            out[f"{prefix}_PORT"] = url
        port_prefix = f"{prefix}_PORT_{p['port']}_{proto.upper()}"
        out[port_prefix] = url
        out[f"{port_prefix}_PROTO"] = proto.lower()
        out[f"{port_prefix}_PORT"] = str(p["port"])
        out[f"{port_prefix}_ADDR"] = ip
    return out


async def service_env(client: Client, namespace: str, *,
                      enable_service_links: bool = True) -> dict[str, str]:
    """Service variables for a pod in `namespace`: those of `default/kubernetes` always,
    and of every Service in the namespace unless the pod disables service links."""
    services_rt = client.resource("v1", "Service")
    chosen: dict[str, Obj] = {}
    if enable_service_links:
        for svc in (await client.list(services_rt, namespace)).get("items") or []:
            chosen[svc["metadata"]["name"]] = svc
    if namespace != "default" or "kubernetes" not in chosen:
        try:
            chosen["kubernetes"] = await client.get(services_rt, "kubernetes", "default")
        except errors.ApiError as e:
            if e.code != 404:
                raise
    out: dict[str, str] = {}
    for name in sorted(chosen):
        out.update(service_link_vars(chosen[name]))
    return out


# -- the whole environment ----------------------------------------------------------------

class _Sources:
    """ConfigMaps and Secrets of one namespace, each read once per resolution."""

    def __init__(self, client: Client, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self.cache: dict[tuple[str, str], dict[str, str] | None] = {}

    async def data(self, kind: str, name: str, optional: bool) -> dict[str, str] | None:
        """The object's data (secret values decoded); None if it is missing and optional."""
        key = (kind, name)
        if key not in self.cache:
            try:
                obj = await self.client.get(self.client.resource("v1", kind), name,
                                            self.namespace)
            except errors.ApiError as e:
                if e.code != 404:
                    raise EnvError(e.message) from None
                self.cache[key] = None
            else:
                data = obj.get("data") or {}
                self.cache[key] = (dict(data) if kind == "ConfigMap"
                                   else {k: _decode(v) for k, v in data.items()})
        found = self.cache[key]
        if found is None and not optional:
            raise EnvError(f'{kind.lower()} "{name}" not found')
        return found


def _decode(value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return value


async def container_env(client: Client, pod: Obj, container: Obj, *,
                        node_allocatable: Mapping[str, str] | None = None,
                        services: Mapping[str, str] | None = None,
                        on_warning: WarningHandler | None = None) -> dict[str, str]:
    """Everything the kubelet puts in `container`'s environment, in its order.

    `services`: the pod's service variables when the caller already has them (they are
    the same for every container of a pod); None reads them through `service_env`.
    """
    meta = pod.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    if services is None:
        links = (pod.get("spec") or {}).get("enableServiceLinks")
        services = await service_env(client, namespace,
                                     enable_service_links=links is not False)
    sources = _Sources(client, namespace)
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        ref, kind = ((source["configMapRef"], "ConfigMap") if source.get("configMapRef")
                     else (source.get("secretRef"), "Secret"))
        if not ref:
            continue
        data = await sources.data(kind, ref.get("name", ""), bool(ref.get("optional")))
        if data is None:
            continue
        prefix = source.get("prefix") or ""
        invalid = []
        for key, value in data.items():
            if _ENV_NAME.match(prefix + key):
                env[prefix + key] = value
            else:
                invalid.append(prefix + key)
        if invalid and on_warning is not None:
            on_warning("InvalidEnvironmentVariableNames",
                       f"Keys [{', '.join(sorted(invalid))}] from the EnvFrom "
                       f"{'configMap' if kind == 'ConfigMap' else 'secret'} "
                       f"{namespace}/{ref.get('name', '')} were skipped since they are "
                       "considered invalid environment variable names.")

    def lookup(name: str) -> str | None:
        return env[name] if name in env else services.get(name)

    for var in container.get("env") or []:
        name = var["name"]
        value = var.get("value") or ""
        source = var.get("valueFrom")
        if value:
            value = expand(value, lookup)
        elif source:
            resolved = await _value_from(sources, pod, container, source, namespace,
                                         node_allocatable)
            if resolved is None:  # optional and missing: the variable stays unset
                continue
            value = resolved
        env[name] = value
    for name, value in services.items():
        env.setdefault(name, value)
    return env


async def _value_from(sources: _Sources, pod: Obj, container: Obj, source: Obj,
                      namespace: str, node_allocatable: Mapping[str, str] | None
                      ) -> str | None:
    if source.get("fieldRef"):
        return field_ref_value(pod, source["fieldRef"].get("fieldPath", ""))
    if source.get("resourceFieldRef"):
        return resource_field_value(pod, container, source["resourceFieldRef"],
                                    node_allocatable)
    for field, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
        ref = source.get(field)
        if not ref:
            continue
        optional = bool(ref.get("optional"))
        name, key = ref.get("name", ""), ref.get("key", "")
        data = await sources.data(kind, name, optional)
        if data is None:
            return None
        if key not in data:
            if optional:
                return None
            raise EnvError(f"couldn't find key {key} in {kind} {namespace}/{name}")
        return data[key]
    return ""
