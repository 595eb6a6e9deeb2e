"""Custom resources through the official client's CustomObjectsApi and a kopf operator,
against `pinnace server` (issue 11, done-when 1 and 3)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.cluster import Cluster

pytestmark = pytest.mark.e2e

GROUP = "e2e.example.com"


def crd(plural: str, kind: str, *, short: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP, "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind,
                      "shortNames": [short]},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "subresources": {"status": {}, "scale": {
                    "specReplicasPath": ".spec.replicas",
                    "statusReplicasPath": ".status.replicas"}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "object", "required": ["size"], "properties": {
                            "size": {"type": "integer", "minimum": 1},
                            "replicas": {"type": "integer", "default": 1},
                            "motto": {"type": "string", "maxLength": 10,
                                      "default": "hi"}}},
                        # operators keep their own records in status (kopf does)
                        "status": {"type": "object",
                                   "x-kubernetes-preserve-unknown-fields": True},
                    }}},
            }],
        },
    }


def until(cond: Callable[[], Any], within: float = 30.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def define(cluster: Cluster, definition: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(definition))
    cluster.kubectl("wait", "--for=condition=established", "--timeout=20s",
                    f"crd/{definition['metadata']['name']}")


def test_custom_objects_api(cluster: Cluster) -> None:
    from kubernetes import client, watch
    from kubernetes.client.rest import ApiException
    define(cluster, crd("gadgets", "Gadget", short="gd"))
    api = client.CustomObjectsApi(cluster.client())
    args = (GROUP, "v1", "default", "gadgets")

    created = api.create_namespaced_custom_object(*args, {
        "apiVersion": f"{GROUP}/v1", "kind": "Gadget",
        "metadata": {"name": "g1", "labels": {"tier": "gold"}}, "spec": {"size": 2}})
    assert created["spec"] == {"size": 2, "replicas": 1, "motto": "hi"}
    api.create_namespaced_custom_object(*args, {
        "apiVersion": f"{GROUP}/v1", "kind": "Gadget", "metadata": {"name": "g2"},
        "spec": {"size": 3}})

    with pytest.raises(ApiException) as bad:
        api.create_namespaced_custom_object(*args, {
            "apiVersion": f"{GROUP}/v1", "kind": "Gadget", "metadata": {"name": "g3"},
            "spec": {"size": 0, "motto": "far too long a motto"}})
    assert bad.value.status == 422
    causes = json.loads(bad.value.body)["details"]["causes"]
    assert sorted(c["field"] for c in causes) == ["spec.motto", "spec.size"]

    assert [o["metadata"]["name"] for o in api.list_namespaced_custom_object(
        *args, label_selector="tier=gold")["items"]] == ["g1"]
    assert [o["metadata"]["name"] for o in api.list_namespaced_custom_object(
        *args, field_selector="metadata.name=g2")["items"]] == ["g2"]

    patched = api.patch_namespaced_custom_object(*args, "g1", {"spec": {"size": 5}})
    assert patched["spec"]["size"] == 5 and patched["metadata"]["generation"] == 2
    status = api.patch_namespaced_custom_object_status(
        *args, "g1", {"status": {"replicas": 1}, "spec": {"size": 9}})
    assert status["status"] == {"replicas": 1} and status["spec"]["size"] == 5
    assert status["metadata"]["generation"] == 2
    cluster.kubectl("scale", "gadget/g1", "--replicas=3")
    assert api.get_namespaced_custom_object_scale(*args, "g1")["spec"]["replicas"] == 3

    # server-side apply (taking spec.size from its creator: a conflict otherwise, as in
    # Kubernetes), then a watch sees the change
    rv = api.list_namespaced_custom_object(*args)["metadata"]["resourceVersion"]
    cluster.kubectl("apply", "--server-side", "--field-manager=e2e", "--force-conflicts",
                    "-f", "-", input=yaml.safe_dump({
                        "apiVersion": f"{GROUP}/v1", "kind": "Gadget",
                        "metadata": {"name": "g2"}, "spec": {"size": 4}}))
    events = watch.Watch().stream(api.list_namespaced_custom_object, *args,
                                  resource_version=rv, timeout_seconds=5)
    first = next(iter(events))
    assert first["type"] == "MODIFIED" and first["object"]["spec"]["size"] == 4
    managers = {m["manager"] for m in first["object"]["metadata"]["managedFields"]}
    assert "e2e" in managers

    table = cluster.kubectl("get", "gd").stdout
    assert table.split("\n")[0].split() == ["NAME", "AGE"]
    api.delete_collection_namespaced_custom_object(*args)
    until(lambda: not api.list_namespaced_custom_object(*args)["items"])


OPERATOR = '''
import os
import kopf

@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_):
    settings.posting.level = 40  # errors only: fewer events to write
    settings.watching.server_timeout = 30

@kopf.on.create("e2e.example.com", "v1", "widgets")
def created(spec, **_):
    return {"size": spec["size"]}

@kopf.on.update("e2e.example.com", "v1", "widgets")
def updated(spec, **_):
    return {"size": spec["size"]}

@kopf.on.delete("e2e.example.com", "v1", "widgets")
def deleted(name, **_):
    with open(os.path.join(os.environ["OUT_DIR"], name + ".deleted"), "w") as f:
        f.write("done")
'''


@pytest.fixture
def operator(cluster: Cluster, tmp_path: Path) -> Iterator[Path]:
    """A kopf operator (PyPI, unchanged) running against the cluster; stopped by PID."""
    define(cluster, crd("widgets", "Widget", short="wg"))
    source = tmp_path / "operator.py"
    source.write_text(OPERATOR)
    env = {**cluster.env(), "OUT_DIR": str(tmp_path)}
    log = open(tmp_path / "kopf.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kopf", "run", "--standalone", "--namespace", "default",
         str(source)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield tmp_path
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


def test_kopf_operator(cluster: Cluster, operator: Path) -> None:
    def get() -> dict[str, Any] | None:
        r = cluster.kubectl("get", "widget", "w1", "-o", "json", check=False)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def log() -> str:
        return (operator / "kopf.log").read_text(errors="replace")[-3000:]

    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": "w1"},
        "spec": {"size": 1}}))
    try:
        obj = until(lambda: (o := get()) and (o.get("status") or {}).get("created") and o)
        assert obj["status"]["created"] == {"size": 1}
        # the operator's finalizer, because it has a delete handler
        assert any("kopf" in f for f in obj["metadata"].get("finalizers") or [])

        cluster.kubectl("patch", "widget", "w1", "--type=merge", "-p", '{"spec":{"size":2}}')
        obj = until(lambda: (o := get()) and (o.get("status") or {}).get("updated") and o)
        assert obj["status"]["updated"] == {"size": 2}

        cluster.kubectl("delete", "widget", "w1", "--wait=false")
        until(lambda: get() is None)
        # the object went only after the delete handler had run (the finalizer held it)
        assert (operator / "w1.deleted").read_text() == "done"
    except AssertionError as e:
        raise AssertionError(f"{e}\nkopf log:\n{log()}") from None
