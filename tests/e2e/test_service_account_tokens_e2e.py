"""ServiceAccount tokens on a real node (issue 12, Done when 1 and 2), through kubectl.

- A runc pod sees `token`, `ca.crt` and `namespace` under
  /var/run/secrets/kubernetes.io/serviceaccount, and KUBERNETES_SERVICE_HOST/PORT.
- The static kubectl, mounted by hostPath into a busybox pod, uses them (in-cluster
  config): it lists what its ServiceAccount's Role allows and is refused the rest with
  Kubernetes' message naming `system:serviceaccount:<ns>:<name>`.
- The token is renewed before it expires: the cluster caps token lifetimes at 60 s
  (`--service-account-max-token-expiration`), so the agent must swap in a new one
  within the minute, and kubectl in the pod keeps working with it.
- `automountServiceAccountToken: false` mounts nothing.
- `kubectl create token default --duration=10m` prints a JWT the API accepts; once the
  ServiceAccount is deleted (and recreated by its controller, with another uid) the
  token is refused (401).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.real_node import real_cluster, wait_for

NS = "sa-e2e"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
KUBECTL_DIR = "/usr/lib/google-cloud-sdk/bin"  # /usr/bin/kubectl's real home
MAX_TOKEN_SECONDS = 60


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, local_registry) -> Iterator[Cluster]:
    yield from real_cluster(tmp_path_factory.mktemp("sa-tokens"), local_registry.url,
                            "--service-account-max-token-expiration", str(MAX_TOKEN_SECONDS))


def apply(cluster: Cluster, *objects: dict) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "List", "items": list(objects)}))


def in_pod(cluster: Cluster, pod: str, *command: str, check: bool = True):
    return cluster.kubectl("exec", "-n", NS, pod, "--", *command, check=check, timeout=60)


def kubectl_in_pod(cluster: Cluster, pod: str, *args: str, check: bool = True):
    """The pod's kubectl, on its in-cluster config (token, ca.crt, KUBERNETES_SERVICE_*).
    The service address is pointed at the `kubernetes` Service's endpoint itself (the API
    on the pod bridge's gateway, a name its certificate carries): other clusters on this
    machine DNAT 10.96.0.1 as well, and their rules may see our pods' packets first. The
    path through the ClusterIP is tests/e2e/test_kubernetes_service_e2e.py's."""
    endpoints = json.loads(cluster.kubectl("get", "endpoints", "kubernetes", "-o",
                                           "json").stdout)
    subset = endpoints["subsets"][0]
    host, port = subset["addresses"][0]["ip"], subset["ports"][0]["port"]
    return in_pod(cluster, pod, "env", f"KUBERNETES_SERVICE_HOST={host}",
                  f"KUBERNETES_SERVICE_PORT={port}", "/k/kubectl", *args, check=check)


@pytest.fixture(scope="module")
def reader_pod(cluster: Cluster) -> str:
    """A busybox pod of ServiceAccount `reader` (may read pods and configmaps in NS),
    with the host's kubectl mounted at /k."""
    apply(cluster,
          {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
          {"apiVersion": "v1", "kind": "ServiceAccount",
           "metadata": {"name": "reader", "namespace": NS}},
          {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
           "metadata": {"name": "pod-reader", "namespace": NS},
           "rules": [{"apiGroups": [""], "resources": ["pods", "configmaps"],
                      "verbs": ["get", "list"]}]},
          {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
           "metadata": {"name": "reader", "namespace": NS},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                       "name": "pod-reader"},
           "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": NS}]})

    def created() -> bool:  # the namespace's kube-root-ca.crt and `default` come first
        return cluster.kubectl("apply", "-f", "-", check=False, input=json.dumps({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "in-cluster", "namespace": NS},
            "spec": {"serviceAccountName": "reader", "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "sh", "image": "busybox:1.28",
                                     "command": ["sleep", "3600"],
                                     "env": [{"name": "HOME", "value": "/tmp"}],
                                     "volumeMounts": [{"name": "kubectl", "mountPath": "/k",
                                                       "readOnly": True}]}],
                     "volumes": [{"name": "kubectl", "hostPath": {
                         "path": KUBECTL_DIR, "type": "Directory"}}]}})).returncode == 0
    wait_for(created, timeout=20)
    cluster.kubectl("wait", "-n", NS, "--for=condition=Ready", "pod/in-cluster",
                    "--timeout=120s", timeout=130)
    return "in-cluster"


def test_pod_sees_token_ca_and_namespace(cluster: Cluster, reader_pod: str) -> None:
    pod = json.loads(cluster.kubectl("get", "pod", "-n", NS, reader_pod, "-o", "json").stdout)
    assert in_pod(cluster, reader_pod, "cat", f"{SA_DIR}/namespace").stdout == NS
    ca = in_pod(cluster, reader_pod, "cat", f"{SA_DIR}/ca.crt").stdout
    assert ca == (cluster.data_dir / "pki" / "ca.crt").read_text()
    token = in_pod(cluster, reader_pod, "cat", f"{SA_DIR}/token").stdout
    c = claims(token)
    assert c["sub"] == f"system:serviceaccount:{NS}:reader"
    assert c["kubernetes.io"]["pod"] == {"name": reader_pod, "uid": pod["metadata"]["uid"]}
    # the mount is read-only
    assert in_pod(cluster, reader_pod, "touch", f"{SA_DIR}/x", check=False).returncode != 0
    env = in_pod(cluster, reader_pod, "env").stdout.splitlines()
    assert "KUBERNETES_SERVICE_HOST=10.96.0.1" in env
    assert "KUBERNETES_SERVICE_PORT=443" in env
    assert "KUBERNETES_PORT_443_TCP=tcp://10.96.0.1:443" in env


def test_kubectl_in_a_pod_acts_as_its_service_account(cluster: Cluster,
                                                      reader_pod: str) -> None:
    allowed = kubectl_in_pod(cluster, reader_pod, "get", "pods", "-o", "name")
    assert f"pod/{reader_pod}" in allowed.stdout.split()
    cms = kubectl_in_pod(cluster, reader_pod, "get", "configmap", "kube-root-ca.crt",
                 "-o", "name")
    assert cms.stdout.strip() == "configmap/kube-root-ca.crt"
    refused = kubectl_in_pod(cluster, reader_pod, "get", "secrets", check=False)
    assert refused.returncode != 0
    assert (f'Error from server (Forbidden): secrets is forbidden: User '
            f'"system:serviceaccount:{NS}:reader" cannot list resource "secrets" in API '
            f'group "" in the namespace "{NS}"') in refused.stderr
    refused = kubectl_in_pod(cluster, reader_pod, "get", "pods", "-n", "default",
                     check=False)
    assert f'User "system:serviceaccount:{NS}:reader" cannot list resource "pods"' in \
        refused.stderr


def test_official_client_in_cluster_config(cluster: Cluster, reader_pod: str) -> None:
    """`load_incluster_config()` of the official client, on the files the pod sees (read
    from the node's volume dir) and the environment the pod has."""
    from kubernetes import client
    from kubernetes.config.incluster_config import InClusterConfigLoader

    pod = json.loads(cluster.kubectl("get", "pod", "-n", NS, reader_pod, "-o", "json").stdout)
    [volume] = [v["name"] for v in pod["spec"]["volumes"]
                if v["name"].startswith("kube-api-access-")]
    files = (cluster.data_dir / "pods" / pod["metadata"]["uid"] / "volumes" /
             "kubernetes.io~projected" / volume)
    endpoints = json.loads(cluster.kubectl("get", "endpoints", "kubernetes", "-o",
                                           "json").stdout)["subsets"][0]
    config = client.Configuration()
    InClusterConfigLoader(
        token_filename=str(files / "token"), cert_filename=str(files / "ca.crt"),
        environ={"KUBERNETES_SERVICE_HOST": endpoints["addresses"][0]["ip"],
                 "KUBERNETES_SERVICE_PORT": str(endpoints["ports"][0]["port"])},
    ).load_and_set(config)
    with client.ApiClient(config) as api:
        core = client.CoreV1Api(api)
        names = [p.metadata.name for p in core.list_namespaced_pod(NS).items]
        assert reader_pod in names
        with pytest.raises(client.ApiException) as refused:
            core.list_namespaced_secret(NS)
        assert refused.value.status == 403


def test_token_is_renewed_before_it_expires(cluster: Cluster, reader_pod: str) -> None:
    first = in_pod(cluster, reader_pod, "cat", f"{SA_DIR}/token").stdout
    first_claims = claims(first)
    assert first_claims["exp"] - first_claims["iat"] == MAX_TOKEN_SECONDS

    def renewed() -> str:
        token = in_pod(cluster, reader_pod, "cat", f"{SA_DIR}/token").stdout
        return token if token != first else ""
    second = wait_for(renewed, timeout=MAX_TOKEN_SECONDS + 15, interval=2)
    renewed_at = time.time()
    # renewed once 80 % of the lifetime had passed, and before the old one expired
    assert claims(second)["iat"] >= first_claims["iat"] + 0.8 * MAX_TOKEN_SECONDS - 1
    assert renewed_at < first_claims["exp"] + 2
    # kubectl in the pod keeps working after the old token's expiry
    wait_for(lambda: time.time() > first_claims["exp"] + 1, timeout=MAX_TOKEN_SECONDS)
    allowed = kubectl_in_pod(cluster, reader_pod, "get", "pods", "-o", "name")
    assert f"pod/{reader_pod}" in allowed.stdout.split()


def test_automount_false_mounts_nothing(cluster: Cluster, reader_pod: str) -> None:
    apply(cluster, {"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "no-token", "namespace": NS},
                    "spec": {"automountServiceAccountToken": False,
                             "terminationGracePeriodSeconds": 1,
                             "containers": [{"name": "sh", "image": "busybox:1.28",
                                             "command": ["sleep", "3600"]}]}})
    cluster.kubectl("wait", "-n", NS, "--for=condition=Ready", "pod/no-token",
                    "--timeout=90s", timeout=100)
    pod = json.loads(cluster.kubectl("get", "pod", "-n", NS, "no-token", "-o",
                                     "json").stdout)
    assert not pod["spec"].get("volumes")
    listing = in_pod(cluster, "no-token", "ls", "/var/run/secrets", check=False)
    assert listing.returncode != 0 and "No such file or directory" in listing.stderr
    cluster.kubectl("delete", "pod", "-n", NS, "no-token")


def test_kubectl_create_token_then_revoked(cluster: Cluster, reader_pod: str) -> None:
    token = cluster.kubectl("create", "token", "default", "-n", NS,
                            "--duration=10m").stdout.strip()
    c = claims(token)
    assert c["sub"] == f"system:serviceaccount:{NS}:default"
    whoami = cluster.kubectl("--token", token, "auth", "whoami", "-o", "json")
    info = json.loads(whoami.stdout)["status"]["userInfo"]
    assert info["username"] == f"system:serviceaccount:{NS}:default"
    assert f"system:serviceaccounts:{NS}" in info["groups"]
    cluster.kubectl("delete", "serviceaccount", "default", "-n", NS)
    refused = cluster.kubectl("--token", token, "auth", "whoami", check=False)
    assert refused.returncode != 0
    assert "You must be logged in to the server (Unauthorized)" in refused.stderr
