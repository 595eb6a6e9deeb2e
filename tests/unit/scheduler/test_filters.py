"""Filter plugins: which nodes a pod fits, and the reasons Kubernetes gives."""

from __future__ import annotations

from pinnace.scheduler.framework import Code, pod_requests
from pinnace.scheduler.plugins import (
    NodeAffinity,
    NodeName,
    NodePorts,
    NodeResourcesFit,
    NodeUnschedulable,
    TaintToleration,
)
from tests.unit.scheduler.conftest import make_node, make_pod


def test_resources_fit_counts_pods_already_on_the_node() -> None:
    fit = NodeResourcesFit()
    node = make_node(cpu="2", memory="1Gi")
    assert fit.filter(make_pod(cpu="1500m"), node).ok
    node.add_pod(make_pod("a", cpu="1500m"))
    status = fit.filter(make_pod(cpu="600m", memory="2Gi"), node)
    assert status.code is Code.UNSCHEDULABLE
    assert status.reasons == ("Insufficient cpu", "Insufficient memory")
    node.remove_pod("default/a")
    assert fit.filter(make_pod(cpu="600m"), node).ok


def test_too_many_pods() -> None:
    node = make_node(pods="1")
    node.add_pod(make_pod("a"))
    assert NodeResourcesFit().filter(make_pod(), node).reasons == ("Too many pods",)


def test_requests_take_init_containers_and_overhead_into_account() -> None:
    pod = {"metadata": {"name": "p"}, "spec": {
        "containers": [{"resources": {"requests": {"cpu": "100m"}}},
                       {"resources": {"requests": {"cpu": "200m", "memory": "1Mi"}}}],
        "initContainers": [{"resources": {"requests": {"cpu": "1"}}}],
        "overhead": {"cpu": "50m"}}}
    assert pod_requests(pod) == {"cpu": 1050, "memory": 1024 * 1024}
    # a sidecar (restartPolicy Always) keeps its requests next to the app's
    pod["spec"]["initContainers"] = [{"restartPolicy": "Always",
                                      "resources": {"requests": {"cpu": "500m"}}}]
    assert pod_requests(pod)["cpu"] == 300 + 500 + 50


def test_extended_resources_missing_from_the_node_do_not_fit() -> None:
    pod = make_pod()
    pod.requests["example.com/gpu"] = 1
    assert NodeResourcesFit().filter(pod, make_node()).reasons == (
        "Insufficient example.com/gpu",)


def test_node_name() -> None:
    assert NodeName().filter(make_pod(nodeName="a"), make_node("a")).ok
    status = NodeName().filter(make_pod(nodeName="a"), make_node("b"))
    assert status.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert not NodeName().applies(make_pod())


def test_unschedulable_node_takes_only_tolerating_pods() -> None:
    cordoned = make_node(unschedulable=True)
    assert NodeUnschedulable().filter(make_pod(), cordoned).reasons == (
        "node(s) were unschedulable",)
    tolerant = make_pod(tolerations=[{"key": "node.kubernetes.io/unschedulable",
                                      "operator": "Exists", "effect": "NoSchedule"}])
    assert NodeUnschedulable().filter(tolerant, cordoned).ok
    assert NodeUnschedulable().filter(make_pod(), make_node()).ok


def test_taints_need_tolerations() -> None:
    plugin = TaintToleration()
    node = make_node(taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    status = plugin.filter(make_pod(), node)
    assert status.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert status.reasons == ("node(s) had untolerated taint {dedicated: db}",)
    for toleration in ({"key": "dedicated", "value": "db"},
                       {"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"},
                       {"operator": "Exists"}):
        assert plugin.filter(make_pod(tolerations=[toleration]), node).ok, toleration
    for toleration in ({"key": "dedicated", "value": "web"},
                       {"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}):
        assert not plugin.filter(make_pod(tolerations=[toleration]), node).ok, toleration
    soft = make_node(taints=[{"key": "k", "effect": "PreferNoSchedule"}])
    assert plugin.filter(make_pod(), soft).ok


def test_node_selector_and_required_affinity() -> None:
    plugin = NodeAffinity()
    ssd = make_node("a", labels={"disk": "ssd", "cores": "8"})
    hdd = make_node("b", labels={"disk": "hdd", "cores": "2"})
    pod = make_pod(nodeSelector={"disk": "ssd"})
    assert plugin.filter(pod, ssd).ok
    assert plugin.filter(pod, hdd).reasons == ("node(s) didn't match Pod's node affinity/selector",)

    def required(*terms: dict) -> dict:
        return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": list(terms)}}}

    gt = make_pod(affinity=required({"matchExpressions": [
        {"key": "cores", "operator": "Gt", "values": ["4"]}]}))
    assert plugin.filter(gt, ssd).ok and not plugin.filter(gt, hdd).ok
    by_name = make_pod(affinity=required({"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": ["b"]}]}))
    assert plugin.filter(by_name, hdd).ok and not plugin.filter(by_name, ssd).ok
    either = make_pod(affinity=required(
        {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["nvme"]}]},
        {"matchExpressions": [{"key": "disk", "operator": "NotIn", "values": ["ssd"]}]}))
    assert plugin.filter(either, hdd).ok and not plugin.filter(either, ssd).ok
    empty_term = make_pod(affinity=required({}))
    assert not plugin.filter(empty_term, ssd).ok


def test_host_ports_conflict() -> None:
    def with_port(name: str, port: int, ip: str = "", protocol: str = "TCP"):
        return make_pod(name, containers=[{"name": "c", "ports": [
            {"containerPort": 80, "hostPort": port, "hostIP": ip, "protocol": protocol}]}])

    plugin = NodePorts()
    node = make_node()
    node.add_pod(with_port("a", 8080, ip="10.0.0.1"))
    assert not plugin.filter(with_port("b", 8080), node).ok
    assert not plugin.filter(with_port("b", 8080, ip="10.0.0.1"), node).ok
    assert plugin.filter(with_port("b", 8080, ip="10.0.0.2"), node).ok
    assert plugin.filter(with_port("b", 8080, protocol="UDP"), node).ok
    assert plugin.filter(with_port("b", 9090), node).ok
    assert plugin.filter(with_port("b", 8080), node).reasons == (
        "node(s) didn't have free ports for the requested pod ports",)
    node.remove_pod("default/a")
    assert plugin.filter(with_port("b", 8080), node).ok
