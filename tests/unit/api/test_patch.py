"""JSON patch, merge patch and strategic merge patch as a client sees them."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pinnace.api.errors import ApiError
from pinnace.api.patch import json_patch, merge_patch, strategic_merge_patch

DEPLOYMENT = "io.k8s.api.apps.v1.Deployment"
POD = "io.k8s.api.core.v1.Pod"


def deployment() -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "annotations": {"a": "1"}, "finalizers": ["x", "y"]},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
            "template": {"spec": {"containers": [
                {"name": "nginx", "image": "nginx:1.19",
                 "ports": [{"containerPort": 80}], "env": [{"name": "A", "value": "1"}]},
                {"name": "sidecar", "image": "busybox"},
            ]}},
        },
    }


def containers(obj: dict) -> list[dict]:
    return obj["spec"]["template"]["spec"]["containers"]


# ---------------------------------------------------------------- strategic merge patch


def test_kubectl_client_side_apply_patch_with_set_element_order():
    live = deployment()
    live["spec"]["template"]["spec"]["containers"] = [containers(live)[0]]
    snapshot = copy.deepcopy(live)
    patch = {"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration":
                                          "{}"}},
             "spec": {"template": {"spec": {
                 "$setElementOrder/containers": [{"name": "nginx"}],
                 "containers": [{"image": "nginx:1.20", "name": "nginx"}]}}}}
    out = strategic_merge_patch(live, patch, DEPLOYMENT)
    assert containers(out) == [{"name": "nginx", "image": "nginx:1.20",
                                "ports": [{"containerPort": 80}],
                                "env": [{"name": "A", "value": "1"}]}]
    assert out["metadata"]["annotations"] == {
        "a": "1", "kubectl.kubernetes.io/last-applied-configuration": "{}"}
    assert live == snapshot  # input untouched


def test_set_element_order_reorders_merged_list():
    patch = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "nginx"}]}}}}
    out = strategic_merge_patch(deployment(), patch, DEPLOYMENT)
    assert [c["name"] for c in containers(out)] == ["sidecar", "nginx"]


def test_containers_merged_by_name_and_new_ones_first():
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "image": "busybox:2"}, {"name": "extra", "image": "redis"}]}}}}
    out = strategic_merge_patch(deployment(), patch, DEPLOYMENT)
    assert [c["name"] for c in containers(out)] == ["nginx", "sidecar", "extra"]
    by_name = {c["name"]: c for c in containers(out)}
    assert by_name["sidecar"]["image"] == "busybox:2"
    assert by_name["nginx"]["image"] == "nginx:1.19"
    assert by_name["extra"] == {"name": "extra", "image": "redis"}


def test_new_container_without_order_goes_first_like_kubernetes():
    # the "kubectl patch" task page shows the added container listed first
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "extra", "image": "r"}]}}}}
    out = strategic_merge_patch(deployment(), patch, DEPLOYMENT)
    assert [c["name"] for c in containers(out)] == ["extra", "nginx", "sidecar"]


def test_nested_lists_merge_by_their_own_keys():
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "nginx", "env": [{"name": "B", "value": "2"}],
         "ports": [{"containerPort": 443}]}]}}}}
    out = strategic_merge_patch(deployment(), patch, DEPLOYMENT)
    nginx = containers(out)[0]
    assert {e["name"] for e in nginx["env"]} == {"A", "B"}
    assert {p["containerPort"] for p in nginx["ports"]} == {80, 443}


def test_patch_delete_removes_a_container():
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "$patch": "delete"}]}}}}
    out = strategic_merge_patch(deployment(), patch, DEPLOYMENT)
    assert [c["name"] for c in containers(out)] == ["nginx"]


def test_patch_replace_element_replaces_whole_list():
    patch = {"spec": {"template": {"spec": {"containers": [
        {"$patch": "replace"}, {"name": "only", "image": "x"}]}}}}
    out = strategic_merge_patch(deployment(), patch, DEPLOYMENT)
    assert containers(out) == [{"name": "only", "image": "x"}]


def test_patch_replace_and_delete_on_maps():
    out = strategic_merge_patch(deployment(), {"spec": {"strategy": {
        "$patch": "replace", "type": "Recreate"}}}, DEPLOYMENT)
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    out = strategic_merge_patch(deployment(), {"metadata": {"annotations": {
        "$patch": "delete"}}}, DEPLOYMENT)
    assert out["metadata"]["annotations"] == {}


def test_retain_keys_switching_to_recreate_drops_rolling_update():
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate",
                                   "rollingUpdate": None}}}
    out = strategic_merge_patch(deployment(), patch, DEPLOYMENT)
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    # even without the explicit null, keys outside $retainKeys go
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    assert strategic_merge_patch(deployment(), patch, DEPLOYMENT)["spec"]["strategy"] == {
        "type": "Recreate"}


def test_null_deletes_and_non_merge_lists_are_replaced():
    live = deployment()
    containers(live)[0]["args"] = ["a", "b"]
    patch = {"spec": {"replicas": None, "template": {"spec": {"containers": [
        {"name": "nginx", "args": ["c"]}]}}}}
    out = strategic_merge_patch(live, patch, DEPLOYMENT)
    assert "replicas" not in out["spec"]
    assert containers(out)[0]["args"] == ["c"]  # atomic list


def test_primitive_merge_list_and_delete_from_primitive_list():
    out = strategic_merge_patch(deployment(), {"metadata": {"finalizers": ["z", "x"]}},
                                DEPLOYMENT)
    assert sorted(out["metadata"]["finalizers"]) == ["x", "y", "z"]
    assert len(out["metadata"]["finalizers"]) == 3
    out = strategic_merge_patch(deployment(), {"metadata": {
        "$deleteFromPrimitiveList/finalizers": ["x"]}}, DEPLOYMENT)
    assert out["metadata"]["finalizers"] == ["y"]


def test_unknown_schema_behaves_like_merge_patch():
    doc = {"spec": {"list": [1, 2], "m": {"a": 1}}}
    out = strategic_merge_patch(doc, {"spec": {"list": [3], "m": {"b": 2, "a": None}}},
                                "io.example.Nothing")
    assert out == {"spec": {"list": [3], "m": {"b": 2}}}


@pytest.mark.parametrize("patch", [
    {"spec": {"strategy": {"$patch": "bogus"}}},
    {"spec": {"strategy": {"$retainKeys": "type"}}},
    {"spec": {"template": {"spec": {"containers": [{"$patch": "delete"}]}}}},
    {"spec": {"template": {"spec": {"containers": [{"image": "no-name"}]}}}},
    {"spec": {"template": {"spec": {"$setElementOrder/containers": "x"}}}},
    {"metadata": {"$deleteFromPrimitiveList/finalizers": "x"}},
])
def test_bad_directives_are_400(patch):
    with pytest.raises(ApiError) as err:
        strategic_merge_patch(deployment(), patch, DEPLOYMENT)
    assert err.value.code == 400


def test_pod_volumes_and_mounts_merge():
    pod = {"spec": {"volumes": [{"name": "a", "emptyDir": {}}],
                    "containers": [{"name": "c", "volumeMounts": [{"name": "a",
                                                                    "mountPath": "/a"}]}]}}
    patch = {"spec": {"volumes": [{"name": "b", "emptyDir": {}}],
                      "containers": [{"name": "c", "volumeMounts": [
                          {"name": "a", "mountPath": "/a", "readOnly": True}]}]}}
    out = strategic_merge_patch(pod, patch, POD)
    assert {v["name"] for v in out["spec"]["volumes"]} == {"a", "b"}
    assert out["spec"]["containers"][0]["volumeMounts"] == [
        {"name": "a", "mountPath": "/a", "readOnly": True}]


# ---------------------------------------------------------------- JSON patch


def test_json_patch_operations():
    doc = {"a": {"b": [1, 2]}, "c~d": 1, "e/f": 2}
    out = json_patch(doc, [
        {"op": "add", "path": "/a/b/-", "value": 3},
        {"op": "add", "path": "/a/b/0", "value": 0},
        {"op": "replace", "path": "/c~0d", "value": 5},
        {"op": "remove", "path": "/e~1f"},
        {"op": "copy", "from": "/a/b", "path": "/copy"},
        {"op": "move", "from": "/copy", "path": "/moved"},
        {"op": "test", "path": "/moved/3", "value": 3},
    ])
    assert out == {"a": {"b": [0, 1, 2, 3]}, "c~d": 5, "moved": [0, 1, 2, 3]}
    assert doc == {"a": {"b": [1, 2]}, "c~d": 1, "e/f": 2}


@pytest.mark.parametrize("ops", [
    [{"op": "replace", "path": "/missing", "value": 1}],
    [{"op": "remove", "path": "/a/9"}],
    [{"op": "add", "path": "/x/y", "value": 1}],
    [{"op": "test", "path": "/a", "value": 2}],
    [{"op": "test", "path": "/a", "value": True}],
    [{"op": "move", "from": "/nothing", "path": "/a"}],
])
def test_json_patch_that_cannot_apply_is_422(ops):
    with pytest.raises(ApiError) as err:
        json_patch({"a": 1}, ops)
    assert err.value.code == 422
    assert err.value.reason == "Invalid"
    assert err.value.causes and ops[0]["op"] in err.value.causes[0].message + "testing"


@pytest.mark.parametrize("ops", [
    {"op": "add"}, [{"op": "frobnicate", "path": "/a"}], [{"path": "/a"}],
    [{"op": "add", "path": "/a"}], [{"op": "move", "path": "/a"}], ["x"],
    [{"op": "add", "path": "a", "value": 1}], [{"op": "add", "path": "/~2", "value": 1}],
])
def test_malformed_json_patch_is_400(ops):
    with pytest.raises(ApiError) as err:
        json_patch({"a": 1}, ops)
    assert err.value.code == 400


# ---------------------------------------------------------------- merge patch


def test_merge_patch_nulls_delete_and_lists_replace():
    doc = {"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"ports": [1, 2]}}
    out = merge_patch(doc, {"metadata": {"labels": {"a": None, "c": "3"}}, "spec": {"ports": [3]}})
    assert out == {"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"ports": [3]}}
    assert doc["metadata"]["labels"] == {"a": "1", "b": "2"}
    assert merge_patch({"a": 1}, "x") == "x"
    assert merge_patch("x", {"a": {"b": None}}) == {"a": {}}


# ---------------------------------------------------------------- robustness

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
    | st.sampled_from(["$patch", "delete", "replace", "merge", "/", "-", "0", "name"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["spec", "metadata", "template", "containers", "name", "image",
                         "$patch", "$retainKeys", "$setElementOrder/containers",
                         "$deleteFromPrimitiveList/finalizers", "finalizers", "op", "path",
                         "value", "from", "labels", "strategy", "x"]) | st.text(max_size=5),
        inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(doc=json_values, patch=json_values)
def test_patch_functions_raise_only_api_errors(doc, patch):
    before_doc, before_patch = copy.deepcopy(doc), copy.deepcopy(patch)
    for fn in (lambda: json_patch(doc, patch), lambda: merge_patch(doc, patch),
               lambda: strategic_merge_patch(doc, patch, DEPLOYMENT),
               lambda: strategic_merge_patch(doc, patch, POD)):
        try:
            fn()
        except ApiError:
            pass
    assert doc == before_doc and patch == before_patch


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(st.fixed_dictionaries(
    {"op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test"]),
     "path": st.sampled_from(["", "/a", "/a/0", "/a/-", "/b/c", "/a/01", "/~1"]),
     "from": st.sampled_from(["", "/a", "/a/0", "/b"]),
     "value": json_values}), max_size=4), doc=json_values)
def test_json_patch_raises_only_api_errors(ops, doc):
    try:
        json_patch(doc, ops)
    except ApiError:
        pass


def test_absurdly_deep_documents_are_400():
    deep: dict = {}
    for _ in range(5000):
        deep = {"a": deep}
    for fn in (lambda: merge_patch({}, deep), lambda: strategic_merge_patch({}, deep, POD)):
        with pytest.raises(ApiError) as err:
            fn()
        assert err.value.code == 400
