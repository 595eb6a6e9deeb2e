"""The local-path provisioner against a real API server: the default StorageClass
installed once, PVs provisioned for the node the scheduler selected (as the PV binder
and the scheduler's VolumeBinding plugin leave a claim: class set, selected-node
annotated), what local-path refuses, expansion's API half and reclaim Delete.

The claims here are bound by hand where a test needs a bound claim (the binder is
another controller); the node is a Node object annotated as a node agent annotates it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pinnace.api import local_path as lp
from pinnace.api.errors import ApiError
from pinnace.cluster import Cluster, ClusterConfig
from pinnace.controllers.local_path import LocalPathProvisioner
from pinnace.controllers.pv_protection import PVCProtectionController, PVProtectionController
from tests.integration.conftest import Components, eventually

NS = "default"
STORAGE_DIR = "/var/lib/pinnace-test/storage"


def _claim(name: str, *, size: str = "20Mi", node: str | None = "node-1",
           modes: tuple[str, ...] = ("ReadWriteOnce",), **spec: Any) -> dict[str, Any]:
    """A local-path claim (`spec` adds to or overrides its spec: storageClassName=…)."""
    annotations = {lp.SELECTED_NODE: node} if node else {}
    return {"metadata": {"name": name, "annotations": annotations},
            "spec": {"storageClassName": lp.CLASS_NAME, "accessModes": list(modes),
                     "resources": {"requests": {"storage": size}}, **spec}}


async def _start(client: Any, components: Components) -> None:
    await client.create(client.resource("v1", "Node"), {
        "metadata": {"name": "node-1", "annotations": {lp.STORAGE_DIR_ANNOTATION: STORAGE_DIR},
                     "labels": {lp.HOSTNAME_LABEL: "node-1"}}})
    await components.start(LocalPathProvisioner(client, components.factory))
    classes = client.resource("storage.k8s.io/v1", "StorageClass")

    async def installed() -> bool:
        try:
            await client.get(classes, lp.CLASS_NAME)
        except ApiError:
            return False
        return True
    await eventually(installed)


async def _events(client: Any, name: str) -> list[tuple[str, str, str]]:
    events = await client.list(client.resource("v1", "Event"), NS)
    return [(e["type"], e["reason"], e["message"]) for e in events["items"]
            if e["involvedObject"]["name"] == name]


async def _pv(client: Any, name: str) -> dict[str, Any] | None:
    try:
        return await client.get(client.resource("v1", "PersistentVolume"), name)
    except ApiError as e:
        assert e.code == 404
        return None


async def _provisioned(client: Any, claim: dict[str, Any]) -> dict[str, Any]:
    """The PV provisioned for `claim`, once it exists."""
    name = f"pvc-{claim['metadata']['uid']}"

    async def provisioned() -> bool:
        return await _pv(client, name) is not None
    await eventually(provisioned)
    pv = await _pv(client, name)
    assert pv is not None
    return pv


async def test_default_class_is_installed_once_and_an_edit_is_kept(
        client: Any, components: Components) -> None:
    await _start(client, components)
    classes = client.resource("storage.k8s.io/v1", "StorageClass")
    sc = await client.get(classes, lp.CLASS_NAME)
    assert sc["provisioner"] == "pinnace.io/local-path"
    assert sc["metadata"]["annotations"][lp.DEFAULT_CLASS] == "true"
    assert (sc["reclaimPolicy"], sc["volumeBindingMode"], sc["allowVolumeExpansion"]) == \
        ("Delete", "WaitForFirstConsumer", True)
    # an administrator makes it a non-default class; a provisioner starting again keeps that
    await client.patch(classes, lp.CLASS_NAME,
                       {"metadata": {"annotations": {lp.DEFAULT_CLASS: "false"}}})
    await eventually(lambda: (components.factory.informer("storage.k8s.io/v1", "StorageClass")
                              .get(lp.CLASS_NAME) or {})["metadata"]["annotations"]
                     [lp.DEFAULT_CLASS] == "false")
    again = LocalPathProvisioner(client, components.factory)
    await again.install_class()
    sc = await client.get(classes, lp.CLASS_NAME)
    assert sc["metadata"]["annotations"][lp.DEFAULT_CLASS] == "false"


async def test_claim_on_selected_node_gets_a_prebound_pv(client: Any,
                                                         components: Components) -> None:
    await _start(client, components)
    pvcs = client.resource("v1", "PersistentVolumeClaim")
    waiting = await client.create(pvcs, _claim("waiting", node=None), NS)
    claim = await client.create(pvcs, _claim("data"), NS)
    uid = claim["metadata"]["uid"]
    pv = await _provisioned(client, claim)
    name = pv["metadata"]["name"]
    assert pv["metadata"]["annotations"][lp.PROVISIONED_BY] == "pinnace.io/local-path"
    spec = pv["spec"]
    assert spec["capacity"] == {"storage": "20Mi"}
    assert spec["accessModes"] == ["ReadWriteOnce"]
    assert spec["persistentVolumeReclaimPolicy"] == "Delete"
    assert spec["storageClassName"] == "local-path"
    assert spec["local"] == {"path": f"{STORAGE_DIR}/{name}_default_data"}
    assert spec["nodeAffinity"]["required"]["nodeSelectorTerms"] == [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-1"]}]}]
    ref = spec["claimRef"]
    assert (ref["kind"], ref["namespace"], ref["name"], ref["uid"]) == \
        ("PersistentVolumeClaim", NS, "data", uid)

    async def succeeded() -> bool:
        return ("Normal", "ProvisioningSucceeded", f"Successfully provisioned volume {name}") \
            in await _events(client, "data")
    await eventually(succeeded)
    # a claim with no node selected yet waits for the scheduler: nothing is provisioned
    assert await _pv(client, f"pvc-{waiting['metadata']['uid']}") is None


async def test_what_local_path_cannot_do_is_refused_with_a_warning(
        client: Any, components: Components) -> None:
    await _start(client, components)
    pvcs = client.resource("v1", "PersistentVolumeClaim")
    cases = {
        "sel": (_claim("sel", selector={"matchLabels": {"a": "b"}}),
                "claim.Spec.Selector is not supported"),
        "rwx": (_claim("rwx", modes=("ReadWriteMany",)),
                "NodePath only supports ReadWriteOnce and ReadWriteOncePod (1.22+) access modes"),
        "nowhere": (_claim("nowhere", node="node-9"), 'node "node-9" not found'),
    }
    uids = {}
    for name, (claim, _) in cases.items():
        uids[name] = (await client.create(pvcs, claim, NS))["metadata"]["uid"]
    for name, (_, message) in cases.items():
        async def refused(name: str = name, message: str = message) -> bool:
            return any(t == "Warning" and r == "ProvisioningFailed" and m.endswith(message)
                       for t, r, m in await _events(client, name))
        await eventually(refused)
        assert await _pv(client, f"pvc-{uids[name]}") is None


async def _bind(client: Any, claim: dict[str, Any], pv_name: str) -> None:
    """What the PV binder does, by hand."""
    pvcs = client.resource("v1", "PersistentVolumeClaim")
    m = claim["metadata"]
    await client.patch(pvcs, m["name"], {"spec": {"volumeName": pv_name}}, namespace=NS)
    await client.patch(pvcs, m["name"], {"status": {
        "phase": "Bound", "capacity": claim["spec"]["resources"]["requests"],
        "accessModes": claim["spec"]["accessModes"]}}, namespace=NS, subresource="status")


async def test_expansion_grows_the_pv_and_marks_the_claim_pending(
        client: Any, components: Components) -> None:
    await _start(client, components)
    pvcs = client.resource("v1", "PersistentVolumeClaim")
    claim = await client.create(pvcs, _claim("grow"), NS)
    name = (await _provisioned(client, claim))["metadata"]["name"]
    await _bind(client, claim, name)
    await client.patch(pvcs, "grow", {"spec": {"resources": {"requests": {"storage": "50Mi"}}}},
                       namespace=NS)

    async def grown() -> bool:
        pv = await _pv(client, name)
        return pv is not None and pv["spec"]["capacity"]["storage"] == "50Mi"
    await eventually(grown)

    async def pending() -> bool:
        status = (await client.get(pvcs, "grow", NS)).get("status") or {}
        return any(c["type"] == "FileSystemResizePending" and c["status"] == "True"
                   for c in status.get("conditions") or [])
    await eventually(pending)
    # the claim's capacity is the node's to report, once the file system has grown
    assert (await client.get(pvcs, "grow", NS))["status"]["capacity"] == {"storage": "20Mi"}


async def test_reclaim_delete_removes_the_pv_of_a_deleted_claim(
        client: Any, components: Components) -> None:
    await _start(client, components)
    pvcs = client.resource("v1", "PersistentVolumeClaim")
    claim = await client.create(pvcs, _claim("gone"), NS)
    name = (await _provisioned(client, claim))["metadata"]["name"]
    await _bind(client, claim, name)
    # the claim and the PV carry the protection finalizers: their controllers run too
    await components.start(PVCProtectionController(client, components.factory),
                           PVProtectionController(client, components.factory))
    await client.delete(pvcs, "gone", NS)

    async def deleted() -> bool:
        return await _pv(client, name) is None
    await eventually(deleted)


async def test_only_bound_claims_of_expandable_classes_may_grow(
        client: Any, components: Components) -> None:
    await _start(client, components)
    pvcs = client.resource("v1", "PersistentVolumeClaim")
    classes = client.resource("storage.k8s.io/v1", "StorageClass")
    await client.create(classes, {"metadata": {"name": "fixed"}, "provisioner": lp.PROVISIONER,
                                  "volumeBindingMode": "WaitForFirstConsumer"})
    grow = {"spec": {"resources": {"requests": {"storage": "50Mi"}}}}
    await client.create(pvcs, _claim("unbound", node=None), NS)
    try:
        await client.patch(pvcs, "unbound", grow, namespace=NS)
    except ApiError as e:
        assert e.code == 403
        assert "Only bound persistent volume claims can be expanded" in str(e)
    else:
        raise AssertionError("an unbound claim grew")
    fixed = await client.create(pvcs, _claim("fixed", storageClassName="fixed"), NS)
    await _bind(client, fixed, "some-pv")
    try:
        await client.patch(pvcs, "fixed", grow, namespace=NS)
    except ApiError as e:
        assert e.code == 403
        assert "the storageclass that provisions the pvc must support resize" in str(e)
    else:
        raise AssertionError("a claim of a class without allowVolumeExpansion grew")


async def test_simulated_cluster_binds_a_classless_claim_for_its_pod(tmp_path: Path) -> None:
    """The whole chain in one process (admission, scheduler, binder, provisioner): a
    claim with no class, used by a pod on a simulated node, is bound to a local-path PV."""
    async with Cluster(ClusterConfig(data_dir=tmp_path / "data", port=0,
                                     fake_nodes=1)) as cluster:
        client = cluster.client
        pvcs = client.resource("v1", "PersistentVolumeClaim")
        pods = client.resource("v1", "Pod")
        await eventually(lambda: cluster.factory.informer("storage.k8s.io/v1", "StorageClass")
                         .get(lp.CLASS_NAME) is not None)
        claim = await client.create(pvcs, {"metadata": {"name": "data"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}},
            NS)
        assert claim["spec"]["storageClassName"] == lp.CLASS_NAME
        await client.create(pods, {"metadata": {"name": "app"}, "spec": {
            "containers": [{"name": "app", "image": "busybox"}],
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}, NS)

        async def running() -> bool:
            pod = await client.get(pods, "app", NS)
            return (pod.get("status") or {}).get("phase") == "Running"
        await eventually(running, within=30)
        claim = await client.get(pvcs, "data", NS)
        assert claim["status"]["phase"] == "Bound"
        pv = await _pv(client, f"pvc-{claim['metadata']['uid']}")
        assert pv is not None and lp.pv_node(pv) == "fake-0"


async def test_claim_waits_for_its_node_to_offer_storage(client: Any,
                                                         components: Components) -> None:
    await _start(client, components)
    nodes = client.resource("v1", "Node")
    await client.create(nodes, {"metadata": {"name": "node-2"}})  # its agent not yet started
    claim = await client.create(client.resource("v1", "PersistentVolumeClaim"),
                                _claim("later", node="node-2"), NS)

    async def refused() -> bool:
        return any(r == "ProvisioningFailed" and "node-2 offers no local-path storage" in m
                   for _, r, m in await _events(client, "later"))
    await eventually(refused)
    await client.patch(nodes, "node-2", {"metadata": {"annotations": {
        lp.STORAGE_DIR_ANNOTATION: "/srv/storage"}}})
    await _provisioned(client, claim)


async def test_immediate_class_provisions_on_a_ready_node_without_a_pod(
        client: Any, components: Components) -> None:
    await _start(client, components)
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}
    await client.create(client.resource("v1", "Node"), {
        "metadata": {"name": "node-3", "annotations": {lp.STORAGE_DIR_ANNOTATION: "/srv/s"}},
        "status": ready})
    await client.create(client.resource("storage.k8s.io/v1", "StorageClass"), {
        "metadata": {"name": "now"}, "provisioner": lp.PROVISIONER,
        "volumeBindingMode": "Immediate"})
    claim = await client.create(client.resource("v1", "PersistentVolumeClaim"),
                                _claim("now", node=None, storageClassName="now"), NS)
    pv = await _provisioned(client, claim)
    assert lp.pv_node(pv) == "node-3"  # node-1 is not Ready
    assert pv["spec"]["local"]["path"].startswith("/srv/s/")
