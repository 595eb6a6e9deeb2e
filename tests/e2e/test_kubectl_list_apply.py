"""Done-when 5 of issue 11: what `kubectl get … -o yaml` writes (a `kind: List`) applies
again with kubectl's default validation. For a List kubectl validates each item against
the `/openapi/v2` document, which it asks for as gnostic protobuf."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.cluster import KUBECTL, Cluster

LIST = """\
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: web}
  spec:
    replicas: 1
    selector: {matchLabels: {app: web}}
    template:
      metadata: {labels: {app: web}}
      spec:
        containers:
        - name: nginx
          image: nginx:1.19
          ports: [{containerPort: 80}]
          resources: {limits: {cpu: 1, memory: 64Mi}}
- apiVersion: v1
  kind: Service
  metadata: {name: web}
  spec:
    selector: {app: web}
    ports: [{port: 80, targetPort: 80}]
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: listed}
  data: {k: v}
"""


def sh(cluster: Cluster, script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A shell line as a user types it, `kubectl` being the real one."""
    return subprocess.run(["bash", "-c", script], env={**cluster.env(), "KUBECTL": KUBECTL},
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def test_get_o_yaml_then_apply(cluster: Cluster, tmp_path: Path) -> None:
    cluster.kubectl("create", "configmap", "one", "--from-literal=a=1")
    cluster.kubectl("create", "configmap", "two", "--from-literal=b=2")
    run = sh(cluster, '"$KUBECTL" get cm -o yaml > f.yaml && "$KUBECTL" apply -f f.yaml',
             tmp_path)
    assert run.returncode == 0, run.stderr
    assert "kind: List" in (tmp_path / "f.yaml").read_text()
    assert "configmap/one configured" in run.stdout
    assert "configmap/two configured" in run.stdout


def test_list_of_several_kinds_from_a_file(cluster: Cluster, tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text(LIST)
    out = cluster.kubectl("apply", "-f", str(path)).stdout
    assert "deployment.apps/web created" in out
    assert "service/web created" in out
    assert "configmap/listed created" in out
    # and back: everything of three kinds as one List, applied again
    run = sh(cluster, '"$KUBECTL" get deploy,svc,cm -o yaml > all.yaml && '
             '"$KUBECTL" apply -f all.yaml', tmp_path)
    assert run.returncode == 0, run.stderr
    for name in ("deployment.apps/web", "service/web", "configmap/listed"):
        assert name in run.stdout


def test_list_from_stdin(cluster: Cluster) -> None:
    out = cluster.kubectl("apply", "-f", "-", input=LIST.replace("listed", "piped")).stdout
    assert "configmap/piped created" in out


@pytest.mark.parametrize("where", ["file", "stdin"])
def test_unknown_field_in_a_list_item_is_caught_by_kubectl(cluster: Cluster, tmp_path: Path,
                                                           where: str) -> None:
    # kubectl validates each item against the v2 schemas before sending anything
    bad = LIST.replace("    replicas: 1\n", "    replicas: 1\n    bogusField: 2\n")
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    run = cluster.kubectl("apply", "-f", str(path) if where == "file" else "-",
                          input=bad if where == "stdin" else None, check=False)
    assert run.returncode != 0
    assert 'unknown field "bogusField" in io.k8s.api.apps.v1.DeploymentSpec' in run.stderr
