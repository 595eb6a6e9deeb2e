"""The audit log through kubectl: with a policy, `kubectl create` appears in
DATA_DIR/audit.log as an audit.k8s.io/v1 Event with user, verb, resource and response
code; the example policy keeps Secrets' data out; without a policy there is no log."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.cluster import Cluster
from tests.e2e.workloads import wait_for

EXAMPLE_POLICY = Path(__file__).resolve().parents[2] / "docs" / "audit-policy.yaml"
TOKEN = "bob-audit-token-0123456789"
VALUE = "audited-but-secret-91d3"


def events(c: Cluster) -> list[dict[str, Any]]:
    lines = (c.data_dir / "audit.log").read_text().splitlines()
    return [json.loads(line) for line in lines]


def completed(c: Cluster, verb: str, resource: str, name: str) -> list[dict[str, Any]]:
    return [e for e in events(c) if e["stage"] == "ResponseComplete" and e["verb"] == verb
            and e.get("objectRef", {}).get("resource") == resource
            and e["objectRef"].get("name") == name]


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("audit")
    c = Cluster(data_dir=base / "data", home=base / "home")
    c.home.mkdir()
    c.data_dir.mkdir()
    (c.data_dir / "tokens.csv").write_text(f'{TOKEN},bob,1001,"dev"\n')
    c.start(extra=("--audit-policy-file", str(EXAMPLE_POLICY)))
    try:
        yield c
    finally:
        c.stop()


def test_kubectl_create_is_logged_with_user_verb_resource_and_code(audited: Cluster) -> None:
    c = audited
    c.kubectl("create", "deployment", "web", "--image=nginx")
    [ev] = completed(c, "create", "deployments", "web")
    assert ev["apiVersion"] == "audit.k8s.io/v1" and ev["kind"] == "Event"
    assert ev["user"]["username"] == "system:admin"
    assert ev["objectRef"] == {"resource": "deployments", "namespace": "default",
                               "name": "web", "apiGroup": "apps", "apiVersion": "v1"}
    assert ev["responseStatus"]["code"] == 201
    assert ev["requestURI"].startswith("/apis/apps/v1/namespaces/default/deployments")
    assert ev["sourceIPs"] == ["127.0.0.1"] and ev["userAgent"].startswith("kubectl/")
    assert ev["level"] == "RequestResponse"
    assert ev["requestObject"]["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "nginx"
    assert ev["responseObject"]["metadata"]["uid"]
    assert ev["requestReceivedTimestamp"] <= ev["stageTimestamp"]
    # the example policy omits RequestReceived: one event for the request
    assert not [e for e in events(c) if e["auditID"] == ev["auditID"]
                and e["stage"] != "ResponseComplete"]
    assert (c.data_dir / "audit.log").stat().st_mode & 0o777 == 0o600


def test_the_controllers_writes_are_logged_as_the_controllers(audited: Cluster) -> None:
    c = audited
    c.kubectl("create", "deployment", "logged", "--image=nginx")

    def replicaset_created() -> list[dict[str, Any]]:
        return [e for e in events(c) if e["stage"] == "ResponseComplete"
                and e["verb"] == "create" and e.get("objectRef", {}).get("resource") ==
                "replicasets" and e["requestObject"]["metadata"]["name"].startswith("logged-")]
    [ev] = wait_for(replicaset_created, timeout=30, what="the ReplicaSet's create logged")
    assert ev["user"]["username"] == "system:serviceaccount:kube-system:deployment-controller"
    assert ev["userAgent"].endswith("/deployment-controller")
    assert ev["sourceIPs"] == ["127.0.0.1"] and ev["responseStatus"]["code"] == 201
    assert ev["requestObject"]["metadata"]["ownerReferences"][0]["name"] == "logged"


def test_secret_data_never_reaches_the_log(audited: Cluster) -> None:
    c = audited
    c.kubectl("create", "secret", "generic", "creds", f"--from-literal=password={VALUE}")
    c.kubectl("get", "secret", "creds", "-o", "yaml")
    [ev] = completed(c, "create", "secrets", "creds")
    assert ev["level"] == "Metadata" and ev["responseStatus"]["code"] == 201
    assert "requestObject" not in ev and "responseObject" not in ev
    log = (c.data_dir / "audit.log").read_bytes()
    assert VALUE.encode() not in log and base64.b64encode(VALUE.encode()) not in log


def test_refusals_are_logged_with_their_status(audited: Cluster, tmp_path: Path) -> None:
    c = audited
    config = yaml.safe_load(c.kubeconfig.read_text())
    config["users"][0]["user"]["token"] = TOKEN
    bob = tmp_path / "bob.kubeconfig"
    bob.write_text(yaml.safe_dump(config))
    out = c.kubectl("--kubeconfig", str(bob), "create", "configmap", "nope", check=False)
    assert out.returncode == 1
    [ev] = completed(c, "create", "configmaps", "nope")
    assert ev["user"]["username"] == "bob" and "dev" in ev["user"]["groups"]
    assert ev["responseStatus"]["code"] == 403
    assert ev["responseStatus"]["reason"] == "Forbidden"
    c.kubectl("create", "configmap", "dup")
    assert c.kubectl("create", "configmap", "dup", check=False).returncode == 1
    codes = [e["responseStatus"]["code"] for e in completed(c, "create", "configmaps", "dup")]
    assert codes == [201, 409]


def test_no_policy_no_log(tmp_path: Path) -> None:
    c = Cluster(data_dir=tmp_path / "data", home=tmp_path / "home")
    c.home.mkdir()
    c.start()
    try:
        c.kubectl("create", "configmap", "quiet")
    finally:
        c.stop()
    assert not (c.data_dir / "audit.log").exists()


def test_a_bad_policy_or_log_path_is_refused_with_its_reason(tmp_path: Path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text(yaml.safe_dump({"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
                                   "rules": [{"level": "Everything"}]}))
    base = [sys.executable, "-m", "pinnace.cli", "server", "--data-dir",
            str(tmp_path / "data"), "--port", "0"]
    result = subprocess.run([*base, "--audit-policy-file", str(bad)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert "rules[0].level: one of None, Metadata, Request, RequestResponse" in result.stderr
    result = subprocess.run([*base, "--audit-policy-file", str(EXAMPLE_POLICY),
                             "--audit-log-path", str(tmp_path / "missing" / "audit.log")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "audit log:" in result.stderr and "No such file or directory" in result.stderr
