"""Decoding checks (400) and semantic validation (422), as a kubectl user sees them."""

from __future__ import annotations

import copy
import glob
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pinnace.api import schema
from pinnace.api.defaults import apply_defaults, initial_status, job_selector_defaults
from pinnace.api.errors import ApiError
from pinnace.api.kinds import REGISTRY
from pinnace.api.validation import check_structure, quantity_value, validate

POD_REF = "io.k8s.api.core.v1.Pod"


def rt(kind: str, group: str = ""):
    for t in REGISTRY:
        if t.kind == kind and t.group == group:
            return t
    raise KeyError(kind)


def pod() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.19"}]}}


def deployment() -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "app", "image": "nginx"}]}}}}


def job() -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default", "uid": "u-1"},
            "spec": {"template": {"spec": {"containers": [{"name": "pi", "image": "perl"}],
                                           "restartPolicy": "Never"}}}}


def service() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}


def pv() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv1"},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "hostPath": {"path": "/data"}}}


def pvc() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "c1", "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}


def secret() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "namespace": "default"}, "data": {"k": "dmFsdWU="}}


def configmap() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cm", "namespace": "default"}, "data": {"k": "v"}}


BUILDERS = {"Pod": pod, "Deployment": deployment, "Job": job, "Service": service,
            "PersistentVolume": pv, "PersistentVolumeClaim": pvc, "Secret": secret,
            "ConfigMap": configmap}
GROUPS = {"Deployment": "apps", "Job": "batch"}


def prepared(kind: str, edit=None) -> tuple[Any, dict[str, Any]]:
    t = rt(kind, GROUPS.get(kind, ""))
    obj = BUILDERS[kind]()
    if edit:
        edit(obj)
    apply_defaults(t, obj)
    if kind == "Job":
        job_selector_defaults(obj)
    return t, obj


def invalid_fields(t, obj, old=None) -> list[str]:
    with pytest.raises(ApiError) as info:
        validate(t, obj, old)
    err = info.value
    assert err.code == 422 and err.reason == "Invalid"
    assert err.status()["details"]["causes"]
    return [c.field for c in err.causes]


# --- the seed manifests -----------------------------------------------------------------

def _seed_docs():
    for path in sorted(glob.glob("/work/shared/manifests/*.yaml")):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    yield pytest.param(doc, id=f"{path.rsplit('/', 1)[-1]}:{doc['kind']}")


@pytest.mark.parametrize("doc", list(_seed_docs()))
def test_seed_manifests_decode_default_and_validate(doc):
    t = REGISTRY.by_api_version(doc["apiVersion"], doc["kind"])
    out, warnings = check_structure(doc, t.schema_ref, field_validation="Strict")
    assert warnings == []
    assert out == doc  # nothing pruned, nothing changed
    if t.namespaced:
        out["metadata"]["namespace"] = "default"
    out["metadata"]["uid"] = "6f3c0a4e-0000-4000-8000-000000000001"
    apply_defaults(t, out)
    if t.kind == "Job":
        job_selector_defaults(out)
    initial_status(t, out)
    validate(t, out)
    again = copy.deepcopy(out)
    apply_defaults(t, again)
    assert again == out  # defaulting is idempotent (it runs on every update)
    validate(t, out, old=copy.deepcopy(out))  # a no-op update is fine


# --- typed decoding ---------------------------------------------------------------------

def decode_error(obj, ref=POD_REF) -> ApiError:
    with pytest.raises(ApiError) as info:
        check_structure(obj, ref, field_validation="Strict")
    assert info.value.code == 400 and info.value.reason == "BadRequest"
    return info.value


def test_wrong_type_is_a_bad_request_naming_the_field():
    obj = pod()
    obj["spec"]["containers"] = "nginx"
    err = decode_error(obj)
    assert err.message == ('Pod in version "v1" cannot be handled as a Pod: json: cannot '
                           "unmarshal string into Go struct field PodSpec.spec.containers of "
                           "type []v1.Container")
    assert [c.field for c in err.causes] == ["spec.containers"]


@pytest.mark.parametrize(("edit", "field"), [
    (lambda o: o["spec"]["containers"][0].__setitem__("image", 5), "spec.containers[0].image"),
    (lambda o: o["spec"].__setitem__("terminationGracePeriodSeconds", 1.5),
     "spec.terminationGracePeriodSeconds"),
    (lambda o: o["spec"].__setitem__("terminationGracePeriodSeconds", "30"),
     "spec.terminationGracePeriodSeconds"),
    (lambda o: o["spec"].__setitem__("priority", 2**31), "spec.priority"),
    (lambda o: o["spec"].__setitem__("hostNetwork", "true"), "spec.hostNetwork"),
    (lambda o: o["spec"]["containers"][0].__setitem__("ports", [{"containerPort": True}]),
     "spec.containers[0].ports[0].containerPort"),
    (lambda o: o["metadata"].__setitem__("labels", {"app": 1}), "metadata.labels[app]"),
    (lambda o: o["metadata"].__setitem__("labels", ["a"]), "metadata.labels"),
    (lambda o: o["metadata"].__setitem__("creationTimestamp", "yesterday"),
     "metadata.creationTimestamp"),
    (lambda o: o["spec"]["containers"][0].__setitem__(
        "resources", {"limits": {"cpu": "lots"}}), "spec.containers[0].resources.limits[cpu]"),
    (lambda o: o["spec"]["containers"][0].__setitem__(
        "livenessProbe", {"httpGet": {"port": 1.5}}),
     "spec.containers[0].livenessProbe.httpGet.port"),
])
def test_type_errors(edit, field):
    obj = pod()
    edit(obj)
    assert [c.field for c in decode_error(obj).causes] == [field]


def test_integral_float_is_accepted_as_int():
    obj = pod()
    obj["spec"]["terminationGracePeriodSeconds"] = 2.0
    out, _ = check_structure(obj, POD_REF, field_validation="Strict")
    assert out["spec"]["terminationGracePeriodSeconds"] == 2
    assert isinstance(out["spec"]["terminationGracePeriodSeconds"], int)


def test_int_or_string_and_quantity_take_both_forms():
    obj = pod()
    ctr = obj["spec"]["containers"][0]
    ctr["readinessProbe"] = {"httpGet": {"port": "http"}}
    ctr["livenessProbe"] = {"tcpSocket": {"port": 8080}}
    ctr["resources"] = {"limits": {"cpu": 1, "memory": "64Mi"}, "requests": {"cpu": 0.5}}
    out, _ = check_structure(obj, POD_REF, field_validation="Strict")
    got = out["spec"]["containers"][0]
    assert got["readinessProbe"]["httpGet"]["port"] == "http"
    assert got["livenessProbe"]["tcpSocket"]["port"] == 8080
    assert got["resources"]["limits"] == {"cpu": "1", "memory": "64Mi"}
    assert got["resources"]["requests"] == {"cpu": "500m"}  # stored in canonical form


def test_unknown_fields_strict_lists_all_of_them():
    obj = pod()
    obj["spec"]["foo"] = 1
    obj["spec"]["containers"][0]["bar"] = {"x": 1}
    err = decode_error(obj)
    assert err.message == ('Pod in version "v1" cannot be handled as a Pod: strict decoding '
                           'error: unknown field "spec.containers[0].bar", '
                           'unknown field "spec.foo"')


def test_unknown_fields_warn_and_ignore_prune():
    obj = pod()
    obj["spec"]["foo"] = 1
    obj["restartPolicy"] = "Never"
    out, warnings = check_structure(obj, POD_REF, field_validation="Warn")
    assert warnings == ['unknown field "spec.foo"', 'unknown field "restartPolicy"']  # body order
    assert "foo" not in out["spec"] and "restartPolicy" not in out
    out, warnings = check_structure(obj, POD_REF, field_validation="Ignore")
    assert warnings == [] and "foo" not in out["spec"]
    assert obj["spec"]["foo"] == 1  # the input is not mutated


def test_maps_keep_their_keys_and_nulls_mean_unset():
    obj = pod()
    obj["metadata"]["labels"] = {"any/key.x": "v", "e": None}
    obj["metadata"]["annotations"] = None
    obj["spec"]["nodeName"] = None
    out, _ = check_structure(obj, POD_REF, field_validation="Strict")
    assert out["metadata"]["labels"] == {"any/key.x": "v", "e": ""}
    assert "annotations" not in out["metadata"] and "nodeName" not in out["spec"]


def test_secret_data_must_be_base64_and_raw_extension_is_free_form():
    obj = secret()
    obj["data"]["k"] = "not base64!"
    err = decode_error(obj, "io.k8s.api.core.v1.Secret")
    assert "illegal base64 data at input byte" in err.message
    assert err.causes[0].field == "data[k]"
    rev = {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "r"},
           "revision": 1, "data": {"spec": {"anything": [1, "x"]}}}
    out, _ = check_structure(rev, "io.k8s.api.apps.v1.ControllerRevision",
                             field_validation="Strict")
    assert out == rev


def test_body_that_is_not_an_object():
    assert decode_error([1, 2]).code == 400


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=12)


def _field_names(ref: str, depth: int = 3) -> list[list[str]]:
    """Paths of real field names under a definition (a few levels deep)."""
    out: list[list[str]] = []

    def walk(node, prefix, d):
        resolved = schema.resolve(node)
        props = resolved.get("properties") if isinstance(resolved, dict) else None
        if not isinstance(props, dict) or d == 0:
            return
        for name, sub in props.items():
            out.append([*prefix, name])
            items = schema.resolve(sub) or {}
            walk(items.get("items", sub) if "array" in schema.types_of(items) else sub,
                 [*prefix, name], d - 1)

    walk({"$ref": "#/$defs/" + ref}, [], depth)
    return out


_KIND_REFS = [t.schema_ref for t in REGISTRY if t.schema_ref and schema.definition(t.schema_ref)]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_json_under_real_field_names_gives_only_api_errors(data):
    ref = data.draw(st.sampled_from(_KIND_REFS))
    obj: dict[str, Any] = {}
    for _ in range(data.draw(st.integers(1, 4))):
        path = data.draw(st.sampled_from(_field_names(ref)))
        node = obj
        for name in path[:-1]:
            nxt = node.setdefault(name, {})
            if not isinstance(nxt, dict):
                break
            node = nxt
        else:
            node[path[-1]] = data.draw(_json)
    mode = data.draw(st.sampled_from(["Strict", "Warn", "Ignore"]))
    try:
        out, _ = check_structure(obj, ref, field_validation=mode)
    except ApiError as e:
        assert e.code == 400
        return
    kind = ref.rsplit(".", 1)[-1]
    t = next(t for t in REGISTRY if t.schema_ref == ref)
    assert kind == t.kind
    try:
        apply_defaults(t, out)
        validate(t, out, old=copy.deepcopy(out))
    except ApiError as e:
        assert e.code in (400, 422)


def test_quantities_are_stored_canonical_and_checked():
    obj = pod()
    obj["spec"]["containers"][0]["resources"] = {
        "limits": {"cpu": "1000m", "memory": "1.5Gi"}, "requests": {"cpu": "0.5"}}
    out, _ = check_structure(obj, POD_REF, field_validation="Strict")
    assert out["spec"]["containers"][0]["resources"] == {
        "limits": {"cpu": "1", "memory": "1536Mi"}, "requests": {"cpu": "500m"}}
    assert quantity_value("1Gi") == 2**30 and quantity_value(2) == 2
    for bad in ("abc", "1GiB", "", "1..2", "--1", "1e99999999", True, None):
        assert quantity_value(bad) is None


# --- semantic validation (create) -------------------------------------------------------

def _set(path: str, value: Any):
    """An edit that sets a dotted path (numbers index lists); None deletes."""
    def edit(obj):
        node = obj
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        for key in keys[:-1]:
            node = node[key]
        if value is None:
            del node[keys[-1]]
        else:
            node[keys[-1]] = copy.deepcopy(value)
    return edit


_C0 = "spec.containers.0"
_T = "spec.template.spec"

CREATE_CASES = [
    ("Pod", _set("metadata.name", "Foo"), ["metadata.name"]),
    ("Pod", _set("metadata.name", ""), ["metadata.name"]),
    ("Pod", _set("metadata.labels", {"bad key!": "v"}), ["metadata.labels"]),
    ("Pod", _set("metadata.labels", {"app": "-bad-"}), ["metadata.labels"]),
    ("Pod", _set("metadata.annotations", {"a": "x" * 300_000}), ["metadata.annotations"]),
    ("Pod", _set("spec.containers", []), ["spec.containers"]),
    ("Pod", _set(f"{_C0}.name", None), ["spec.containers[0].name"]),
    ("Pod", _set(f"{_C0}.image", None), ["spec.containers[0].image"]),
    ("Pod", _set("spec.containers", [{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]),
     ["spec.containers[1].name"]),
    ("Pod", _set("spec.volumes", [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]),
     ["spec.volumes[1].name"]),
    ("Pod", _set(f"{_C0}.volumeMounts", [{"name": "data", "mountPath": "/d"}]),
     ["spec.containers[0].volumeMounts[0].name"]),
    ("Pod", _set(f"{_C0}.ports", [{"containerPort": 70000}]),
     ["spec.containers[0].ports[0].containerPort"]),
    ("Pod", _set("spec.restartPolicy", "Sometimes"), ["spec.restartPolicy"]),
    ("Pod", _set("spec.dnsPolicy", "Nope"), ["spec.dnsPolicy"]),
    ("Pod", _set("spec.dnsPolicy", "None"), ["spec.dnsConfig"]),
    ("Pod", lambda o: o["spec"].update(dnsPolicy="None", dnsConfig={"searches": ["a.b"]}),
     ["spec.dnsConfig.nameservers"]),
    ("Pod", _set("spec.dnsConfig", {"nameservers": ["1.1.1.1", "nope", "3.3.3.3", "::1"]}),
     ["spec.dnsConfig.nameservers", "spec.dnsConfig.nameservers[1]"]),
    ("Pod", _set("spec.dnsConfig", {"searches": ["ok.example.", ".", "Bad_Domain"] +
                                    [f"d{i}" for i in range(30)]}),
     ["spec.dnsConfig.searches", "spec.dnsConfig.searches[2]"]),
    ("Pod", _set("spec.dnsConfig", {"options": [{"name": "ndots", "value": "2"},
                                                {"value": "1"}]}),
     ["spec.dnsConfig.options[1]"]),
    ("Pod", _set(f"{_C0}.resources", {"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}),
     ["spec.containers[0].resources.requests"]),
    ("Pod", _set(f"{_C0}.resources", {"requests": {"memory": "lots"}}),
     ["spec.containers[0].resources.requests[memory]"]),
    ("Pod", _set("spec.volumes", [{"name": "v", "emptyDir": {}, "hostPath": {"path": "/x"}}]),
     ["spec.volumes[0].hostPath"]),
    ("Deployment", _set("spec.selector", None), ["spec.selector"]),
    ("Deployment", _set("spec.selector", {"matchLabels": {"app": "other"}}),
     ["spec.template.metadata.labels"]),
    ("Deployment", _set("spec.replicas", -1), ["spec.replicas"]),
    ("Deployment", _set(f"{_T}.restartPolicy", "Never"), ["spec.template.spec.restartPolicy"]),
    ("Deployment", _set(f"{_T}.containers.0.image", ""),
     ["spec.template.spec.containers[0].image"]),
    ("Job", _set(f"{_T}.restartPolicy", "Always"), ["spec.template.spec.restartPolicy"]),
    ("Job", _set("spec.parallelism", -1), ["spec.parallelism"]),
    ("Job", _set("spec.backoffLimit", -1), ["spec.backoffLimit"]),
    ("Job", _set("spec.completions", -2), ["spec.completions"]),
    ("Service", _set("spec.ports", []), ["spec.ports"]),
    ("Service", _set("spec.ports.0.port", 0), ["spec.ports[0].port", "spec.ports[0].targetPort"]),
    ("Service", _set("spec.type", "Magic"), ["spec.type"]),
    ("Service", _set("metadata.name", "1web"), ["metadata.name"]),
    ("Service", lambda o: o["spec"].update(type="NodePort", ports=[{"port": 80,
                                                                     "nodePort": 80}]),
     ["spec.ports[0].nodePort"]),
    ("Service", _set("spec.ports", [{"port": 80}, {"port": 81}]),
     ["spec.ports[0].name", "spec.ports[1].name"]),
    ("PersistentVolume", _set("spec.capacity", None), ["spec.capacity"]),
    ("PersistentVolume", _set("spec.accessModes", None), ["spec.accessModes"]),
    ("PersistentVolume", _set("spec.hostPath", None), ["spec"]),
    ("PersistentVolume", _set("spec.nfs", {"server": "1.2.3.4", "path": "/x"}), ["spec.nfs"]),
    ("PersistentVolumeClaim", _set("spec.accessModes", None), ["spec.accessModes"]),
    ("PersistentVolumeClaim", _set("spec.resources", {}), ["spec.resources[storage]"]),
    ("Secret", _set("data", {"bad key": "dmFsdWU="}), ["data[bad key]"]),
    ("Secret", _set("data", {"k": "%%%"}), ["data[k]"]),
    ("ConfigMap", _set("data", {"a/b": "v"}), ["data[a/b]"]),
]


@pytest.mark.parametrize(("kind", "edit", "fields"), CREATE_CASES,
                         ids=[f"{k}-{'/'.join(f)}" for k, _, f in CREATE_CASES])
def test_create_validation(kind, edit, fields):
    t, obj = prepared(kind, edit)
    assert invalid_fields(t, obj) == fields


def test_messages_use_kubernetes_wording():
    t, obj = prepared("Pod", _set("metadata.name", "Foo"))
    with pytest.raises(ApiError) as info:
        validate(t, obj)
    assert info.value.message.startswith(
        'Pod "Foo" is invalid: metadata.name: Invalid value: "Foo": a lowercase RFC 1123 '
        "subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
        "start and end with an alphanumeric character (e.g. 'example.com', regex used for "
        "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
    t, obj = prepared("Pod", _set("spec.containers", []))
    with pytest.raises(ApiError) as info:
        validate(t, obj)
    assert info.value.message == 'Pod "web" is invalid: spec.containers: Required value'
    t, obj = prepared("Deployment", _set("spec.selector", {"matchLabels": {"app": "x"}}))
    with pytest.raises(ApiError) as info:
        validate(t, obj)
    assert info.value.message == (
        'Deployment.apps "web" is invalid: spec.template.metadata.labels: Invalid value: '
        'map[string]string{"app":"web"}: `selector` does not match template `labels`')
    t, obj = prepared("Pod", _set("spec.restartPolicy", "Sometimes"))
    with pytest.raises(ApiError) as info:
        validate(t, obj)
    assert info.value.causes[0].message == ('Unsupported value: "Sometimes": supported values: '
                                            '"Always", "OnFailure", "Never"')
    assert info.value.causes[0].reason == "FieldValueNotSupported"


def test_headless_and_external_name_services_need_no_ports():
    for edit in (_set("spec.clusterIP", "None"),
                 lambda o: o["spec"].update(type="ExternalName", externalName="db.example.com")):
        t, obj = prepared("Service", lambda o, e=edit: (e(o), o["spec"].__setitem__("ports", [])))
        validate(t, obj)


# --- updates ----------------------------------------------------------------------------

def _update(kind: str, old_edit=None):
    t, old = prepared(kind, old_edit)
    return t, old, copy.deepcopy(old)


def test_pod_update_allows_image_and_toleration_additions_only():
    t, old, new = _update("Pod")
    new["spec"]["containers"][0]["image"] = "nginx:1.25"
    new["spec"]["tolerations"] = [{"key": "k", "operator": "Exists"}]
    new["spec"]["activeDeadlineSeconds"] = 30
    validate(t, new, old)
    new["spec"]["restartPolicy"] = "Never"
    with pytest.raises(ApiError) as info:
        validate(t, new, old)
    assert [c.field for c in info.value.causes] == ["spec"]
    assert info.value.causes[0].message.startswith(
        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`")


UPDATE_CASES = [
    ("Pod", _set("metadata.uid", "u"), _set("metadata.uid", "other"), ["metadata.uid"]),
    ("Deployment", None, lambda o: (o["spec"]["selector"]["matchLabels"].update(x="y"),
                                    o["spec"]["template"]["metadata"]["labels"].update(x="y")),
     ["spec.selector"]),
    ("Job", None, _set(f"{_T}.containers.0.image", "perl:2"), ["spec.template"]),
    ("Job", None, _set("spec.selector", {"matchLabels": {"a": "b"}}),
     ["spec.template.metadata.labels", "spec.selector"]),
    ("PersistentVolumeClaim", None, _set("spec.accessModes", ["ReadWriteMany"]), ["spec"]),
    ("PersistentVolumeClaim", None, _set("spec.resources.requests.storage", "1Mi"),
     ["spec.resources.requests.storage"]),
    ("PersistentVolume", None, _set("spec.hostPath.path", "/other"),
     ["spec.persistentvolumesource"]),
    ("ConfigMap", _set("immutable", True), _set("data", {"k": "changed"}), ["data"]),
    ("ConfigMap", _set("immutable", True), _set("immutable", False), ["immutable"]),
    ("Secret", _set("immutable", True), _set("data", {"k": "Y2hhbmdlZA=="}), ["data"]),
    ("Secret", None, _set("type", "kubernetes.io/basic-auth"), ["type"]),
    ("Service", _set("spec.clusterIP", "10.96.0.10"), _set("spec.clusterIP", "10.96.0.11"),
     ["spec.clusterIP"]),
]


@pytest.mark.parametrize(("kind", "old_edit", "edit", "fields"), UPDATE_CASES,
                         ids=[f"{k}-{'/'.join(f)}" for k, _, _, f in UPDATE_CASES])
def test_update_validation(kind, old_edit, edit, fields):
    t, old, new = _update(kind, old_edit)
    edit(new)
    assert invalid_fields(t, new, old) == fields


def test_allowed_updates():
    t, old, new = _update("PersistentVolumeClaim")
    new["spec"]["resources"]["requests"]["storage"] = "2Gi"  # expansion
    new["spec"]["volumeName"] = "pv1"  # the binder fills it in
    validate(t, new, old)
    t, old, new = _update("Deployment")
    new["spec"]["replicas"] = 5
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    validate(t, new, old)
    t, old, new = _update("ConfigMap")
    new["data"] = {"k": "changed"}
    validate(t, new, old)
    t, old, new = _update("Service", _set("spec.clusterIP", "10.96.0.10"))
    new["spec"]["ports"][0]["port"] = 81
    validate(t, new, old)


def test_keyless_toleration_must_use_exists() -> None:
    from pinnace.api.errors import ApiError
    from pinnace.api.kinds import REGISTRY
    from pinnace.api.validation import validate
    pods = REGISTRY.by_kind("", "v1", "Pod")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "d"},
           "spec": {"containers": [{"name": "c", "image": "i"}],
                    "tolerations": [{"effect": "NoExecute"}]}}
    from pinnace.api.defaults import apply_defaults
    apply_defaults(pods, pod)
    try:
        validate(pods, pod)
    except ApiError as e:
        assert e.code == 422
        assert [c.field for c in e.causes] == ["spec.tolerations[0].operator"]
    else:
        raise AssertionError("a keyless Equal toleration was accepted")
    pod["spec"]["tolerations"] = [{"operator": "Exists", "effect": "NoExecute"}]
    validate(pods, pod)


def test_qualified_names_report_every_problem_as_kubernetes_does():
    from pinnace.api.names import qualified_name_problems
    assert qualified_name_problems("example.com/MyName") == []
    assert qualified_name_problems("a/") == [
        "name part must be non-empty",
        "name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
        "and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
        "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"]
    assert qualified_name_problems("/x") == ["prefix part must be non-empty"]
    (only,) = qualified_name_problems("a/b/c")
    assert only.startswith("a qualified name must consist of alphanumeric characters")
    assert only.endswith("with an optional DNS subdomain prefix and '/' (e.g. "
                         "'example.com/MyName')")


def test_statefulset_template_may_mount_its_claim_templates_only() -> None:
    t = rt("StatefulSet", "apps")

    def sts(mount: str) -> dict[str, Any]:
        obj = {"apiVersion": "apps/v1", "kind": "StatefulSet",
               "metadata": {"name": "web", "namespace": "default"},
               "spec": {"selector": {"matchLabels": {"app": "web"}}, "serviceName": "web",
                        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                            "containers": [{"name": "app", "image": "nginx", "volumeMounts": [
                                {"name": mount, "mountPath": "/data"}]}]}},
                        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "1Gi"}}}}]}}
        apply_defaults(t, obj)
        return obj

    validate(t, sts("data"))
    assert invalid_fields(t, sts("other")) == [
        "spec.template.spec.containers[0].volumeMounts[0].name"]


@pytest.mark.parametrize("value", [0, "0%", "x"])
def test_statefulset_max_unavailable_is_positive(value: Any) -> None:
    def edit(obj: dict[str, Any]) -> None:
        obj["kind"], obj["spec"]["serviceName"] = "StatefulSet", "web"
        obj["spec"]["updateStrategy"] = {"type": "RollingUpdate",
                                         "rollingUpdate": {"maxUnavailable": value}}
    t = rt("StatefulSet", "apps")
    obj = deployment()
    edit(obj)
    apply_defaults(t, obj)
    assert invalid_fields(t, obj) == ["spec.updateStrategy.rollingUpdate.maxUnavailable"]
