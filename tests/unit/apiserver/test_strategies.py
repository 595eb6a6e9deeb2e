"""Per-kind strategies and list options, without a server."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pinnace.apiserver.registry as registry_module
from pinnace.api import errors
from pinnace.api.kinds import REGISTRY
from pinnace.apiserver import strategies
from pinnace.apiserver.allocators import ServiceAllocator
from pinnace.apiserver.list_options import ListOptions, parse_resource_version
from pinnace.apiserver.strategies.jobs import JobStrategy
from pinnace.apiserver.strategies.namespaces import NamespaceStrategy
from pinnace.apiserver.strategies.pods import PodStrategy
from pinnace.apiserver.strategies.services import ServiceStrategy
from pinnace.apiserver.strategy import DefaultStrategy, StrategyContext

CTX = StrategyContext(services=ServiceAllocator())


def kind(group: str, name: str):
    rt = next((r for r in REGISTRY if r.group == group and r.kind == name), None)
    assert rt is not None
    return rt


def test_every_kind_has_a_strategy() -> None:
    table = strategies.build(REGISTRY, CTX)
    assert set(table) == set(REGISTRY)
    assert isinstance(table[kind("", "Pod")], PodStrategy)
    assert isinstance(table[kind("", "Service")], ServiceStrategy)
    assert isinstance(table[kind("", "Namespace")], NamespaceStrategy)
    assert isinstance(table[kind("batch", "Job")], JobStrategy)
    assert type(table[kind("", "ConfigMap")]) is DefaultStrategy


def test_generation_and_deleted_object_rules() -> None:
    table = strategies.build(REGISTRY, CTX)
    tracked = {rt.kind for rt, s in table.items() if getattr(s, "tracks_generation", False)}
    assert tracked == {"Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "Job",
                       "CronJob", "CustomResourceDefinition"}
    returned = {(rt.group, rt.kind) for rt, s in table.items() if s.returns_deleted_object}
    assert returned == {("", "Pod"), ("", "PersistentVolumeClaim"), ("", "PersistentVolume"),
                        ("", "Service"), ("", "ServiceAccount"),
                        ("storage.k8s.io", "StorageClass")}


def test_registry_has_no_per_kind_branch() -> None:
    source = Path(registry_module.__file__).read_text()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            # a decision on the resource type's kind or group is the strategy's
            operands = [node.left, *node.comparators]
            assert not (any(isinstance(o, ast.Attribute) and o.attr in ("kind", "group")
                            for o in operands)
                        and any(isinstance(o, ast.Constant | ast.Set | ast.Tuple)
                                for o in operands)), ast.unparse(node)
    assert "_is_core" not in source and "rt.kind ==" not in source


def test_pod_grace_period() -> None:
    s = PodStrategy(kind("", "Pod"), CTX)
    bound = {"spec": {"nodeName": "n", "terminationGracePeriodSeconds": 12},
             "status": {"phase": "Running"}}
    assert s.grace_period(bound, {}) == 12
    assert s.grace_period(bound, {"gracePeriodSeconds": 0}) == 0
    assert s.grace_period(bound, {"gracePeriodSeconds": -5}) == 0
    assert s.grace_period({"spec": {}, "status": {}}, {}) == 0  # never scheduled
    done = {"spec": {"nodeName": "n"}, "status": {"phase": "Succeeded"}}
    assert s.grace_period(done, {}) == 0
    assert s.grace_period({"spec": {"nodeName": "n"}}, {}) == 30


def test_pod_subresource_merges() -> None:
    s = PodStrategy(kind("", "Pod"), CTX)
    old = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]},
           "status": {"phase": "Pending"}}
    new = {"metadata": {"name": "p"}, "spec": {"nodeName": "n", "containers": []},
           "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled"}]}}
    bound = s.prepare_for_update(new, old, "binding")
    assert bound["spec"] == {"containers": [{"name": "c"}], "nodeName": "n"}
    assert bound["status"]["conditions"] == [{"type": "PodScheduled"}]
    main = s.prepare_for_update({"metadata": {}, "spec": {"containers": []},
                                 "status": {"phase": "Failed"}}, old, "")
    assert main["status"] == {"phase": "Pending"}  # status belongs to its endpoint
    eph = s.prepare_for_update({"spec": {"ephemeralContainers": [{"name": "dbg"}]}}, old,
                               "ephemeralcontainers")
    assert eph["spec"]["ephemeralContainers"] == [{"name": "dbg"}]
    assert eph["spec"]["containers"] == [{"name": "c"}]
    assert old["spec"] == {"containers": [{"name": "c"}]}  # merged into a copy


def test_pod_admission_adds_default_tolerations() -> None:
    pod = {"spec": {"tolerations": [{"key": "node.kubernetes.io/unreachable",
                                     "operator": "Exists", "effect": "NoExecute",
                                     "tolerationSeconds": 5}]}}
    PodStrategy(kind("", "Pod"), CTX).admit_create(pod)
    assert [(t["key"], t["tolerationSeconds"]) for t in pod["spec"]["tolerations"]] == [
        ("node.kubernetes.io/unreachable", 5), ("node.kubernetes.io/not-ready", 300)]


def test_namespace_rules() -> None:
    s = NamespaceStrategy(kind("", "Namespace"), CTX)
    old = {"metadata": {"name": "a"}, "spec": {"finalizers": ["kubernetes"]},
           "status": {"phase": "Active"}}
    kept = s.prepare_for_update({"metadata": {"name": "a"}, "spec": {}}, old, "")
    assert kept["spec"] == {"finalizers": ["kubernetes"]}
    finalized = s.prepare_for_update({"spec": {"finalizers": []}, "metadata": {}}, old,
                                     "finalize")
    assert finalized["spec"] == {"finalizers": []} and finalized["status"] == old["status"]
    assert s.finalizing(old) and not s.finalizing(finalized)
    for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
        with pytest.raises(errors.ApiError) as e:
            s.admit_delete(name)
        assert e.value.code == 403
        assert e.value.message == f'namespaces "{name}" is forbidden: this namespace may ' \
                                  "not be deleted"
    s.admit_delete("kube-other")
    marked = {"metadata": {}}
    s.mark_deleting(marked)
    assert marked["status"]["phase"] == "Terminating"


def test_job_orphans_by_default() -> None:
    assert JobStrategy(kind("batch", "Job"), CTX).default_propagation() == "Orphan"
    assert DefaultStrategy(kind("apps", "Deployment"), CTX).default_propagation() is None


def test_service_allocation_undo_and_release() -> None:
    s = ServiceStrategy(kind("", "Service"), StrategyContext(services=ServiceAllocator()))

    def svc(name: str, ip: str = "", node_port: int = 0) -> dict:
        port = {"port": 80, **({"nodePort": node_port} if node_port else {})}
        return {"metadata": {"name": name}, "spec": {
            "type": "NodePort", "ports": [port], **({"clusterIP": ip} if ip else {})}}

    first = svc("a")
    undo = s.allocate(first, None)
    ip, node_port = first["spec"]["clusterIP"], first["spec"]["ports"][0]["nodePort"]
    with pytest.raises(errors.ApiError) as e:
        s.allocate(svc("b", ip, node_port), None)
    assert e.value.code == 422
    undo()  # the write did not land: both are free again
    second = svc("b", ip, node_port)
    s.allocate(second, None)
    s.deleted(second)  # gone: free again
    s.allocate(svc("c", ip, node_port), None)
    restored = ServiceStrategy(kind("", "Service"), StrategyContext(services=ServiceAllocator()))
    restored.restore([second])  # a restart: the stored Services hold their addresses
    with pytest.raises(errors.ApiError):
        restored.allocate(svc("d", ip), None)


@pytest.mark.parametrize("value, expected", [("", None), ("0", None), ("7", 7),
                                             ("18446744073709551615", 2**64 - 1)])
def test_resource_version_values(value: str, expected: int | None) -> None:
    assert parse_resource_version(value) == expected


@pytest.mark.parametrize("value", ["-1", "abc", "1.0", "18446744073709551616", " 3"])
def test_bad_resource_versions(value: str) -> None:
    with pytest.raises(errors.ApiError) as e:
        parse_resource_version(value)
    assert e.value.code == 400


def test_list_options_limit_and_booleans() -> None:
    cms = kind("", "ConfigMap")
    o = ListOptions.from_query({"limit": "-5", "allowWatchBookmarks": "yes"}, cms, watch=False)
    assert o.limit == 0 and o.allow_watch_bookmarks  # Kubernetes: anything but false/0
    o = ListOptions.from_query({"watch": "0", "limit": "+3"}, cms)
    assert not o.watch and o.limit == 3
    o = ListOptions.from_query({"watch": ""}, cms)
    assert o.watch


def test_custom_resources_generation_follows_their_status_subresource() -> None:
    from pinnace.api import crd
    definition = {
        "metadata": {"name": "things.x.io"},
        "spec": {"group": "x.io", "scope": "Namespaced",
                 "names": {"plural": "things", "kind": "Thing"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object"}}}]}}
    plain = strategies.strategy_for(crd.resource_types(definition)[0], CTX)
    definition["spec"]["versions"][0]["subresources"] = {"status": {}}
    with_status = strategies.strategy_for(crd.resource_types(definition)[0], CTX)
    old = {"metadata": {"name": "t"}, "spec": {"a": 1}, "status": {"b": 1}}
    new_status = {**old, "status": {"b": 2}}
    assert plain.spec_changed(new_status, old) is True
    assert with_status.spec_changed(new_status, old) is False
    assert with_status.spec_changed({**old, "spec": {"a": 2}}, old) is True
    assert not with_status.accepts_strategic_merge
