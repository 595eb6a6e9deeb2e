"""The local-path provisioner's pure parts: the PV it makes for a claim, what it refuses,
and the contract's helpers both sides read (api/local_path.py)."""

from __future__ import annotations

from typing import Any

import pytest

from pinnace.api import local_path as lp
from pinnace.controllers.local_path import (
    choose_node,
    provisioned_pv,
    storage_dir_of,
    unsupported,
)


def claim(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "data", "namespace": "shop", "uid": "u-1",
                         "resourceVersion": "7"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                     "resources": {"requests": {"storage": "1Gi"}}, **spec}}


def test_pv_is_prebound_sized_and_pinned_to_the_node() -> None:
    pv = provisioned_pv(claim(), {**lp.default_class(), "reclaimPolicy": "Retain"}, "node-1",
                        "/var/lib/pinnace/storage/")
    assert pv["metadata"] == {"name": "pvc-u-1",
                              "annotations": {lp.PROVISIONED_BY: "pinnace.io/local-path"}}
    spec = pv["spec"]
    assert spec["capacity"] == {"storage": "1Gi"}
    assert spec["persistentVolumeReclaimPolicy"] == "Retain"  # the class'
    assert spec["local"] == {"path": "/var/lib/pinnace/storage/pvc-u-1_shop_data"}
    assert spec["claimRef"] == {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                "namespace": "shop", "name": "data", "uid": "u-1",
                                "resourceVersion": "7"}
    assert lp.pv_node(pv) == "node-1"
    assert lp.is_local_path(pv)
    assert lp.pv_capacity(pv) == 1024 ** 3


@pytest.mark.parametrize(("spec", "reason"), [
    ({}, None),
    ({"accessModes": ["ReadWriteOncePod"]}, None),
    ({"selector": {"matchLabels": {"a": "b"}}}, "claim.Spec.Selector is not supported"),
    ({"accessModes": ["ReadWriteOnce", "ReadOnlyMany"]},
     "NodePath only supports ReadWriteOnce and ReadWriteOncePod (1.22+) access modes"),
    ({"volumeMode": "Block"},
     "local-path volumes are file systems: volumeMode Block is not supported"),
])
def test_what_local_path_refuses(spec: dict[str, Any], reason: str | None) -> None:
    assert unsupported(claim(**spec)) == reason


def test_default_class_is_k3s_local_path_with_expansion() -> None:
    sc = lp.default_class()
    assert sc["metadata"]["name"] == "local-path"
    assert sc["metadata"]["annotations"] == {
        "storageclass.kubernetes.io/is-default-class": "true"}
    assert (sc["volumeBindingMode"], sc["reclaimPolicy"], sc["allowVolumeExpansion"]) == \
        ("WaitForFirstConsumer", "Delete", True)


def test_pv_node_needs_exactly_one_hostname() -> None:
    def pv(values: list[str], key: str = "kubernetes.io/hostname") -> dict[str, Any]:
        return {"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": key, "operator": "In", "values": values}]}]}}}}
    assert lp.pv_node(pv(["a"])) == "a"
    assert lp.pv_node(pv(["a", "b"])) is None
    assert lp.pv_node(pv(["a"], key="zone")) is None
    assert lp.pv_node({"spec": {}}) is None


def test_storage_dir_is_the_agents_or_nominal_on_simulated_nodes() -> None:
    def node(**annotations: str) -> dict[str, Any]:
        return {"metadata": {"name": "n", "annotations": annotations}}
    assert storage_dir_of(node(**{lp.STORAGE_DIR_ANNOTATION: "/d/storage"})) == "/d/storage"
    assert storage_dir_of(node(**{"pinnace.io/fake": "true"})) == "/var/lib/pinnace/storage"
    assert storage_dir_of(node()) is None


def test_immediate_claims_go_to_the_ready_node_with_fewest_volumes() -> None:
    def node(name: str, ready: str = "True", **spec: Any) -> dict[str, Any]:
        return {"metadata": {"name": name, "annotations": {lp.STORAGE_DIR_ANNOTATION: "/s"}},
                "spec": spec, "status": {"conditions": [{"type": "Ready", "status": ready}]}}
    nodes = [node("a"), node("b"), node("c", ready="False"), node("d", unschedulable=True),
             {"metadata": {"name": "e"}, "status": node("e")["status"]}]  # no storage
    assert choose_node(nodes, []) == "a"
    on_a = provisioned_pv(claim(), lp.default_class(), "a", "/s")
    assert choose_node(nodes, [on_a]) == "b"
    assert choose_node(nodes[2:], []) is None
