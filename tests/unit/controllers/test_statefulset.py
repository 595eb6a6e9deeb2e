"""The StatefulSet's pure parts: identities and claims, what a round does, the status,
and the ControllerRevision history helpers."""

from __future__ import annotations

from typing import Any

import pytest

from pinnace.api.types import Obj
from pinnace.controllers import _history as history
from pinnace.controllers.statefulset_plan import calculate_status, plan
from pinnace.controllers.statefulset_pods import (
    claim_owner_refs,
    claims_for,
    is_stale,
    missing_identity,
    new_pod,
    uses_update_revision,
)
from tests.unit.controllers.objects import pod

REV1, REV2 = "web-rev1", "web-rev2"


def sts(replicas: int = 3, **spec: Any) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "namespace": "default", "uid": "set-uid",
                         "generation": 4},
            "spec": {"replicas": replicas, "serviceName": "nginx",
                     "selector": {"matchLabels": {"app": "web"}},
                     "podManagementPolicy": "OrderedReady",
                     "updateStrategy": {"type": "RollingUpdate",
                                        "rollingUpdate": {"partition": 0}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                         "containers": [{"name": "c", "image": "nginx"}],
                         "volumes": [{"name": "data", "emptyDir": {}},
                                     {"name": "cfg", "configMap": {"name": "x"}}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data",
                                                            "labels": {"tier": "db"}},
                                               "spec": {"accessModes": ["ReadWriteOnce"]}}],
                     **spec}}


def member(ordinal: int, revision: str = REV1, **kw: Any) -> Obj:
    return pod(f"web-{ordinal}", labels={"app": "web", "controller-revision-hash": revision},
               **kw)


def names(pods: list[Obj]) -> list[str]:
    return [p["metadata"]["name"] for p in pods]


# -- identities and claims ------------------------------------------------------------------

def test_new_pod_has_its_identity_and_its_claim_instead_of_the_template_volume() -> None:
    p = new_pod(sts(), sts()["spec"]["template"], 2, REV1)
    assert p["metadata"]["name"] == "web-2"
    assert "generateName" not in p["metadata"]
    assert p["metadata"]["labels"] == {
        "app": "web", "statefulset.kubernetes.io/pod-name": "web-2",
        "apps.kubernetes.io/pod-index": "2", "controller-revision-hash": REV1}
    assert (p["spec"]["hostname"], p["spec"]["subdomain"]) == ("web-2", "nginx")
    assert p["spec"]["volumes"] == [
        {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-2"}},
        {"name": "cfg", "configMap": {"name": "x"}}]
    ref = p["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["uid"], ref["controller"]) == ("StatefulSet", "set-uid", True)


def test_claims_are_named_per_ordinal_and_carry_the_selector_labels() -> None:
    claim = claims_for(sts(), 1)["data"]
    assert claim["metadata"]["name"] == "data-web-1"
    assert claim["metadata"]["labels"] == {"tier": "db", "app": "web"}
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"]}


@pytest.mark.parametrize(("deleted", "scaled", "ordinal", "owners"), [
    ("Retain", "Retain", 5, []),
    ("Delete", "Retain", 0, ["StatefulSet"]),
    ("Delete", "Retain", 5, ["StatefulSet"]),
    ("Retain", "Delete", 0, []),
    ("Retain", "Delete", 5, ["Pod"]),
    ("Delete", "Delete", 0, ["StatefulSet"]),
    ("Delete", "Delete", 5, ["Pod"]),
])
def test_claim_owners_follow_the_retention_policy(deleted: str, scaled: str, ordinal: int,
                                                  owners: list[str]) -> None:
    s = sts(persistentVolumeClaimRetentionPolicy={"whenDeleted": deleted, "whenScaled": scaled})
    claim = claims_for(s, ordinal)["data"]
    # a stale reference to an earlier set of that name is rewritten, not kept
    claim["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                             "name": "web", "uid": "old", "controller": True}]
    refs = claim_owner_refs(claim, s, member(ordinal), ordinal)
    assert [r["kind"] for r in refs] == owners
    assert all(r["controller"] for r in refs)


def test_a_claim_someone_else_controls_gets_none_of_our_references() -> None:
    s = sts(persistentVolumeClaimRetentionPolicy={"whenDeleted": "Delete",
                                                  "whenScaled": "Retain"})
    claim = claims_for(s, 0)["data"]
    other = {"apiVersion": "v1", "kind": "Other", "name": "x", "uid": "o", "controller": True}
    claim["metadata"]["ownerReferences"] = [other]
    assert claim_owner_refs(claim, s, member(0), 0) == [other]


def test_partition_keeps_lower_ordinals_on_the_current_revision() -> None:
    s = sts(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 2}})
    assert [uses_update_revision(s, o) for o in range(4)] == [False, False, True, True]
    assert uses_update_revision(sts(updateStrategy={"type": "OnDelete"}), 0)


# -- a round ------------------------------------------------------------------------------

def test_ordered_ready_creates_the_next_pod_only_after_the_previous_is_ready() -> None:
    assert plan(sts(), [], REV1).create == [0]
    assert plan(sts(), [member(0, ready=False)], REV1).create == []
    assert plan(sts(), [member(0, phase="Pending", ready=False)], REV1).create == []
    assert plan(sts(), [member(0)], REV1).create == [1]
    # a gap is filled first, and nothing after it happens in that round
    assert plan(sts(), [member(0), member(2)], REV1).create == [1]


def test_min_ready_seconds_waits_for_availability() -> None:
    young = member(0, ready_since="2999-01-01T00:00:00Z")
    todo = plan(sts(minReadySeconds=30), [young], REV1)
    assert (todo.create, todo.wait_for_availability) == ([], True)


def test_parallel_creates_every_missing_pod() -> None:
    assert plan(sts(podManagementPolicy="Parallel"), [member(1, ready=False)],
                REV1).create == [0, 2]


def test_failed_pods_are_deleted_to_be_recreated() -> None:
    todo = plan(sts(), [member(0), member(1, phase="Failed")], REV1)
    assert names(todo.delete) == ["web-1"]


def test_ordered_scale_down_deletes_the_highest_one_at_a_time() -> None:
    pods = [member(i) for i in range(4)]
    assert names(plan(sts(replicas=1), pods, REV1).delete) == ["web-3"]
    # while web-3 terminates, web-2 waits
    pods[3] = member(3, deleting=True)
    assert plan(sts(replicas=1), pods, REV1).delete == []
    # an unhealthy replica blocks scaling down
    assert plan(sts(replicas=1), [member(0, ready=False), member(1)], REV1).delete == []


def test_parallel_scale_down_deletes_all_condemned() -> None:
    pods = [member(i) for i in range(4)]
    todo = plan(sts(replicas=1, podManagementPolicy="Parallel"), pods, REV1)
    assert names(todo.delete) == ["web-3", "web-2", "web-1"]


def test_rolling_update_goes_down_from_the_highest_ordinal_to_the_partition() -> None:
    pods = [member(i) for i in range(3)]
    assert names(plan(sts(), pods, REV2).delete) == ["web-2"]
    pods[2] = member(2, REV2, ready=False)  # recreated, not ready yet: wait
    assert plan(sts(), pods, REV2).delete == []
    pods[2] = member(2, REV2)
    assert names(plan(sts(), pods, REV2).delete) == ["web-1"]
    pods[1] = member(1, REV2)
    partitioned = sts(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 1}})
    assert plan(partitioned, pods, REV2).delete == []
    assert plan(sts(updateStrategy={"type": "OnDelete"}), [member(0)], REV2).delete == []


# -- status -------------------------------------------------------------------------------

def test_status_counts_and_completes_a_rolling_update() -> None:
    pods = [member(0), member(1, REV2), member(2, REV2, ready=False, phase="Pending")]
    st = calculate_status(sts(), pods, current_revision=REV1, update_revision=REV2,
                          collision_count=0)
    assert st == {"observedGeneration": 4, "replicas": 3, "readyReplicas": 2,
                  "currentReplicas": 1, "updatedReplicas": 2, "availableReplicas": 2,
                  "currentRevision": REV1, "updateRevision": REV2, "collisionCount": 0}
    done = calculate_status(sts(), [member(i, REV2) for i in range(3)],
                            current_revision=REV1, update_revision=REV2, collision_count=1)
    assert (done["currentRevision"], done["currentReplicas"]) == (REV2, 3)


# -- revisions ----------------------------------------------------------------------------

def revision(name: str, n: int, image: str = "nginx") -> Obj:
    data = history.revision_data({"spec": {"containers": [{"name": "c", "image": image}]}})
    return {"metadata": {"name": name, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "data": data, "revision": n}


def test_revision_data_round_trips_the_template_and_names_by_hash() -> None:
    s = sts()
    data = history.revision_data(s["spec"]["template"])
    assert data["spec"]["template"]["$patch"] == "replace"
    cr = history.new_revision(s, data, revision=1, collision_count=0)
    assert history.template_of(cr) == s["spec"]["template"]
    assert cr["metadata"]["labels"]["app"] == "web"
    assert cr["metadata"]["name"] == "web-" + cr["metadata"]["labels"][
        "controller-revision-hash"]
    other = history.new_revision(s, data, revision=1, collision_count=1)
    assert other["metadata"]["name"] != cr["metadata"]["name"]


def test_history_keeps_the_limit_and_everything_in_use() -> None:
    revs = [revision(f"r{i}", i) for i in range(1, 6)]
    assert names(history.revisions_to_delete(revs, {"r5"}, 2)) == ["r1", "r2"]
    # the limit counts the revisions nothing uses, as Kubernetes counts them
    assert names(history.revisions_to_delete(revs, {"r1", "r5"}, 2)) == ["r2"]
    assert history.revisions_to_delete(revs, set(), 10) == []
    assert history.next_number(revs) == 6


def test_max_unavailable_deletes_that_many_counting_the_pods_already_down() -> None:
    two = sts(replicas=4, podManagementPolicy="Parallel",
              updateStrategy={"type": "RollingUpdate",
                              "rollingUpdate": {"partition": 0, "maxUnavailable": 2}})
    pods = [member(i) for i in range(4)]
    assert names(plan(two, pods, REV2).delete) == ["web-3", "web-2"]
    pods[3] = member(3, REV2, ready=False)  # one down already: one more may go
    assert names(plan(two, pods, REV2).delete) == ["web-2"]
    pods[0] = member(0, ready=False)  # an old pod down anyway is replaced at once
    assert names(plan(two, pods, REV2).delete) == ["web-0"]
    half = sts(replicas=4, updateStrategy={"type": "RollingUpdate", "rollingUpdate": {
        "maxUnavailable": "50%"}})
    assert names(plan(half, [member(i) for i in range(4)], REV2).delete) == ["web-3", "web-2"]


def test_a_claim_owned_by_a_gone_pod_of_that_name_is_stale() -> None:
    claim = claims_for(sts(), 1)["data"]
    assert not is_stale(claim, "web-1")
    claim["metadata"]["ownerReferences"] = [{"kind": "Pod", "name": "web-1", "uid": "old"}]
    assert is_stale(claim, "web-1")


def test_ordinals_start_moves_names_and_claims() -> None:
    s = sts(replicas=2, ordinals={"start": 5})
    assert plan(s, [], REV1).create == [5]
    assert names(plan(s, [member(5), member(6), member(7)], REV1).delete) == ["web-7"]
    assert claims_for(s, 5)["data"]["metadata"]["name"] == "data-web-5"


def test_missing_identity_names_the_labels_to_put_back() -> None:
    assert missing_identity(new_pod(sts(), sts()["spec"]["template"], 1, REV1)) == {}
    assert missing_identity(member(2)) == {"statefulset.kubernetes.io/pod-name": "web-2",
                                           "apps.kubernetes.io/pod-index": "2"}
