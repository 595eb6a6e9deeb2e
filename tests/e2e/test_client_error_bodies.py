"""Error bodies as the official client shows them: `kubernetes.utils.create_from_yaml`
reports a conflict as "Error from server (Conflict): <the body, as sent>", and the client's
own e2e suite compares that string with what kube-apiserver writes — Go's field order
(details before code) and the encoder's trailing newline included."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: mock-2
  labels: {app: mock-2}
spec:
  selector: {app: mock-2}
  ports: [{port: 99, targetPort: 9949}]
"""
CONTROLLER = """\
apiVersion: v1
kind: ReplicationController
metadata:
  name: mock-2
spec:
  replicas: 0
  selector: {app: mock-2}
  template:
    metadata:
      labels: {app: mock-2}
    spec:
      containers: [{name: mock, image: busybox:1.28}]
"""


def test_create_from_yaml_conflict_message(cluster: Cluster, tmp_path: Path) -> None:
    from kubernetes import client, utils
    api_client = cluster.client()
    first = tmp_path / "first.yaml"
    first.write_text(SERVICE)
    utils.create_from_yaml(api_client, str(first))
    both = tmp_path / "both.yaml"
    both.write_text(SERVICE + "---\n" + CONTROLLER)
    with pytest.raises(utils.FailToCreateError) as failure:
        utils.create_from_yaml(api_client, str(both))
    assert str(failure.value) == (
        'Error from server (Conflict): {"kind":"Status","apiVersion":"v1","metadata":{},'
        '"status":"Failure","message":"services \\"mock-2\\" already exists",'
        '"reason":"AlreadyExists","details":{"name":"mock-2","kind":"services"},'
        '"code":409}\n')
    # the other document of the file was still created
    core = client.CoreV1Api(api_client)
    assert core.read_namespaced_replication_controller("mock-2", "default").metadata.name \
        == "mock-2"
