"""Server-side printing: the Table kubectl prints, checked against Kubernetes 1.32's columns."""

from datetime import UTC, datetime, timedelta

import pytest

from pinnace.api.kinds import REGISTRY
from pinnace.api.tables import column_definitions, human_duration, table

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)


def ago(**kw) -> str:
    return (NOW - timedelta(**kw)).strftime("%Y-%m-%dT%H:%M:%SZ")


def names(kind, group, wide=False):
    return [c["name"] for c in column_definitions(kind, group) if wide or c["priority"] == 0]


def cells(kind, group, obj):
    return table(kind, group, [obj], now=NOW)["rows"][0]["cells"]


def pod(name="web", containers=1, init=0, **status):
    return {
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": ago(minutes=5)},
        "spec": {"containers": [{"name": f"c{i}", "image": "busybox"} for i in range(containers)],
                 "initContainers": [{"name": f"i{i}", "image": "busybox"} for i in range(init)]},
        "status": status,
    }


# -- HumanDuration ------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "text"), [
    (-3, "<invalid>"), (-1.5, "0s"), (0, "0s"), (5, "5s"), (119, "119s"), (120, "2m"),
    (200, "3m20s"), (599, "9m59s"), (600, "10m"), (3 * 3600 - 1, "179m"), (3 * 3600, "3h"),
    (3 * 3600 + 60 * 5, "3h5m"), (8 * 3600 - 1, "7h59m"), (8 * 3600, "8h"), (47 * 3600, "47h"),
    (48 * 3600, "2d"), (53 * 3600, "2d5h"), (8 * 86400 - 1, "7d23h"), (8 * 86400, "8d"),
    (729 * 86400, "729d"), (730 * 86400, "2y"), (731 * 86400, "2y1d"), (8 * 365 * 86400, "8y"),
])
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


# -- Pods ---------------------------------------------------------------------------


def test_pod_columns():
    assert names("Pod", "") == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert names("Pod", "", wide=True)[5:] == ["IP", "Node", "Nominated Node", "Readiness Gates"]
    first = column_definitions("Pod", "")[0]
    assert first["format"] == "name" and first["type"] == "string"
    assert first["description"].startswith("Name must be unique within a namespace.")


def test_pod_running_with_restarts():
    p = pod(phase="Running", podIP="10.1.0.7", podIPs=[{"ip": "10.1.0.7"}], containerStatuses=[{
        "name": "c0", "ready": True, "restartCount": 2, "state": {"running": {}},
        "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(minutes=3)}}}])
    p["spec"]["nodeName"] = "node-1"
    assert cells("Pod", "", p) == ["web", "1/1", "Running", "2 (3m ago)", "5m",
                                   "10.1.0.7", "node-1", "<none>", "<none>"]


def test_pod_pending():
    assert cells("Pod", "", pod(phase="Pending"))[:5] == ["web", "0/1", "Pending", "0", "5m"]


def test_pod_waiting_container():
    p = pod(phase="Pending", containerStatuses=[{
        "name": "c0", "ready": False, "restartCount": 0,
        "state": {"waiting": {"reason": "ContainerCreating"}}}])
    assert cells("Pod", "", p)[2] == "ContainerCreating"


def test_pod_completed():
    p = pod(phase="Succeeded", containerStatuses=[{
        "name": "c0", "ready": False, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}])
    row = table("Pod", "", [p], now=NOW)["rows"][0]
    assert row["cells"][:4] == ["web", "0/1", "Completed", "0"]
    assert row["conditions"] == [{"type": "Completed", "status": "True", "reason": "Succeeded",
                                  "message": "The pod has completed successfully."}]


def test_pod_crash_loop():
    p = pod(phase="Running", containerStatuses=[{
        "name": "c0", "ready": False, "restartCount": 4,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                     "finishedAt": ago(seconds=40)}}}])
    assert cells("Pod", "", p)[:4] == ["web", "0/1", "CrashLoopBackOff", "4 (40s ago)"]


def test_pod_error_without_reason_shows_exit_code():
    p = pod(phase="Failed", containerStatuses=[{
        "name": "c0", "restartCount": 0, "state": {"terminated": {"exitCode": 3}}}])
    assert cells("Pod", "", p)[2] == "ExitCode:3"


def test_pod_terminating():
    p = pod(phase="Running", containerStatuses=[{
        "name": "c0", "ready": True, "restartCount": 0, "state": {"running": {}}}])
    p["metadata"]["deletionTimestamp"] = ago(seconds=1)
    assert cells("Pod", "", p)[:3] == ["web", "1/1", "Terminating"]
    p["status"]["phase"] = "Succeeded"  # a finished pod keeps its status
    assert cells("Pod", "", p)[2] == "Succeeded"


def test_pod_initializing():
    p = pod(init=1, phase="Pending", initContainerStatuses=[{
        "name": "i0", "ready": False, "restartCount": 0, "state": {"running": {}}}],
        containerStatuses=[{"name": "c0", "ready": False, "restartCount": 0,
                            "state": {"waiting": {"reason": "PodInitializing"}}}])
    assert cells("Pod", "", p)[:3] == ["web", "0/1", "Init:0/1"]
    p["status"]["initContainerStatuses"][0]["state"] = {
        "waiting": {"reason": "ImagePullBackOff"}}
    assert cells("Pod", "", p)[2] == "Init:ImagePullBackOff"
    p["status"]["initContainerStatuses"][0]["state"] = {
        "terminated": {"exitCode": 2, "reason": "Error"}}
    assert cells("Pod", "", p)[2] == "Init:Error"


def test_pod_without_timestamp_and_readiness_gates():
    p = pod(phase="Running", conditions=[{"type": "example.com/gate", "status": "True"}])
    del p["metadata"]["creationTimestamp"]
    p["spec"]["readinessGates"] = [{"conditionType": "example.com/gate"},
                                   {"conditionType": "other"}]
    c = cells("Pod", "", p)
    assert c[4] == "<unknown>" and c[8] == "1/2"


# -- workloads ---------------------------------------------------------------------


def test_deployment():
    d = {"metadata": {"name": "web", "creationTimestamp": ago(hours=2, minutes=3)},
         "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                  "template": {"spec": {"containers": [
                      {"name": "nginx", "image": "nginx:1.27"},
                      {"name": "side", "image": "busybox"}]}}},
         "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}
    assert names("Deployment", "apps", wide=True) == [
        "Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"]
    assert cells("Deployment", "apps", d) == [
        "web", "2/3", 3, 2, "123m", "nginx,side", "nginx:1.27,busybox", "app=web"]


def test_replicaset_daemonset_statefulset():
    rs = {"metadata": {"name": "web-1", "creationTimestamp": ago(days=3)},
          "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                   "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
          "status": {"replicas": 2, "readyReplicas": 1}}
    assert cells("ReplicaSet", "apps", rs) == ["web-1", 2, 2, 1, "3d", "c", "i", "app=web"]
    ds = {"metadata": {"name": "agent", "creationTimestamp": ago(seconds=30)},
          "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": {"spec": {
              "containers": [{"name": "c", "image": "i"}],
              "nodeSelector": {"kubernetes.io/os": "linux"}}}},
          "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1,
                     "updatedNumberScheduled": 2, "numberAvailable": 1}}
    assert names("DaemonSet", "apps") == ["Name", "Desired", "Current", "Ready", "Up-to-date",
                                          "Available", "Node Selector", "Age"]
    assert cells("DaemonSet", "apps", ds)[:8] == ["agent", 2, 2, 1, 2, 1,
                                                  "kubernetes.io/os=linux", "30s"]
    sts = {"metadata": {"name": "db"}, "spec": {"replicas": 3, "template": {"spec": {
        "containers": [{"name": "pg", "image": "postgres"}]}}}, "status": {"readyReplicas": 3}}
    assert cells("StatefulSet", "apps", sts) == ["db", "3/3", "<unknown>", "pg", "postgres"]


def _job(**status):
    return {"metadata": {"name": "pi", "creationTimestamp": ago(minutes=10)},
            "spec": {"completions": 1, "parallelism": 1,
                     "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
                     "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
            "status": status}


def test_job_complete_and_running():
    assert names("Job", "batch") == ["Name", "Status", "Completions", "Duration", "Age"]
    done = _job(succeeded=1, startTime=ago(minutes=10), completionTime=ago(minutes=9, seconds=21),
                conditions=[{"type": "Complete", "status": "True"}])
    assert cells("Job", "batch", done) == [
        "pi", "Complete", "1/1", "39s", "10m", "pi", "perl",
        "batch.kubernetes.io/controller-uid=u"]
    running = _job(active=1, startTime=ago(minutes=4))
    assert cells("Job", "batch", running)[:5] == ["pi", "Running", "0/1", "4m", "10m"]
    failed = _job(failed=1, conditions=[{"type": "Failed", "status": "True"}])
    assert cells("Job", "batch", failed)[1:4] == ["Failed", "0/1", ""]
    parallel = _job()
    parallel["spec"] = {"parallelism": 3}
    assert cells("Job", "batch", parallel)[2] == "0/1 of 3"


def test_cronjob():
    cj = {"metadata": {"name": "tick", "creationTimestamp": ago(hours=1)},
          "spec": {"schedule": "*/5 * * * *", "suspend": False, "jobTemplate": {"spec": {
              "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}},
          "status": {"active": [{"name": "tick-1"}], "lastScheduleTime": ago(minutes=2)}}
    assert names("CronJob", "batch") == ["Name", "Schedule", "Timezone", "Suspend", "Active",
                                         "Last Schedule", "Age"]
    assert cells("CronJob", "batch", cj)[:7] == ["tick", "*/5 * * * *", "<none>", "False", 1,
                                                 "2m", "60m"]


# -- networking ----------------------------------------------------------------------


def test_nodeport_service():
    svc = {"metadata": {"name": "web", "creationTimestamp": ago(minutes=1)},
           "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                    "selector": {"app": "web"},
                    "ports": [{"port": 8080, "nodePort": 31001, "protocol": "TCP"},
                              {"port": 53, "protocol": "UDP"}]}}
    assert names("Service", "", wide=True) == [
        "Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"]
    assert cells("Service", "", svc) == ["web", "NodePort", "10.96.0.10", "<none>",
                                         "8080:31001/TCP,53/UDP", "60s", "app=web"]


def test_other_services():
    headless = {"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "ports": []}}
    assert cells("Service", "", headless)[1:5] == ["ClusterIP", "None", "<none>", "<none>"]
    lb = {"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.1"}}
    assert cells("Service", "", lb)[3] == "<pending>"
    lb["status"] = {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}
    assert cells("Service", "", lb)[3] == "1.2.3.4"


def test_endpoints_and_slices():
    ep = {"metadata": {"name": "web"}, "subsets": [{
        "addresses": [{"ip": f"10.0.0.{i}"} for i in range(1, 6)], "ports": [{"port": 80}]}]}
    assert cells("Endpoints", "", ep)[1] == "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 2 more..."
    assert cells("Endpoints", "", {"metadata": {"name": "x"}})[1] == "<none>"
    es = {"metadata": {"name": "web-abc"}, "addressType": "IPv4", "ports": [{"port": 80}],
          "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]}
    assert cells("EndpointSlice", "discovery.k8s.io", es)[:4] == [
        "web-abc", "IPv4", "80", "10.0.0.1,10.0.0.2"]


# -- cluster resources ---------------------------------------------------------------


def test_node():
    node = {"metadata": {"name": "n1", "creationTimestamp": ago(days=1),
                         "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "192.168.1.2"}],
                       "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian",
                                    "kernelVersion": "6.1", "containerRuntimeVersion": "runc"}}}
    assert names("Node", "", wide=True) == [
        "Name", "Status", "Roles", "Age", "Version", "Internal-IP", "External-IP", "OS-Image",
        "Kernel-Version", "Container-Runtime"]
    assert cells("Node", "", node) == [
        "n1", "Ready,SchedulingDisabled", "control-plane", "24h", "v1.32.0", "192.168.1.2",
        "<none>", "Debian", "6.1", "runc"]


def test_pv_bound_and_pvc_bound_and_pending():
    pv = {"metadata": {"name": "pv-1", "creationTimestamp": ago(minutes=7)},
          "spec": {"capacity": {"storage": "1024Mi"}, "accessModes": ["ReadWriteMany",
                                                                      "ReadWriteOnce"],
                   "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "local",
                   "claimRef": {"namespace": "default", "name": "data"},
                   "volumeMode": "Filesystem"},
          "status": {"phase": "Bound"}}
    assert names("PersistentVolume", "") == [
        "Name", "Capacity", "Access Modes", "Reclaim Policy", "Status", "Claim", "StorageClass",
        "VolumeAttributesClass", "Reason", "Age"]
    assert cells("PersistentVolume", "", pv) == [
        "pv-1", "1Gi", "RWO,RWX", "Retain", "Bound", "default/data", "local", "<unset>", "",
        "7m", "Filesystem"]
    pvc = {"metadata": {"name": "data", "creationTimestamp": ago(minutes=7)},
           "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local",
                    "resources": {"requests": {"storage": "1Gi"}}, "volumeName": "pv-1"},
           "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"],
                      "capacity": {"storage": "1Gi"}}}
    assert names("PersistentVolumeClaim", "", wide=True) == [
        "Name", "Status", "Volume", "Capacity", "Access Modes", "StorageClass",
        "VolumeAttributesClass", "Age", "VolumeMode"]
    assert cells("PersistentVolumeClaim", "", pvc) == [
        "data", "Bound", "pv-1", "1Gi", "RWO", "local", "<unset>", "7m", "<unset>"]
    pending = {"metadata": {"name": "wait"}, "spec": {"accessModes": ["ReadWriteOnce"]},
               "status": {"phase": "Pending"}}
    assert cells("PersistentVolumeClaim", "", pending) == [
        "wait", "Pending", "", "", "", "", "<unset>", "<unknown>", "<unset>"]


def test_simple_kinds():
    cm = {"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": ""}}
    assert cells("ConfigMap", "", cm)[:2] == ["cfg", 3]
    secret = {"metadata": {"name": "s"}, "type": "Opaque", "data": {"k": "dg=="}}
    assert cells("Secret", "", secret)[:3] == ["s", "Opaque", 1]
    assert cells("Namespace", "", {"metadata": {"name": "ns"}, "status": {"phase": "Active"}}
                 )[:2] == ["ns", "Active"]
    assert cells("ServiceAccount", "", {"metadata": {"name": "default"}})[:2] == ["default", 0]
    sc = {"metadata": {"name": "local", "annotations": {
        "storageclass.kubernetes.io/is-default-class": "true"}}, "provisioner": "pinnace/local"}
    assert cells("StorageClass", "storage.k8s.io", sc)[:5] == [
        "local (default)", "pinnace/local", "Delete", "Immediate", False]
    lease = {"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1"}}
    assert cells("Lease", "coordination.k8s.io", lease)[:2] == ["n1", "n1"]
    cr = {"metadata": {"name": "web-7d9", "ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": True}]},
        "revision": 2}
    assert cells("ControllerRevision", "apps", cr)[:3] == ["web-7d9", "statefulset.apps/web", 2]
    rb = {"metadata": {"name": "rb"}, "roleRef": {"kind": "Role", "name": "reader"},
          "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"},
                       {"kind": "ServiceAccount", "namespace": "d", "name": "sa"}]}
    assert names("RoleBinding", "rbac.authorization.k8s.io") == ["Name", "Role", "Age"]
    assert cells("RoleBinding", "rbac.authorization.k8s.io", rb) == [
        "rb", "Role/reader", "<unknown>", "alice", "devs", "d/sa"]


def test_events():
    ev = {"metadata": {"name": "web.17a", "namespace": "default"},
          "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{c}"},
          "reason": "Pulled", "message": "Pulled image \n", "type": "Normal",
          "source": {"component": "kubelet", "host": "n1"},
          "firstTimestamp": ago(minutes=5), "lastTimestamp": ago(minutes=1), "count": 3}
    assert names("Event", "") == ["Last Seen", "Type", "Reason", "Object", "Message"]
    assert names("Event", "", wide=True)[4:] == ["Subobject", "Source", "Message", "First Seen",
                                                 "Count", "Name"]
    assert cells("Event", "", ev) == ["60s", "Normal", "Pulled", "pod/web", "spec.containers{c}",
                                      "kubelet, n1", "Pulled image", "5m", 3, "web.17a"]
    new_api = {"metadata": {"name": "e"}, "regarding": {"kind": "Node", "name": "n1"},
               "note": "hello", "type": "Warning", "reason": "R", "reportingController": "x",
               "eventTime": "2024-06-01T11:59:50.000000Z"}
    assert cells("Event", "events.k8s.io", new_api) == [
        "10s", "Warning", "R", "node/n1", "", "x", "hello", "10s", 1, "e"]


# -- the Table envelope ---------------------------------------------------------------


def test_default_table_for_kinds_without_printer():
    role = {"metadata": {"name": "reader", "namespace": "d",
                         "creationTimestamp": "2024-05-01T10:00:00Z"}}
    t = table("Role", "rbac.authorization.k8s.io", [role], now=NOW)
    assert [(c["name"], c["type"]) for c in t["columnDefinitions"]] == [
        ("Name", "string"), ("Created At", "date")]
    assert t["rows"][0]["cells"] == ["reader", "2024-05-01T10:00:00Z"]


def test_table_envelope_and_include_object():
    p = pod(phase="Pending")
    t = table("Pod", "", [p], resource_version="42", continue_token="abc", now=NOW)
    assert t["kind"] == "Table" and t["apiVersion"] == "meta.k8s.io/v1"
    assert t["metadata"] == {"resourceVersion": "42", "continue": "abc"}
    assert t["rows"][0]["object"] == {"kind": "PartialObjectMetadata",
                                      "apiVersion": "meta.k8s.io/v1", "metadata": p["metadata"]}
    assert table("Pod", "", [p], include_object="Object", now=NOW)["rows"][0]["object"] is p
    assert "object" not in table("Pod", "", [p], include_object="None", now=NOW)["rows"][0]
    assert table("Pod", "", [p], include_headers=False, now=NOW)["columnDefinitions"] == []
    assert table("Pod", "", [], now=NOW)["rows"] == []


def test_every_registered_kind_prints_one_cell_per_column():
    for rt in REGISTRY:
        columns = column_definitions(rt.kind, rt.group)
        assert columns, rt.kind
        assert all(set(c) == {"name", "type", "format", "description", "priority"}
                   for c in columns)
        obj = {"metadata": {"name": "x", "creationTimestamp": ago(seconds=5)}}
        row_cells = cells(rt.kind, rt.group, obj)
        assert len(row_cells) == len(columns), rt.kind
        assert row_cells[[c["format"] for c in columns].index("name")] == "x"
