"""Kubernetes protobuf bodies: what kubectl 1.32 really sends, decoded to JSON shape."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pinnace.api import protobuf
from pinnace.api.errors import ApiError
from pinnace.apiserver import negotiation

# Captured from kubectl 1.32 against `pinnace up` (base64 of the request body).
CONFIGMAP = ("azhzAAoPCgJ2MRIJQ29uZmlnTWFwEioKGAoDY20xEgAaBWNhcG5zIgAqADIAOABCABIGCgFhEgFiEgYKAWMS"
             "AWQaACIA")  # create configmap cm1 --from-literal=a=b --from-literal=c=d
SECRET = ("azhzAAoMCgJ2MRIGU2VjcmV0EjAKFwoCczESABoFY2FwbnMiACoAMgA4AEIAEhMKCHBhc3N3b3JkEgdodW50"
          "ZXIyGgAaACIA")  # create secret generic s1 --from-literal=password=hunter2
DEPLOYMENT = (  # create deployment d1 --image=nginx:1.19 --replicas=2 --port=80
    "azhzAAoVCgdhcHBzL3YxEgpEZXBsb3ltZW50Er4BCiIKAmQxEgAaBWNhcG5zIgAqADIAOABCAFoJCgNhcHAS"
    "AmQxEokBCAISCwoJCgNhcHASAmQxGnAKGwoAEgAaACIAKgAyADgAQgBaCQoDYXBwEgJkMRJREjMKBW5naW54"
    "EgpuZ2lueDoxLjE5KgAyCgoAEAAYUCIAKgBCAGoAcgCAAQCIAQCQAQCiAQAaADIAQgBKAFIAWABgAGgAggEA"
    "igEAmgEAwgEAIgIKACgAOAAaDAgAEAAYACAAKAA4ABoAIgA=")
JOB_FROM_CRONJOB = (  # create job j2 --from=cronjob/cj1: owner reference, defaulted pod spec
    "azhzAAoPCghiYXRjaC92MRIDSm9iEssCCoYBCgJqMhIAGgVjYXBucyIAKgAyADgAQgBiKwohY3JvbmpvYi5r"
    "dWJlcm5ldGVzLmlvL2luc3RhbnRpYXRlEgZtYW51YWxqQAoHQ3JvbkpvYhoDY2oxIiRiOTkxOGYwOC1iYmI3"
    "LTQyMTMtYjQ0MC1mNDAwOTQzMDJmM2EqCGJhdGNoL3YxMAEStQEysgEKEAoAEgAaACIAKgAyADgAQgASnQES"
    "VQoDY2oxEgxidXN5Ym94OjEuMjgaBGVjaG8aAmhpKgBCAGoUL2Rldi90ZXJtaW5hdGlvbi1sb2dyDElmTm90"
    "UHJlc2VudIABAIgBAJABAKIBBEZpbGUaCU9uRmFpbHVyZSAeMgxDbHVzdGVyRmlyc3RCAEoAUgBYAGAAaABy"
    "AIIBAIoBAJoBEWRlZmF1bHQtc2NoZWR1bGVywgEAGgggACgAMAA6ABoAIgA=")
SERVICE = (  # create service clusterip s1 --tcp=80:8080
    "azhzAAoNCgJ2MRIHU2VydmljZRJrCiIKAnMxEgAaBWNhcG5zIgAqADIAOABCAFoJCgNhcHASAnMxEkEKGwoH"
    "ODAtODA4MBIDVENQGFAiBwgAEJA/GgAoABIJCgNhcHASAnMxGgAiCUNsdXN0ZXJJUDoAQgBSAFoAYABoABoC"
    "CgAaACIA")
ROLEBINDING = (  # create rolebinding rb1 --role=r1 --user=alice
    "azhzAAorChxyYmFjLmF1dGhvcml6YXRpb24uazhzLmlvL3YxEgtSb2xlQmluZGluZxJtChgKA3JiMRIAGgVj"
    "YXBucyIAKgAyADgAQgASKgoEVXNlchIZcmJhYy5hdXRob3JpemF0aW9uLms4cy5pbxoFYWxpY2UiABolChly"
    "YmFjLmF1dGhvcml6YXRpb24uazhzLmlvEgRSb2xlGgJyMRoAIgA=")
ACCESS_REVIEW = (  # auth can-i get pods -n capns
    "azhzAAoyChdhdXRob3JpemF0aW9uLms4cy5pby92MRIXU2VsZlN1YmplY3RBY2Nlc3NSZXZpZXcSOgoQCgAS"
    "ABoAIgAqADIAOABCABIcChoKBWNhcG5zEgNnZXQaACIAKgRwb2RzMgA6ABoICAASABoAIAAaACIA")

META = {"namespace": "capns", "creationTimestamp": None}


def _decode(b64: str) -> dict:
    return protobuf.decode(base64.b64decode(b64))


def test_configmap_and_secret() -> None:
    assert _decode(CONFIGMAP) == {"kind": "ConfigMap", "apiVersion": "v1",
                                  "metadata": {"name": "cm1", **META},
                                  "data": {"a": "b", "c": "d"}}
    assert _decode(SECRET) == {"kind": "Secret", "apiVersion": "v1",
                               "metadata": {"name": "s1", **META},
                               "data": {"password": base64.b64encode(b"hunter2").decode()}}


def test_deployment_keeps_pointers_and_drops_zero_scalars() -> None:
    labels = {"app": "d1"}
    assert _decode(DEPLOYMENT) == {
        "kind": "Deployment", "apiVersion": "apps/v1",
        "metadata": {"name": "d1", **META, "labels": labels},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "strategy": {},
                 "template": {"metadata": {"creationTimestamp": None, "labels": labels},
                              "spec": {"containers": [{
                                  "name": "nginx", "image": "nginx:1.19", "resources": {},
                                  "ports": [{"containerPort": 80}]}]}}},
        "status": {}}


def test_job_with_owner_reference_and_defaulted_pod_spec() -> None:
    job = _decode(JOB_FROM_CRONJOB)
    assert job["metadata"]["annotations"] == {"cronjob.kubernetes.io/instantiate": "manual"}
    assert job["metadata"]["ownerReferences"] == [{
        "apiVersion": "batch/v1", "kind": "CronJob", "name": "cj1", "controller": True,
        "uid": "b9918f08-bbb7-4213-b440-f40094302f3a"}]
    pod = job["spec"]["template"]["spec"]
    assert pod == {"containers": [{"name": "cj1", "image": "busybox:1.28",
                                   "command": ["echo", "hi"], "resources": {},
                                   "terminationMessagePath": "/dev/termination-log",
                                   "terminationMessagePolicy": "File",
                                   "imagePullPolicy": "IfNotPresent"}],
                   "restartPolicy": "OnFailure", "terminationGracePeriodSeconds": 30,
                   "dnsPolicy": "ClusterFirst", "securityContext": {},
                   "schedulerName": "default-scheduler"}


def test_service_int_or_string_port() -> None:
    svc = _decode(SERVICE)
    assert svc["spec"] == {"ports": [{"name": "80-8080", "protocol": "TCP", "port": 80,
                                      "targetPort": 8080}],
                           "selector": {"app": "s1"}, "type": "ClusterIP"}
    assert svc["status"] == {"loadBalancer": {}}


def test_rolebinding_and_access_review() -> None:
    rb = _decode(ROLEBINDING)
    assert rb["subjects"] == [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io",
                               "name": "alice"}]
    assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                             "name": "r1"}
    review = _decode(ACCESS_REVIEW)
    assert review["spec"] == {"resourceAttributes": {"namespace": "capns", "verb": "get",
                                                     "resource": "pods"}}


# -- hand-built messages: the wire format's corners ---------------------------------------

def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _ld(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _num(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _envelope(api_version: str, kind: str, body: bytes) -> bytes:
    type_meta = _ld(1, api_version.encode()) + _ld(2, kind.encode())
    return protobuf.MAGIC + _ld(1, type_meta) + _ld(2, body)


def test_time_negative_int_and_string_int_or_string() -> None:
    meta = _ld(1, b"x") + _ld(8, _num(1, 1700000000)) + _num(10, -5 & (1 << 64) - 1)
    rolling = _ld(1, _num(1, 1) + _ld(3, b"25%"))
    spec = _ld(4, _ld(2, rolling))
    obj = protobuf.decode(_envelope("apps/v1", "Deployment", _ld(1, meta) + _ld(2, spec)))
    assert obj["metadata"] == {"name": "x", "creationTimestamp": "2023-11-14T22:13:20Z",
                               "deletionGracePeriodSeconds": -5}
    assert obj["spec"]["strategy"] == {"rollingUpdate": {"maxUnavailable": "25%"}}


def test_packed_and_unpacked_repeated_int64() -> None:
    ctx = _ld(4, _varint(1) + _varint(2)) + _num(4, 3)
    pod = _ld(14, ctx)
    job = _ld(2, _ld(6, _ld(2, pod)))
    obj = protobuf.decode(_envelope("batch/v1", "Job", job))
    assert obj["spec"]["template"]["spec"]["securityContext"] == {"supplementalGroups": [1, 2, 3]}


@pytest.mark.parametrize("raw, code, words", [
    (_envelope("v1", "Pod", b""), 415, "kind 'Pod'"),
    (_envelope("v1", "ConfigMap", _ld(99, b"")), 415, "unknown field number 99"),
    (_envelope("v1", "ConfigMap", _ld(1, _ld(17, b""))), 415, "ConfigMap.metadata.managedFields"),
    (_envelope("v1", "ConfigMap", _num(2, 1)), 415, "wire type 0"),
    (_envelope("apps/v1", "Deployment", _ld(2, _ld(3, _ld(2, _ld(1, b""))))), 415,
     "Volume (Deployment.spec.template.spec.volumes)"),
    (_envelope("v1", "ConfigMap", _ld(1, _ld(1, b"\xff"))), 400, "UTF-8"),
    (b"k8s\x00\x0a\x05\x0a", 400, "longer than the message"),
    (b'{"kind": "ConfigMap"}', 400, "prefix"),
])
def test_refusals_say_why(raw: bytes, code: int, words: str) -> None:
    with pytest.raises(ApiError) as e:
        protobuf.decode(raw)
    assert e.value.code == code
    assert words in e.value.message


_FIXTURES = [base64.b64decode(f) for f in (CONFIGMAP, SECRET, DEPLOYMENT, JOB_FROM_CRONJOB,
                                           SERVICE, ROLEBINDING, ACCESS_REVIEW)]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(_FIXTURES), st.integers(0, 400),
       st.booleans())
def test_arbitrary_bytes_only_ever_raise_api_errors(junk: bytes, fixture: bytes, at: int,
                                                    splice: bool) -> None:
    raw = fixture[:at] + junk + fixture[at + len(junk):] if splice else protobuf.MAGIC + junk
    try:
        obj = protobuf.decode(raw)
    except ApiError as e:
        assert e.code in (400, 415)
    else:
        assert isinstance(obj, dict) and obj["kind"]


def test_decode_body_takes_protobuf_and_names_accepted_types_otherwise() -> None:
    body = negotiation.decode_body(base64.b64decode(CONFIGMAP),
                                   "application/vnd.kubernetes.protobuf")
    assert body["data"] == {"a": "b", "c": "d"}
    with pytest.raises(ApiError) as e:
        negotiation.decode_body(b"\xa1", "application/cbor")
    assert e.value.code == 415
    assert "application/json, application/yaml, application/vnd.kubernetes.protobuf" \
        in e.value.message


def test_token_request_of_kubectl_create_token() -> None:
    # kubectl create token robot --audience a --audience b --duration 10m
    #   --bound-object-kind Pod --bound-object-name p --bound-object-uid u
    ref = _ld(1, b"Pod") + _ld(2, b"v1") + _ld(3, b"p") + _ld(4, b"u")
    spec = _ld(1, b"a") + _ld(1, b"b") + _ld(3, ref) + _num(4, 600)
    body = _ld(1, _ld(1, b"robot")) + _ld(2, spec) + _ld(3, _ld(1, b""))
    decoded = protobuf.decode(_envelope("authentication.k8s.io/v1", "TokenRequest", body))
    assert decoded["spec"] == {"audiences": ["a", "b"], "expirationSeconds": 600,
                               "boundObjectRef": {"kind": "Pod", "apiVersion": "v1",
                                                  "name": "p", "uid": "u"}}
    assert decoded["kind"] == "TokenRequest"
