"""Container environment without a server: $(VAR) expansion, fieldRef, resourceFieldRef
rounding, order and precedence, service link variables."""

from __future__ import annotations

from typing import Any

import pytest

from pinnace.agent.env import (
    EnvError,
    container_env,
    expand,
    expand_command,
    field_ref_value,
    resource_field_value,
    service_link_vars,
)


def pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web-0", "namespace": "shop", "uid": "u-1",
                         "labels": {"app": "web"}, "annotations": {"a/b": "x y"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "sa", **spec},
            "status": {"podIP": "10.1.0.5", "podIPs": [{"ip": "10.1.0.5"}, {"ip": "fd00::5"}],
                       "hostIP": "192.168.1.2"}}


@pytest.mark.parametrize("text, want", [
    ("$(A)", "alpha"),
    ("x$(A)y$(B)z", "xalphaybetaz"),
    ("$$(A)", "$(A)"),           # escaped reference
    ("$$$(A)", "$alpha"),
    ("$$", "$"),
    ("$(MISSING)", "$(MISSING)"),  # unknown stays as written
    ("$(A", "$(A"),              # unclosed
    ("$A", "$A"),
    ("a$", "a$"),
    ("$()", "$()"),
    ("$(A)$(A)", "alphaalpha"),
    ("(A)$", "(A)$"),
])
def test_expand(text: str, want: str) -> None:
    assert expand(text, {"A": "alpha", "B": "beta"}.get) == want


def test_expand_command() -> None:
    env = {"GREETING": "hi", "NAME": "pod"}
    assert expand_command(["sh", "-c", "echo $(GREETING) $(NAME) $$(NAME) $HOME"], env) == \
        ["sh", "-c", "echo hi pod $(NAME) $HOME"]


@pytest.mark.parametrize("path, want", [
    ("metadata.name", "web-0"),
    ("metadata.namespace", "shop"),
    ("metadata.uid", "u-1"),
    ("metadata.labels['app']", "web"),
    ("metadata.labels['none']", ""),
    ("metadata.annotations['a/b']", "x y"),
    ("spec.nodeName", "n1"),
    ("spec.serviceAccountName", "sa"),
    ("status.podIP", "10.1.0.5"),
    ("status.podIPs", "10.1.0.5,fd00::5"),
    ("status.hostIP", "192.168.1.2"),
    ("status.hostIPs", "192.168.1.2"),
])
def test_field_ref(path: str, want: str) -> None:
    assert field_ref_value(pod(), path) == want


def test_field_ref_unsupported() -> None:
    with pytest.raises(EnvError, match=r"^unsupported fieldPath: spec.foo$"):
        field_ref_value(pod(), "spec.foo")


CONTAINER = {"name": "app", "resources": {
    "limits": {"cpu": "250m", "memory": "64Mi"},
    "requests": {"cpu": "1100m", "memory": "1000001", "ephemeral-storage": "1Gi"}}}


@pytest.mark.parametrize("resource, divisor, want", [
    ("limits.cpu", None, "1"),          # 250m rounds up to 1 core
    ("limits.cpu", "1m", "250"),
    ("requests.cpu", None, "2"),        # 1.1 -> 2
    ("requests.cpu", "1m", "1100"),
    ("limits.memory", None, str(64 * 2**20)),
    ("limits.memory", "1Mi", "64"),
    ("limits.memory", "1M", "68"),      # 67.108864 -> 68
    ("requests.memory", "1k", "1001"),  # 1000.001 -> 1001
    ("requests.ephemeral-storage", "1Mi", "1024"),
    ("limits.ephemeral-storage", "1Gi", "10"),  # unset: the node's allocatable
    ("requests.hugepages-2Mi", None, "0"),
])
def test_resource_field_ref(resource: str, divisor: str | None, want: str) -> None:
    ref = {"resource": resource, **({"divisor": divisor} if divisor else {})}
    alloc = {"cpu": "4", "memory": "8Gi", "ephemeral-storage": "10Gi"}
    assert resource_field_value(pod(), CONTAINER, ref, alloc) == want


def test_resource_limits_default_to_allocatable() -> None:
    bare = {"name": "app"}
    alloc = {"cpu": "3500m", "memory": "2Gi"}
    assert resource_field_value(pod(), bare, {"resource": "limits.cpu"}, alloc) == "4"
    assert resource_field_value(pod(), bare, {"resource": "limits.memory",
                                              "divisor": "1Mi"}, alloc) == "2048"
    assert resource_field_value(pod(), bare, {"resource": "requests.cpu"}, alloc) == "0"


def test_resource_field_ref_other_container_and_errors() -> None:
    p = pod(containers=[{"name": "app"}, CONTAINER | {"name": "side"}])
    ref = {"resource": "limits.cpu", "divisor": "1m", "containerName": "side"}
    assert resource_field_value(p, {"name": "app"}, ref) == "250"
    with pytest.raises(EnvError, match=r"^container nope not found$"):
        resource_field_value(p, {"name": "app"}, {**ref, "containerName": "nope"})
    with pytest.raises(EnvError, match=r"^unsupported container resource : limits.gpu$"):
        resource_field_value(p, {"name": "app"}, {"resource": "limits.gpu"})


async def test_order_precedence_and_expansion() -> None:
    c = {"name": "app", "resources": {"limits": {"memory": "128Mi"}}, "env": [
        {"name": "A", "value": "one"},
        {"name": "B", "value": "$(A)-two-$(LATER)-$(SVC_SERVICE_HOST)"},
        {"name": "LATER", "value": "late"},
        {"name": "A", "value": "again:$(A)"},  # a later entry replaces, seeing the earlier
        {"name": "EMPTY"},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                           "divisor": "1Mi"}}},
        {"name": "REF", "value": "$(POD)@$(MEM)"},
    ]}
    services = {"SVC_SERVICE_HOST": "10.96.0.9", "A": "from-service"}
    env = await container_env(None, pod(), c, services=services)  # type: ignore[arg-type]
    assert env == {"A": "again:one", "B": "one-two-$(LATER)-10.96.0.9", "LATER": "late",
                   "EMPTY": "", "POD": "web-0", "MEM": "128", "REF": "web-0@128",
                   "SVC_SERVICE_HOST": "10.96.0.9"}
    assert list(env)[-1] == "SVC_SERVICE_HOST"  # service variables come last


def test_service_link_vars() -> None:
    svc = {"metadata": {"name": "redis-primary"}, "spec": {"clusterIP": "10.0.0.11", "ports": [
        {"name": "db", "port": 6379}, {"name": "metrics", "port": 9121, "protocol": "UDP"}]}}
    assert service_link_vars(svc) == {
        "REDIS_PRIMARY_SERVICE_HOST": "10.0.0.11",
        "REDIS_PRIMARY_SERVICE_PORT": "6379",
        "REDIS_PRIMARY_SERVICE_PORT_DB": "6379",
        "REDIS_PRIMARY_SERVICE_PORT_METRICS": "9121",
        "REDIS_PRIMARY_PORT": "tcp://10.0.0.11:6379",
        "REDIS_PRIMARY_PORT_6379_TCP": "tcp://10.0.0.11:6379",
        "REDIS_PRIMARY_PORT_6379_TCP_PROTO": "tcp",
        "REDIS_PRIMARY_PORT_6379_TCP_PORT": "6379",
        "REDIS_PRIMARY_PORT_6379_TCP_ADDR": "10.0.0.11",
        "REDIS_PRIMARY_PORT_9121_UDP": "udp://10.0.0.11:9121",
        "REDIS_PRIMARY_PORT_9121_UDP_PROTO": "udp",
        "REDIS_PRIMARY_PORT_9121_UDP_PORT": "9121",
        "REDIS_PRIMARY_PORT_9121_UDP_ADDR": "10.0.0.11",
    }
    headless = {"metadata": {"name": "h"}, "spec": {"clusterIP": "None",
                                                    "ports": [{"port": 80}]}}
    assert service_link_vars(headless) == {}
