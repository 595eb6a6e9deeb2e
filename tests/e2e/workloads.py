"""Shared helpers for the workload e2e tests (simulated nodes, kubectl, pod watches).

Design: every test file starts one `pinnace up --fake-nodes 3` per module
(`start_fake_cluster`), and every test works in its own namespace so tests in a
file share the cluster without seeing each other's pods. Invariants that must
hold *during* a rollout are checked by `PodWatch`: a thread running the official
client's watch, keeping the namespace's pods as the API server reports them and
calling a checker after every event, so each check sees the pod set at one
resourceVersion (watch events are ordered), not a racy poll.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch

from tests.e2e.cluster import Cluster

_ns_counter = itertools.count()


@contextmanager
def start_fake_cluster(tmp_path_factory: pytest.TempPathFactory,
                       *extra: str) -> Iterator[Cluster]:
    """A `pinnace up --fake-nodes 3` with `extra` flags, stopped on exit."""
    base = tmp_path_factory.mktemp("fake-cluster")
    c = Cluster(data_dir=base / "data", home=base / "home")
    c.home.mkdir()
    c.start(extra=("--fake-nodes", "3", *extra))
    try:
        wait_for(lambda: len(ready_nodes(c)) >= 3, timeout=20, what="3 Ready fake nodes")
        yield c
    finally:
        c.stop()


def wait_for(predicate: Callable[[], Any], *, timeout: float = 20, interval: float = 0.1,
             what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; return that value (a timeout
    names `what` and shows the last value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                 f"last: {value!r}")
        time.sleep(interval)


def get_json(c: Cluster, *args: str) -> dict[str, Any]:
    """`kubectl get ARGS -o json`, parsed."""
    return json.loads(c.kubectl("get", *args, "-o", "json").stdout)


def items(c: Cluster, *args: str) -> list[dict[str, Any]]:
    """The items of `kubectl get ARGS -o json` (a list)."""
    return get_json(c, *args)["items"]


def ready_nodes(c: Cluster) -> list[str]:
    out = []
    for node in items(c, "nodes"):
        conds = {x["type"]: x["status"] for x in node.get("status", {}).get("conditions", [])}
        if conds.get("Ready") == "True":
            out.append(node["metadata"]["name"])
    return out


def new_namespace(c: Cluster, prefix: str) -> str:
    """Create a fresh namespace for one test."""
    name = f"{prefix}-{next(_ns_counter)}"
    c.kubectl("create", "namespace", name)
    return name


def apply(c: Cluster, manifest: str | Path, *args: str) -> str:
    """`kubectl apply` a manifest given as text or a path."""
    if isinstance(manifest, Path):
        return c.kubectl("apply", "-f", str(manifest), *args).stdout
    return c.kubectl("apply", "-f", "-", *args, input=manifest).stdout


def is_terminating(pod: dict[str, Any]) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def is_finished(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def is_ready(pod: dict[str, Any]) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def live(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pods neither terminating nor finished (what a controller counts as active)."""
    return [p for p in pods if not is_terminating(p) and not is_finished(p)]


class PodWatch:
    """Watch a namespace's pods in a thread, calling `check(pods)` after each event.

    `pods` is a dict name -> pod (as a plain dict, camelCase like kubectl's JSON).
    `events` records (wall-clock time, type, name) for every event received.
    """

    def __init__(self, c: Cluster, namespace: str, *, label_selector: str = "",
                 check: Callable[[dict[str, dict[str, Any]]], None] | None = None) -> None:
        self.api = c.client()
        self.namespace = namespace
        self.label_selector = label_selector
        self.check = check
        self.pods: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[float, str, str]] = []
        self.errors: list[BaseException] = []
        self._watch = watch.Watch()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PodWatch:
        self._thread.start()
        assert self._started.wait(10), "pod watch did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._watch.stop()
        self._thread.join(5)
        self.api.close()

    def _run(self) -> None:
        core = client.CoreV1Api(self.api)
        try:
            listed = core.list_namespaced_pod(self.namespace, label_selector=self.label_selector)
            for pod in listed.items:
                self.pods[pod.metadata.name] = self.api.sanitize_for_serialization(pod)
            rv = listed.metadata.resource_version
            self._started.set()
            for event in self._watch.stream(core.list_namespaced_pod, self.namespace,
                                            label_selector=self.label_selector,
                                            resource_version=rv, timeout_seconds=120):
                pod = self.api.sanitize_for_serialization(event["object"])
                name = pod["metadata"]["name"]
                self.events.append((time.time(), event["type"], name))
                if event["type"] == "DELETED":
                    self.pods.pop(name, None)
                else:
                    self.pods[name] = pod
                if self.check is not None:
                    self.check(self.pods)
        except BaseException as e:  # surfaced by assert_ok in the test's thread
            self.errors.append(e)
            self._started.set()

    def assert_ok(self) -> None:
        if self.errors:
            raise self.errors[0]

    def added(self) -> list[tuple[float, str]]:
        """(wall-clock arrival time, pod name) of each ADDED event, in order."""
        return [(t, name) for t, kind, name in self.events if kind == "ADDED"]


def fake_node_manifest(name: str, labels: dict[str, str] | None = None) -> str:
    """A Node that pinnace turns into a simulated node."""
    return json.dumps({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels or {},
                     "annotations": {"pinnace.io/fake": "true"}}})
