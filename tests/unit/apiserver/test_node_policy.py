"""What a pod references (the Node authorizer's graph) and which Node labels a node may
set (NodeRestriction), as Kubernetes decides them."""

from __future__ import annotations

from pinnace.apiserver.component_policy import node_name_of, node_user, service_account_user
from pinnace.apiserver.node_authorizer import pod_references
from pinnace.apiserver.node_restriction import forbidden_labels


def test_pod_references_cover_volumes_env_pull_secrets_and_the_service_account() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {
        "serviceAccountName": "builder",
        "imagePullSecrets": [{"name": "pull"}],
        "volumes": [
            {"name": "a", "secret": {"secretName": "vol-secret"}},
            {"name": "b", "configMap": {"name": "vol-cm"}},
            {"name": "c", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {}}},
            {"name": "d", "projected": {"sources": [{"secret": {"name": "proj-secret"}},
                                                    {"configMap": {"name": "kube-root-ca.crt"}},
                                                    {"serviceAccountToken": {"path": "t"}}]}},
        ],
        "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "init-env"}}]}],
        "containers": [{"name": "c", "env": [
            {"name": "A", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}},
            {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "k"}}},
            {"name": "C", "value": "plain"}],
            "envFrom": [{"configMapRef": {"name": "envfrom-cm"}}]}]}}
    assert set(pod_references(pod)) == {
        ("ServiceAccount", "builder"), ("Secret", "pull"), ("Secret", "vol-secret"),
        ("ConfigMap", "vol-cm"), ("PersistentVolumeClaim", "data"),
        ("PersistentVolumeClaim", "p-scratch"), ("Secret", "proj-secret"),
        ("ConfigMap", "kube-root-ca.crt"), ("Secret", "init-env"), ("Secret", "env-secret"),
        ("ConfigMap", "env-cm"), ("ConfigMap", "envfrom-cm")}


def test_a_pod_without_a_service_account_name_runs_as_default() -> None:
    assert list(pod_references({"metadata": {"name": "p"}, "spec": {}})) == [
        ("ServiceAccount", "default")]


def test_node_restriction_labels_are_refused_on_create_and_update() -> None:
    labels = {"kubernetes.io/hostname": "n1", "node-restriction.kubernetes.io/pool": "a",
              "team.node-restriction.kubernetes.io/x": "y", "example.com/free": "yes"}
    assert forbidden_labels(labels, None) == ["node-restriction.kubernetes.io/pool",
                                              "team.node-restriction.kubernetes.io/x"]


def test_on_update_only_the_kubelets_kubernetes_labels_may_change() -> None:
    old = {"kubernetes.io/hostname": "n1"}
    new = {"kubernetes.io/hostname": "n1", "kubernetes.io/arch": "amd64",
           "node.kubernetes.io/instance-type": "big", "node-role.kubernetes.io/master": "",
           "example.k8s.io/x": "1", "example.com/free": "yes"}
    assert forbidden_labels(new, old) == ["example.k8s.io/x", "node-role.kubernetes.io/master"]
    assert forbidden_labels(old, old) == []


def test_who_is_a_node() -> None:
    assert node_name_of(node_user("n1")) == "n1"
    assert node_name_of(None) is None
    # the name alone is not enough: the group says the authenticator vouched for it
    from pinnace.apiserver.auth import User
    assert node_name_of(User("system:node:n1", ("system:authenticated",))) is None
    assert node_name_of(service_account_user("kube-system", "node-controller")) is None
