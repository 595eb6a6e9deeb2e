"""Label and field selectors: grammar, matching, messages, selectable fields."""

import pytest

from pinnace.api.errors import ApiError
from pinnace.api.selectors import (
    LabelSelector,
    check_field_selector,
    fields_for,
    format_label_selector,
    format_labels,
    normalize_field_selector,
    parse_field_selector,
    parse_label_selector,
)

# -- label selectors: query-string form ---------------------------------------


@pytest.mark.parametrize(("text", "canonical"), [
    ("a=b,c!=d,e in (x,y),f notin (z),g,!h", "a=b,c!=d,e in (x,y),f notin (z),g,!h"),
    ("z=1,a=2", "a=2,z=1"),
    ("a==b", "a==b"),
    ("  a = b  ", "a=b"),
    ("env in (prod, dev)", "env in (dev,prod)"),
    ("x in (a,,b)", "x in (,a,b)"),
    ("x in ()", "x in ()"),
    ("in=in", "in=in"),
    ("a=", "a="),
    ("a>3,b<2", "a>3,b<2"),
    ("example.com/app=web", "example.com/app=web"),
    ("", ""),
])
def test_parse_and_print(text, canonical):
    assert str(parse_label_selector(text)) == canonical


def test_matching():
    sel = parse_label_selector("a=b,c!=d,e in (x,y),f notin (z),g,!h")
    base = {"a": "b", "e": "x", "g": ""}
    assert sel.matches(base)
    assert sel.matches({**base, "c": "other", "f": "y"})
    assert not sel.matches({**base, "h": "1"})  # !h
    assert not sel.matches({**base, "c": "d"})  # c!=d
    assert not sel.matches({**base, "f": "z"})  # notin
    assert not sel.matches({"a": "b", "g": ""})  # e in (...) needs e
    assert not sel.matches({k: v for k, v in base.items() if k != "g"})  # g exists
    assert parse_label_selector("").matches({})
    gt = parse_label_selector("n>3")
    assert gt.matches({"n": "4"}) and not gt.matches({"n": "3"}) and not gt.matches({"n": "x"})


@pytest.mark.parametrize(("text", "message"), [
    ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
    ("!a=b", "found '=', expected: ',' or 'end of string'"),
    ("a=b,", "found '', expected: identifier after ','"),
    (",a", "found ',', expected: !, identifier, or 'end of string'"),
    ("a in x", "unable to parse requirement: found 'x' expected: '('"),
    ("a in (x y)", "unable to parse requirement: found 'y', expected: ',' or ')'"),
    ("a=(", "unable to parse requirement: found '(', expected: identifier"),
    ("a=b=c", "found '=', expected: ',' or 'end of string'"),
    ("a>x", "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' "
            "operators, the value must be an integer"),
])
def test_parse_errors(text, message):
    with pytest.raises(ApiError) as e:
        parse_label_selector(text)
    assert e.value.code == 400 and e.value.reason == "BadRequest"
    assert e.value.message == message


def test_invalid_key_and_value_messages():
    with pytest.raises(ApiError) as e:
        parse_label_selector("-a=b")
    assert e.value.message.startswith('unable to parse requirement: key: Invalid value: "-a": '
                                      "name part must consist of alphanumeric characters")
    assert "(e.g. 'MyName',  or 'my.name',  or '123-abc'" in e.value.message
    with pytest.raises(ApiError) as e:
        parse_label_selector("a=-b")
    assert 'values[0]: Invalid value: "-b": a valid label must be an empty string' in \
        e.value.message
    with pytest.raises(ApiError, match="must be no more than 63 characters"):
        parse_label_selector("a=" + "x" * 64)


# -- label selectors: object form ----------------------------------------------


def test_from_dict_mirrors_label_selector_as_selector():
    assert not LabelSelector.from_dict(None).matches({"a": "b"})  # nil: nothing
    assert LabelSelector.from_dict({}).matches({"a": "b"})  # empty: everything
    sel = LabelSelector.from_dict({
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["fe", "be"]},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "zone", "operator": "Exists"},
            {"key": "env", "operator": "NotIn", "values": ["dev"]},
        ],
    })
    assert str(sel) == "app=web,!canary,env notin (dev),tier in (be,fe),zone"
    assert sel.matches({"app": "web", "tier": "fe", "zone": "a"})
    assert not sel.matches({"app": "web", "tier": "fe", "zone": "a", "canary": "1"})
    assert not sel.matches({"app": "web", "tier": "fe", "zone": "a", "env": "dev"})


@pytest.mark.parametrize(("sel", "message"), [
    ({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]},
     '"Equals" is not a valid label selector operator'),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
     "values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty"),
    ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
     "values set must be empty for exists and does not exist"),
    ({"matchLabels": {"bad key": "x"}}, 'key: Invalid value: "bad key"'),
])
def test_from_dict_errors(sel, message):
    with pytest.raises(ApiError) as e:
        LabelSelector.from_dict(sel)
    assert e.value.code == 400 and message in e.value.message


def test_formatting_helpers():
    assert format_labels({"b": "2", "a": "1"}) == "a=1,b=2"
    assert format_labels({}) == "<none>"
    assert format_label_selector({"matchLabels": {"app": "web"}}) == "app=web"
    assert format_label_selector({}) == "<none>"
    assert format_label_selector({"matchExpressions": [{"key": "a", "operator": "X"}]}) == \
        "<error>"


# -- field selectors -------------------------------------------------------------


def test_field_selector_parse_and_match():
    sel = parse_field_selector("status.phase!=Running,metadata.name==x,spec.nodeName=n1")
    assert str(sel) == "metadata.name=x,spec.nodeName=n1,status.phase!=Running"
    assert sel.matches({"metadata.name": "x", "spec.nodeName": "n1", "status.phase": "Pending"})
    assert not sel.matches({"metadata.name": "x", "spec.nodeName": "n1",
                            "status.phase": "Running"})
    assert not sel.matches({"metadata.name": "x"})
    assert parse_field_selector("").matches({})
    assert parse_field_selector("spec.nodeName=").matches({"spec.nodeName": ""})
    assert parse_field_selector("a!=b").matches({})  # a missing field is ""


def test_field_selector_escaping():
    sel = parse_field_selector(r"metadata.name=a\,b\=c\\d")
    assert sel.requirements[0].value == "a,b=c\\d"
    assert str(sel) == r"metadata.name=a\,b\=c\\d"
    assert sel.matches({"metadata.name": "a,b=c\\d"})


@pytest.mark.parametrize(("text", "message"), [
    ("foo", "invalid selector: 'foo'; can't understand 'foo'"),
    (r"a=b\x", r"invalid field selector: invalid escape sequence: \x"),
    ("a=b=c", "invalid field selector: unescaped character in value: ="),
])
def test_field_selector_errors(text, message):
    with pytest.raises(ApiError) as e:
        parse_field_selector(text)
    assert e.value.code == 400 and e.value.message == message


def test_supported_fields_per_kind():
    check_field_selector("Pod", "", parse_field_selector("spec.nodeName=n,status.phase=Running"))
    check_field_selector("Event", "", parse_field_selector(
        "involvedObject.name=p,involvedObject.namespace=d,involvedObject.uid=u"))
    check_field_selector("ConfigMap", "", parse_field_selector("metadata.name=x"))
    with pytest.raises(ApiError) as e:
        check_field_selector("Pod", "", parse_field_selector("foo=bar"))
    assert e.value.code == 400 and e.value.message == "field label not supported: foo"
    with pytest.raises(ApiError) as e:
        check_field_selector("ConfigMap", "", parse_field_selector("data.x=1"))
    assert e.value.message == ('"data.x" is not a known field selector: only "metadata.name", '
                               '"metadata.namespace"')
    sel = normalize_field_selector("Pod", "", parse_field_selector("spec.host=n1"))
    assert str(sel) == "spec.nodeName=n1"


def test_fields_for_objects():
    pod = {"metadata": {"name": "p", "namespace": "d"},
           "spec": {"nodeName": "n1", "restartPolicy": "Always", "hostNetwork": True},
           "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.1"}]}}
    f = fields_for("Pod", "", pod)
    assert f["metadata.name"] == "p" and f["metadata.namespace"] == "d"
    assert f["spec.nodeName"] == "n1" and f["spec.hostNetwork"] == "true"
    assert f["status.phase"] == "Running" and f["status.podIP"] == "10.0.0.1"
    assert fields_for("Node", "", {"metadata": {"name": "n"}})["spec.unschedulable"] == "false"
    event = {"metadata": {"name": "e", "namespace": "d"},
             "involvedObject": {"kind": "Pod", "name": "p", "uid": "u1"},
             "reason": "Started", "reportingComponent": "kubelet", "type": "Normal"}
    f = fields_for("Event", "", event)
    assert f["involvedObject.uid"] == "u1" and f["source"] == "kubelet"
    assert fields_for("Secret", "", {"metadata": {"name": "s"}, "type": "Opaque"})["type"] == \
        "Opaque"
    assert fields_for("Job", "batch", {"metadata": {"name": "j"},
                                       "status": {"succeeded": 2}})["status.successful"] == "2"
    assert fields_for("ReplicaSet", "apps", {"metadata": {"name": "r"}})["status.replicas"] == "0"
    sel = parse_field_selector("involvedObject.name=p,involvedObject.uid=u1")
    assert sel.matches(fields_for("Event", "", event))


def test_field_tables_live_on_the_resource_types():
    from pinnace.api.kinds import REGISTRY
    pod = REGISTRY.by_api_version("v1", "Pod")
    node = REGISTRY.by_api_version("v1", "Node")
    cm = REGISTRY.by_api_version("v1", "ConfigMap")
    assert pod is not None and node is not None and cm is not None
    assert pod.selectable_fields is not None and cm.selectable_fields is None
    assert "spec.nodeName" in pod.selectable_fields.fields
    assert pod.selectable_fields.aliases == {"spec.host": "spec.nodeName"}
    # cluster-scoped kinds are not selectable by namespace
    assert node.selectable_fields is not None
    assert "metadata.namespace" not in node.selectable_fields.fields
    with pytest.raises(ApiError, match=r"field label not supported: metadata\.namespace"):
        check_field_selector("Node", "", parse_field_selector("metadata.namespace=x"))
    # spec.host is a Pod's alias only
    with pytest.raises(ApiError, match=r"field label not supported: spec\.host"):
        check_field_selector("Node", "", parse_field_selector("spec.host=x"))
    # accepted but never set: matches as ""
    assert parse_field_selector("status.podIPs=").matches(
        fields_for("Pod", "", {"metadata": {"name": "p"}}))


def test_selector_key_errors_use_kubernetes_wording():
    with pytest.raises(ApiError) as e:
        parse_label_selector("-a=b")
    assert ("name part must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  "
            "or '123-abc', regex used for validation is "
            "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')") in e.value.message


def test_selector_matches_is_lenient_about_invalid_selectors():
    from pinnace.api.selectors import selector_matches
    assert selector_matches({"matchLabels": {"a": "b"}}, {"a": "b", "c": "d"})
    assert not selector_matches({"matchExpressions": [
        {"key": "a", "operator": "NotIn", "values": ["b"]}]}, {"a": "b"})
    assert selector_matches({}, {"x": "y"})
    # already reported by validation: not a second, misleading mismatch
    assert selector_matches({"matchExpressions": [{"key": "a", "operator": "Near"}]}, {})
