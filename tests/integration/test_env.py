"""Container environment against a real API server: ConfigMaps, Secrets and Services
created through the client, resolved by `container_env` as the pod worker calls it."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from pinnace.agent.env import EnvError, container_env, service_env


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "default", "uid": "u"},
            "spec": {"nodeName": "n1", **spec},
            "status": {"podIP": "10.1.0.5", "hostIP": "192.168.1.2"}}


@pytest.fixture
async def objects(client: Any) -> Any:
    await client.create(client.resource("v1", "ConfigMap"), {
        "metadata": {"name": "cfg", "namespace": "default"},
        "data": {"LOG_LEVEL": "debug", "MODE": "fast", "1bad": "x", "2alsobad": "y"}})
    await client.create(client.resource("v1", "Secret"), {
        "metadata": {"name": "creds", "namespace": "default"},
        "data": {"user": b64("admin"), "password": b64("s3cr:et")}})
    return client


async def test_env_from_and_value_from(objects: Any) -> None:
    warnings: list[tuple[str, str]] = []
    c = {"name": "app", "envFrom": [
        {"configMapRef": {"name": "cfg"}},
        {"secretRef": {"name": "creds"}, "prefix": "DB_"},
        {"configMapRef": {"name": "absent", "optional": True}},
    ], "env": [
        {"name": "MODE", "value": "slow ($(MODE))"},  # env overrides envFrom
        {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "LOG_LEVEL"}}},
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds",
                                                            "key": "password"}}},
        {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nope",
                                                       "optional": True}}},
        {"name": "OPT2", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k",
                                                           "optional": True}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]}
    env = await container_env(objects, pod(enableServiceLinks=False), c,
                              on_warning=lambda r, m: warnings.append((r, m)))
    mine = {k: v for k, v in env.items() if not k.startswith("KUBERNETES_")}
    assert mine == {"LOG_LEVEL": "debug", "MODE": "slow (fast)", "DB_user": "admin",
                    "DB_password": "s3cr:et", "LEVEL": "debug", "PASSWORD": "s3cr:et",
                    "IP": "10.1.0.5"}
    assert warnings == [("InvalidEnvironmentVariableNames",
                         "Keys [1bad, 2alsobad] from the EnvFrom configMap default/cfg were "
                         "skipped since they are considered invalid environment variable "
                         "names.")]


@pytest.mark.parametrize("env_from, env, message", [
    ([{"configMapRef": {"name": "x"}}], [], 'configmap "x" not found'),
    ([{"secretRef": {"name": "s"}}], [], 'secret "s" not found'),
    ([], [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "x", "key": "y"}}}],
     'configmap "x" not found'),
    ([], [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "y"}}}],
     "couldn't find key y in ConfigMap default/cfg"),
    ([], [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k"}}}],
     "couldn't find key k in Secret default/creds"),
    ([], [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
     'secret "s" not found'),
])
async def test_kubelet_error_messages(objects: Any, env_from: list[Any], env: list[Any],
                                      message: str) -> None:
    c = {"name": "app", "envFrom": env_from, "env": env}
    with pytest.raises(EnvError) as failed:
        await container_env(objects, pod(), c)
    assert str(failed.value) == message


async def test_service_links(client: Any) -> None:
    services = client.resource("v1", "Service")
    await client.create(services, {"metadata": {"name": "web-api", "namespace": "default"},
                                   "spec": {"ports": [{"port": 8080, "name": "http"}]}})
    await client.create(client.resource("v1", "Namespace"), {"metadata": {"name": "other"}})
    await client.create(services, {"metadata": {"name": "elsewhere", "namespace": "other"},
                                   "spec": {"ports": [{"port": 80}]}})
    web = await client.get(services, "web-api", "default")
    kube = await client.get(services, "kubernetes", "default")
    ip, kube_ip = web["spec"]["clusterIP"], kube["spec"]["clusterIP"]

    env = await service_env(client, "default")
    assert env["WEB_API_SERVICE_HOST"] == ip
    assert env["WEB_API_SERVICE_PORT"] == env["WEB_API_SERVICE_PORT_HTTP"] == "8080"
    assert env["WEB_API_PORT"] == f"tcp://{ip}:8080"
    assert env["WEB_API_PORT_8080_TCP_ADDR"] == ip
    assert env["KUBERNETES_SERVICE_HOST"] == kube_ip
    assert "ELSEWHERE_SERVICE_HOST" not in env

    # the kubernetes service is there even without service links; in `other` too
    c = {"name": "app", "env": [{"name": "URL", "value": "https://$(KUBERNETES_SERVICE_HOST)"}]}
    no_links = await container_env(client, pod(enableServiceLinks=False), c)
    assert no_links["URL"] == f"https://{kube_ip}"
    assert "WEB_API_SERVICE_HOST" not in no_links
    assert no_links["KUBERNETES_SERVICE_PORT"] == str(kube["spec"]["ports"][0]["port"])
    other = await service_env(client, "other")
    assert {"ELSEWHERE_SERVICE_HOST", "KUBERNETES_SERVICE_HOST"} <= set(other)
    assert "WEB_API_SERVICE_HOST" not in other
