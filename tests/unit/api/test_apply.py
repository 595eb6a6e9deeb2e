"""Server-side apply and managedFields, as `kubectl apply --server-side` users see them."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pinnace.api.apply import apply, fields_of, update_managed_fields
from pinnace.api.errors import ApiError

DEPLOYMENT = "io.k8s.api.apps.v1.Deployment"
CM = "io.k8s.api.core.v1.ConfigMap"


def config(**labels: str) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": labels or {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.20",
                                         "ports": [{"containerPort": 80}]}]},
            },
        },
    }


def do_apply(live, cfg, manager="kubectl", force=False, now="2024-01-01T00:00:00Z"):
    return apply(live, cfg, manager=manager, force=force, schema_ref=DEPLOYMENT, now=now,
                 api_version="apps/v1")


def entry(obj: dict, manager: str) -> dict:
    [found] = [e for e in obj["metadata"]["managedFields"] if e["manager"] == manager]
    return found


def containers(obj: dict) -> list[dict]:
    return obj["spec"]["template"]["spec"]["containers"]


def test_create_via_apply_records_fields_v1():
    obj = do_apply(None, config(app="web", tier="fe"))
    assert obj["spec"]["replicas"] == 2
    e = entry(obj, "kubectl")
    assert e["operation"] == "Apply" and e["apiVersion"] == "apps/v1"
    assert e["time"] == "2024-01-01T00:00:00Z" and e["fieldsType"] == "FieldsV1"
    assert e["fieldsV1"] == {
        "f:metadata": {"f:labels": {"f:app": {}, "f:tier": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},  # LabelSelector is an atomic map
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {'k:{"name":"nginx"}': {
                    ".": {}, "f:image": {}, "f:name": {},
                    "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {
                        ".": {}, "f:containerPort": {}}},
                }}},
            },
        },
    }


def test_reapply_same_config_is_a_noop_and_keeps_time():
    first = do_apply(None, config())
    again = do_apply(first, config(), now="2024-02-02T00:00:00Z")
    assert again == first


def test_reapply_without_a_label_removes_it():
    first = do_apply(None, config(app="web", tier="fe"))
    second = do_apply(first, config(app="web"), now="2024-02-02T00:00:00Z")
    assert second["metadata"]["labels"] == {"app": "web"}
    assert entry(second, "kubectl")["fieldsV1"]["f:metadata"] == {"f:labels": {"f:app": {}}}
    assert entry(second, "kubectl")["time"] == "2024-02-02T00:00:00Z"


def test_field_owned_by_another_manager_is_kept_when_dropped_from_config():
    first = do_apply(None, config(app="web", tier="fe"))
    edited = copy.deepcopy(first)
    edited["metadata"]["labels"]["tier"] = "backend"
    updated = update_managed_fields(first, edited, manager="kubectl-edit", operation="Update",
                                    now="t2", api_version="apps/v1")
    second = do_apply(updated, config(app="web"))
    assert second["metadata"]["labels"] == {"app": "web", "tier": "backend"}


def scaled(obj: dict, replicas: int) -> dict:
    new = copy.deepcopy(obj)
    new["spec"]["replicas"] = replicas
    return update_managed_fields(obj, new, manager="kubectl-client-side-apply",
                                 operation="Update", now="2024-01-02T00:00:00Z",
                                 api_version="apps/v1")


def test_update_takes_ownership_of_changed_fields():
    obj = scaled(do_apply(None, config()), 5)
    assert entry(obj, "kubectl-client-side-apply")["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in entry(obj, "kubectl")["fieldsV1"]["f:spec"]
    # Apply entries sort before Update entries
    assert [e["operation"] for e in obj["metadata"]["managedFields"]] == ["Apply", "Update"]


def test_conflict_without_force_is_409_with_causes():
    obj = scaled(do_apply(None, config()), 5)
    cfg = config()
    cfg["spec"]["replicas"] = 3
    with pytest.raises(ApiError) as err:
        do_apply(obj, cfg)
    status = err.value.status()
    assert status["code"] == 409 and status["reason"] == "Conflict"
    assert status["message"] == ('Apply failed with 1 conflict: conflict with '
                                 '"kubectl-client-side-apply" using apps/v1: .spec.replicas')
    assert status["details"]["causes"] == [{
        "reason": "FieldManagerConflict", "field": ".spec.replicas",
        "message": 'conflict with "kubectl-client-side-apply" using apps/v1'}]


def test_same_value_is_shared_not_a_conflict():
    obj = scaled(do_apply(None, config()), 5)
    cfg = config()
    cfg["spec"]["replicas"] = 5
    out = do_apply(obj, cfg)
    assert "f:replicas" in entry(out, "kubectl")["fieldsV1"]["f:spec"]
    assert "f:replicas" in entry(out, "kubectl-client-side-apply")["fieldsV1"]["f:spec"]


def test_force_moves_ownership():
    obj = scaled(do_apply(None, config()), 5)
    cfg = config()
    cfg["spec"]["replicas"] = 3
    out = do_apply(obj, cfg, force=True)
    assert out["spec"]["replicas"] == 3
    assert "f:replicas" in entry(out, "kubectl")["fieldsV1"]["f:spec"]
    # the other manager owned nothing else, so its entry is gone
    assert [e["manager"] for e in out["metadata"]["managedFields"]] == ["kubectl"]


def test_two_appliers_share_containers_list_map():
    obj = do_apply(None, config())
    other = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
             "spec": {"template": {"spec": {"containers": [
                 {"name": "sidecar", "image": "busybox"}]}}}}
    obj = do_apply(obj, other, manager="sidecar-injector")
    assert [c["name"] for c in containers(obj)] == ["nginx", "sidecar"]
    assert entry(obj, "sidecar-injector")["fieldsV1"] == {"f:spec": {"f:template": {"f:spec": {
        "f:containers": {'k:{"name":"sidecar"}': {".": {}, "f:image": {}, "f:name": {}}}}}}}
    # the first applier re-applies its own config: the sidecar stays
    obj = do_apply(obj, config())
    assert [c["name"] for c in containers(obj)] == ["nginx", "sidecar"]
    # the injector withdraws its container: it goes, nginx stays
    withdrawn = copy.deepcopy(other)
    withdrawn["spec"]["template"]["spec"]["containers"] = []
    obj = do_apply(obj, withdrawn, manager="sidecar-injector")
    assert [c["name"] for c in containers(obj)] == ["nginx"]


def test_removed_container_is_pruned_and_defaulted_port_protocol_matches():
    cfg = config()
    containers(cfg).append({"name": "extra", "image": "redis"})
    obj = do_apply(None, cfg)
    # the server defaults protocol; the next apply must see the same port item
    containers(obj)[0]["ports"][0]["protocol"] = "TCP"
    obj = do_apply(obj, config())
    assert containers(obj) == [{"name": "nginx", "image": "nginx:1.20",
                                "ports": [{"containerPort": 80, "protocol": "TCP"}]}]


def test_changing_an_applied_value_by_another_applier_conflicts_on_container_image():
    obj = do_apply(None, config())
    rival = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
             "spec": {"template": {"spec": {"containers": [
                 {"name": "nginx", "image": "nginx:1.21"}]}}}}
    with pytest.raises(ApiError) as err:
        do_apply(obj, rival, manager="rival")
    assert err.value.causes[0].field == '.spec.template.spec.containers[name="nginx"].image'
    assert err.value.causes[0].message == 'conflict with "kubectl"'


def test_create_update_owns_everything_but_system_metadata():
    obj = {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "c", "namespace": "d", "uid": "u", "resourceVersion": "1",
                        "creationTimestamp": "2024-01-01T00:00:00Z", "labels": {"a": "b"}},
           "data": {"k": "v"}}
    out = update_managed_fields(None, obj, manager="kubectl-create", operation="Update",
                                now="t1", api_version="v1")
    assert out["metadata"]["managedFields"] == [{
        "manager": "kubectl-create", "operation": "Update", "apiVersion": "v1", "time": "t1",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:data": {"f:k": {}}, "f:metadata": {"f:labels": {"f:a": {}}}}}]
    assert fields_of(obj, CM) == out["metadata"]["managedFields"][0]["fieldsV1"]
    assert "managedFields" not in obj["metadata"]  # input untouched


def test_update_with_no_change_keeps_entries_and_removed_fields_leave_owners():
    obj = update_managed_fields(None, {"apiVersion": "v1", "kind": "ConfigMap",
                                       "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}},
                                manager="m1", operation="Update", now="t1", api_version="v1")
    same = update_managed_fields(obj, copy.deepcopy(obj), manager="m2", operation="Update",
                                 now="t2", api_version="v1")
    assert same["metadata"]["managedFields"] == obj["metadata"]["managedFields"]
    new = copy.deepcopy(obj)
    del new["data"]["a"]
    out = update_managed_fields(obj, new, manager="m2", operation="Update", now="t3",
                                api_version="v1")
    assert out["metadata"]["managedFields"][0]["fieldsV1"] == {"f:data": {"f:b": {}}}
    assert len(out["metadata"]["managedFields"]) == 1


def test_apply_on_untracked_object_attributes_fields_to_before_first_apply():
    live = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 7}}
    cfg = config()
    with pytest.raises(ApiError) as err:
        do_apply(live, cfg)
    assert err.value.code == 409
    assert "before-first-apply" in err.value.message


def test_apply_rejects_managed_fields_in_config_and_non_objects():
    cfg = config()
    cfg["metadata"]["managedFields"] = []
    for bad in (cfg, ["not", "an", "object"]):
        with pytest.raises(ApiError) as err:
            do_apply(None, bad)
        assert err.value.code == 400


_keys = st.sampled_from(["spec", "metadata", "template", "containers", "name", "image",
                         "labels", "ports", "containerPort", "finalizers", "replicas", "x"])
_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=3),
                       lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(_keys, inner, max_size=4), max_leaves=20)
_objects = st.dictionaries(_keys, _values, max_size=4)


@settings(max_examples=200, deadline=None)
@given(live=st.none() | _objects, cfg=_objects, edit=_objects, force=st.booleans())
def test_apply_and_update_raise_only_api_errors(live, cfg, edit, force):
    try:
        obj = do_apply(live, cfg, manager="a", force=force)
        obj = update_managed_fields(obj, edit, manager="b", operation="Update", now="t",
                                    api_version="apps/v1", schema_ref=DEPLOYMENT)
        do_apply(obj, cfg, manager="a", force=force)
    except ApiError:
        pass
