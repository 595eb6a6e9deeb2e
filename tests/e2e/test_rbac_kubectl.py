"""RBAC through kubectl: a token user from DATA_DIR/tokens.csv sees Kubernetes' 403s,
`kubectl auth can-i` answers for them, and a binding made by the admin lets them in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.cluster import Cluster

TOKEN = "alice-e2e-token-0123456789"
DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
"""


def binding(kind: str, name: str, role: str, subject_kind: str, subject: str, *,
            namespace: str = "") -> str:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return yaml.safe_dump({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": subject_kind,
                      "name": subject}]})


@pytest.fixture(scope="module")
def rbac_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Path]]:
    base = tmp_path_factory.mktemp("rbac")
    c = Cluster(data_dir=base / "data", home=base / "home")
    c.home.mkdir()
    c.data_dir.mkdir()
    (c.data_dir / "tokens.csv").write_text(f'{TOKEN},alice,1000,"developers"\n')
    c.start()
    try:
        config = yaml.safe_load(c.kubeconfig.read_text())
        config["users"][0]["user"]["token"] = TOKEN
        alice = base / "alice.kubeconfig"
        alice.write_text(yaml.safe_dump(config))
        yield c, alice
    finally:
        c.stop()


def test_forbidden_then_allowed_after_binding(rbac_cluster: tuple[Cluster, Path]) -> None:
    c, alice = rbac_cluster
    as_alice = ("--kubeconfig", str(alice))
    out = c.kubectl(*as_alice, "get", "pods", check=False)
    assert out.returncode == 1
    assert out.stderr.strip() == (
        'Error from server (Forbidden): pods is forbidden: User "alice" cannot list resource '
        '"pods" in API group "" in the namespace "default"')
    out = c.kubectl(*as_alice, "auth", "can-i", "list", "pods", check=False)
    assert out.stdout.strip() == "no" and out.returncode == 1
    who = c.kubectl(*as_alice, "auth", "whoami").stdout
    assert "alice" in who and "developers" in who

    c.kubectl("apply", "-f", "-", input=binding("RoleBinding", "alice-view", "view", "User",
                                                "alice", namespace="default"))
    out = c.kubectl(*as_alice, "auth", "can-i", "list", "pods")
    assert out.stdout.strip() == "yes"
    assert c.kubectl(*as_alice, "get", "pods").returncode == 0
    out = c.kubectl(*as_alice, "auth", "can-i", "create", "deployments", check=False)
    assert out.stdout.strip() == "no"
    out = c.kubectl(*as_alice, "get", "pods", "-n", "kube-system", check=False)
    assert 'in the namespace "kube-system"' in out.stderr

    c.kubectl("apply", "-f", "-", input=binding("ClusterRoleBinding", "developers-edit",
                                                "edit", "Group", "developers"))
    assert c.kubectl(*as_alice, "auth", "can-i", "create", "deployments").stdout.strip() \
        == "yes"
    c.kubectl(*as_alice, "apply", "-f", "-", input=DEPLOYMENT)
    assert "web" in c.kubectl(*as_alice, "get", "deployments").stdout


def test_admin_kubeconfig_still_does_everything(rbac_cluster: tuple[Cluster, Path]) -> None:
    c, _ = rbac_cluster
    assert c.kubectl("auth", "can-i", "*", "*").stdout.strip() == "yes"
    assert c.kubectl("get", "clusterroles", "cluster-admin", "view").returncode == 0
