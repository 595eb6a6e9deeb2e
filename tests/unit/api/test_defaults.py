"""Defaults: objects read back the way Kubernetes 1.32 stores them."""

from __future__ import annotations

import base64
import copy

import pytest

from pinnace.api.defaults import apply_defaults, initial_status, job_selector_defaults, qos_class
from pinnace.api.kinds import REGISTRY

RT = {t.kind: t for t in REGISTRY if t.group != "events.k8s.io"}

CONTAINER_DEFAULTS = {"imagePullPolicy": "IfNotPresent",
                      "terminationMessagePath": "/dev/termination-log",
                      "terminationMessagePolicy": "File", "resources": {}}
TEMPLATE_SPEC_DEFAULTS = {"restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                          "securityContext": {}, "terminationGracePeriodSeconds": 30,
                          "schedulerName": "default-scheduler"}


def defaulted(kind: str, obj: dict) -> dict:
    obj = copy.deepcopy(obj)
    apply_defaults(RT[kind], obj)
    return obj


def test_bare_pod():
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nginx"},
           "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}
    out = defaulted("Pod", obj)
    initial_status(RT["Pod"], out)
    assert out == {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nginx"},
        "spec": {
            "containers": [{"name": "nginx", "image": "nginx", "imagePullPolicy": "Always",
                            "resources": {}, "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File"}],
            "dnsPolicy": "ClusterFirst", "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority", "priority": 0,
            "restartPolicy": "Always", "schedulerName": "default-scheduler",
            "securityContext": {}, "serviceAccount": "default",
            "serviceAccountName": "default", "terminationGracePeriodSeconds": 30,
        },
        "status": {"phase": "Pending", "qosClass": "BestEffort"},
    }


def test_pod_container_details():
    obj = {"metadata": {"name": "p"}, "spec": {
        "containers": [{
            "name": "c", "image": "registry:5000/app:v1",
            "ports": [{"containerPort": 80}],
            "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "livenessProbe": {"httpGet": {"port": 80}},
            "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 5},
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
        }],
        "volumes": [{"name": "a", "configMap": {"name": "cm"}},
                    {"name": "b", "secret": {"secretName": "s"}},
                    {"name": "c"}, {"name": "d", "hostPath": {"path": "/x"}}],
    }}
    out = defaulted("Pod", obj)
    ctr = out["spec"]["containers"][0]
    assert ctr["imagePullPolicy"] == "IfNotPresent"
    assert ctr["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert ctr["env"][0]["valueFrom"]["fieldRef"] == {"fieldPath": "metadata.name",
                                                      "apiVersion": "v1"}
    assert ctr["livenessProbe"] == {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
                                    "timeoutSeconds": 1, "periodSeconds": 10,
                                    "successThreshold": 1, "failureThreshold": 3}
    assert ctr["readinessProbe"]["periodSeconds"] == 5
    assert ctr["resources"]["requests"] == {"cpu": "1", "memory": "1Gi"}  # from limits
    assert out["spec"]["volumes"] == [
        {"name": "a", "configMap": {"name": "cm", "defaultMode": 420}},
        {"name": "b", "secret": {"secretName": "s", "defaultMode": 420}},
        {"name": "c", "emptyDir": {}},
        {"name": "d", "hostPath": {"path": "/x", "type": ""}}]
    initial_status(RT["Pod"], out)
    assert out["status"]["qosClass"] == "Guaranteed"


@pytest.mark.parametrize(("image", "policy"), [
    ("nginx", "Always"), ("nginx:latest", "Always"), ("nginx:1.19", "IfNotPresent"),
    ("localhost:5000/nginx", "Always"), ("localhost:5000/nginx:1", "IfNotPresent"),
    ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
])
def test_image_pull_policy(image, policy):
    out = defaulted("Pod", {"spec": {"containers": [{"name": "c", "image": image}]}})
    assert out["spec"]["containers"][0]["imagePullPolicy"] == policy


@pytest.mark.parametrize(("resources", "qos"), [
    ([{}], "BestEffort"),
    ([{"requests": {"cpu": "100m"}}], "Burstable"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}}], "Guaranteed"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m"}}], "Guaranteed"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}], "Burstable"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}}, {}], "Burstable"),
])
def test_qos_class(resources, qos):
    obj = {"spec": {"containers": [{"name": f"c{i}", "image": "x", "resources": r}
                                   for i, r in enumerate(resources)]}}
    apply_defaults(RT["Pod"], obj)
    assert qos_class(obj["spec"]) == qos


def test_deployment():
    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx"},
           "spec": {"selector": {"matchLabels": {"app": "nginx"}},
                    "template": {"metadata": {"labels": {"app": "nginx"}},
                                 "spec": {"containers": [{"name": "nginx",
                                                          "image": "nginx:1.19"}]}}}}
    assert defaulted("Deployment", obj) == {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx"},
        "spec": {
            "progressDeadlineSeconds": 600, "replicas": 1, "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app": "nginx"}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {"metadata": {"labels": {"app": "nginx"}},
                         "spec": {"containers": [{"name": "nginx", "image": "nginx:1.19",
                                                  **CONTAINER_DEFAULTS}],
                                  **TEMPLATE_SPEC_DEFAULTS}},
        },
    }


def test_recreate_deployment_has_no_rolling_update():
    obj = {"spec": {"strategy": {"type": "Recreate"}, "template": {"spec": {}}}}
    assert defaulted("Deployment", obj)["spec"]["strategy"] == {"type": "Recreate"}


def test_job():
    obj = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "pi", "namespace": "default", "uid": "abc-123"},
           "spec": {"backoffLimit": 4,
                    "template": {"spec": {"containers": [{"name": "pi", "image": "perl:5.34.0"}],
                                          "restartPolicy": "Never"}}}}
    out = defaulted("Job", obj)
    job_selector_defaults(out)
    labels = {"batch.kubernetes.io/controller-uid": "abc-123",
              "batch.kubernetes.io/job-name": "pi", "controller-uid": "abc-123",
              "job-name": "pi"}
    template_spec = {**TEMPLATE_SPEC_DEFAULTS, "restartPolicy": "Never",
                     "containers": [{"name": "pi", "image": "perl:5.34.0",
                                     **CONTAINER_DEFAULTS}]}
    assert out == {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "pi", "namespace": "default", "uid": "abc-123", "labels": labels},
        "spec": {"backoffLimit": 4, "completionMode": "NonIndexed", "completions": 1,
                 "parallelism": 1, "podReplacementPolicy": "TerminatingOrFailed",
                 "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "abc-123"}},
                 "suspend": False,
                 "template": {"metadata": {"labels": labels}, "spec": template_spec}},
    }


def test_job_counts():
    out = defaulted("Job", {"spec": {"parallelism": 3, "template": {"spec": {}}}})
    assert "completions" not in out["spec"] and out["spec"]["backoffLimit"] == 6
    out = defaulted("Job", {"spec": {"completions": 5, "template": {"spec": {}}}})
    assert out["spec"]["parallelism"] == 1
    manual = {"metadata": {"uid": "u", "name": "j"},
              "spec": {"manualSelector": True, "selector": {"matchLabels": {"a": "b"}},
                       "template": {"metadata": {"labels": {"a": "b"}}, "spec": {}}}}
    job_selector_defaults(manual)
    assert manual["spec"]["selector"] == {"matchLabels": {"a": "b"}}
    assert manual["spec"]["template"]["metadata"]["labels"] == {"a": "b"}


def test_service():
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}
    assert defaulted("Service", obj) == {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"internalTrafficPolicy": "Cluster", "ipFamilies": ["IPv4"],
                 "ipFamilyPolicy": "SingleStack",
                 "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                 "selector": {"app": "web"}, "sessionAffinity": "None", "type": "ClusterIP"},
    }
    node_port = defaulted("Service", {"spec": {"type": "NodePort", "ports": [{"port": 80}]}})
    assert node_port["spec"]["externalTrafficPolicy"] == "Cluster"
    external = defaulted("Service", {"spec": {"type": "ExternalName", "externalName": "x.y"}})
    assert "ipFamilies" not in external["spec"]
    assert "internalTrafficPolicy" not in external["spec"]


def test_other_workloads():
    ds = defaulted("DaemonSet", {"spec": {"template": {"spec": {}}}})["spec"]
    assert ds["updateStrategy"] == {"type": "RollingUpdate",
                                    "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert ds["revisionHistoryLimit"] == 10
    sts = defaulted("StatefulSet", {"spec": {"template": {"spec": {}}, "volumeClaimTemplates": [
        {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}})["spec"]
    assert sts["replicas"] == 1 and sts["podManagementPolicy"] == "OrderedReady"
    assert sts["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert sts["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain",
                                                           "whenScaled": "Retain"}
    assert sts["volumeClaimTemplates"][0]["spec"]["volumeMode"] == "Filesystem"
    assert defaulted("ReplicaSet", {"spec": {}})["spec"]["replicas"] == 1
    cj = defaulted("CronJob", {"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {
        "template": {"spec": {"containers": [{"name": "c", "image": "x:1"}],
                              "restartPolicy": "OnFailure"}}}}}})["spec"]
    assert (cj["concurrencyPolicy"], cj["suspend"], cj["successfulJobsHistoryLimit"],
            cj["failedJobsHistoryLimit"]) == ("Allow", False, 3, 1)
    pod_spec = cj["jobTemplate"]["spec"]["template"]["spec"]
    assert pod_spec["dnsPolicy"] == "ClusterFirst"
    assert "backoffLimit" not in cj["jobTemplate"]["spec"]  # Job defaults are not applied


def test_storage_and_config_objects():
    pv = defaulted("PersistentVolume", {"metadata": {"name": "v"}, "spec": {}})
    assert pv["spec"] == {"persistentVolumeReclaimPolicy": "Retain", "volumeMode": "Filesystem"}
    assert pv["status"] == {"phase": "Pending"}
    pvc = defaulted("PersistentVolumeClaim", {"spec": {}})
    assert pvc["spec"] == {"volumeMode": "Filesystem"} and pvc["status"] == {"phase": "Pending"}
    sc = defaulted("StorageClass", {"provisioner": "x"})
    assert sc["reclaimPolicy"] == "Delete" and sc["volumeBindingMode"] == "Immediate"
    secret = defaulted("Secret", {"data": {"a": "YQ=="}, "stringData": {"b": "pässword"}})
    assert "stringData" not in secret and secret["type"] == "Opaque"
    assert secret["data"] == {"a": "YQ==", "b": base64.b64encode("pässword".encode()).decode()}
    ns = defaulted("Namespace", {"metadata": {"name": "team-a"}})
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team-a"}
    assert ns["spec"] == {"finalizers": ["kubernetes"]} and ns["status"] == {"phase": "Active"}
    eps = defaulted("EndpointSlice", {"addressType": "IPv4", "ports": [{"port": 80}]})
    assert eps["ports"] == [{"port": 80, "name": "", "protocol": "TCP"}]
    rb = defaulted("RoleBinding", {"subjects": [{"kind": "User", "name": "u"},
                                                {"kind": "ServiceAccount", "name": "s"}]})
    assert [s["apiGroup"] for s in rb["subjects"]] == ["rbac.authorization.k8s.io", ""]


def test_initial_status_replaces_client_status():
    pod = {"spec": {"containers": [{"name": "c", "image": "x"}]},
           "status": {"phase": "Running", "podIP": "1.2.3.4"}}
    initial_status(RT["Pod"], pod)
    assert pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    ns = {"metadata": {"name": "x"}, "status": {"phase": "Terminating"}}
    initial_status(RT["Namespace"], ns)
    assert ns["status"] == {"phase": "Active"}


@pytest.mark.parametrize("kind", sorted(RT))
def test_defaults_tolerate_odd_shapes(kind):
    for obj in ({}, {"spec": None}, {"spec": "x"}, {"spec": {"template": "x"}},
                {"spec": {"containers": [None, 1]}}):
        apply_defaults(RT[kind], obj)
        initial_status(RT[kind], obj)
