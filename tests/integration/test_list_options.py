"""List and watch options are checked once for every kind: odd values answer a 4xx
Status naming the option, or what Kubernetes does with them — never a 5xx (a revision
not reached yet is Kubernetes' "Too large resource version" Timeout, answered as 408
rather than Kubernetes' 504)."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pinnace.api.kinds import REGISTRY
from tests.integration.conftest import Api

CMS = "/api/v1/namespaces/default/configmaps"
# every collection served, namespaced ones both in a namespace and across all of them
COLLECTIONS = sorted(
    {rt.url_path("default") for rt in REGISTRY if "list" in rt.verbs and rt.namespaced}
    | {rt.url_path(None) for rt in REGISTRY if "list" in rt.verbs})


async def seed_configmaps(api: Api, n: int) -> None:
    for i in range(n):
        status, body = await api.request("POST", CMS, json={
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{i}"}})
        assert status == 201, body


def names(body: dict) -> list[str]:
    return [o["metadata"]["name"] for o in body["items"]]


def assert_status(status: int, body: object, code: int) -> dict:
    assert status == code, body
    assert isinstance(body, dict) and body["kind"] == "Status" and body["code"] == code, body
    return body


@pytest.mark.parametrize("path", ["/apis/batch/v1/namespaces/x/jobs?limit=-397",
                                  "/apis/batch/v1/cronjobs?limit=-1",
                                  f"{CMS}?limit=0", f"{CMS}?limit=-9223372036854775808"])
async def test_limit_zero_or_negative_is_no_limit(api: Api, path: str) -> None:
    await seed_configmaps(api, 3)
    status, body = await api.request("GET", path)
    assert status == 200, body
    assert "continue" not in body["metadata"]
    if path.startswith(CMS):
        assert names(body) == ["cm-0", "cm-1", "cm-2"]


async def test_huge_limit_lists_everything(api: Api) -> None:
    await seed_configmaps(api, 2)
    status, body = await api.request("GET", f"{CMS}?limit=9223372036854775807")
    assert status == 200 and names(body) == ["cm-0", "cm-1"], body


@pytest.mark.parametrize("value", ["abc", "1.5", "9223372036854775808", " 1", "1_0", "٣"])
async def test_limit_not_an_int64_is_400(api: Api, value: str) -> None:
    status, body = await api.request("GET", f"{CMS}?{urlencode({'limit': value})}")
    body = assert_status(status, body, 400)
    assert body["reason"] == "BadRequest" and "limit" in body["message"]


@pytest.mark.parametrize("token", ["garbage", "e30=", base64.urlsafe_b64encode(
    json.dumps({"rv": "x", "start": 1}).encode()).decode(), "%%%"])
async def test_garbage_continue_is_400(api: Api, token: str) -> None:
    status, body = await api.request("GET", f"{CMS}?{urlencode({'continue': token})}")
    body = assert_status(status, body, 400)
    assert "continue key is not valid" in body["message"]


async def test_continue_with_resource_version_is_400(api: Api) -> None:
    await seed_configmaps(api, 3)
    _, page = await api.request("GET", f"{CMS}?limit=1")
    token = page["metadata"]["continue"]
    status, body = await api.request("GET", f"{CMS}?limit=1&continue={token}"
                                            "&resourceVersion=5")
    assert_status(status, body, 400)
    # "0" means "any": Kubernetes lets it through with a continue
    status, body = await api.request("GET", f"{CMS}?limit=1&continue={token}"
                                            "&resourceVersion=0")
    assert status == 200 and names(body) == ["cm-1"], body


@pytest.mark.parametrize("query, field, code", [
    # values that do not decode: 400 BadRequest, as Kubernetes' parameter codec answers
    ("resourceVersion=abc", "resourceVersion", 400),
    ("resourceVersion=-1", "resourceVersion", 400),
    ("timeoutSeconds=soon", "timeoutSeconds", 400),
    # combinations ValidateListOptions refuses: 422 Invalid ListOptions
    ("resourceVersionMatch=Exact", "resourceVersionMatch", 422),
    ("resourceVersionMatch=NotOlderThan", "resourceVersionMatch", 422),
    ("resourceVersion=1&resourceVersionMatch=Newest", "resourceVersionMatch", 422),
    ("resourceVersion=0&resourceVersionMatch=Exact", "resourceVersionMatch", 422),
    ("resourceVersion=1&resourceVersionMatch=Exact&continue=abc", "resourceVersionMatch", 422),
    ("sendInitialEvents=true", "sendInitialEvents", 422),
])
async def test_invalid_list_options_name_the_option(api: Api, query: str, field: str,
                                                    code: int) -> None:
    status, body = await api.request("GET", f"{CMS}?{query}")
    body = assert_status(status, body, code)
    prefix = 'ListOptions.meta.k8s.io "" is invalid: ' if code == 422 else ""
    assert body["message"].startswith(f"{prefix}{field}: "), body
    assert field in [c.get("field") for c in body.get("details", {}).get("causes", [])], body


async def test_resource_version_not_older_than(api: Api) -> None:
    await seed_configmaps(api, 1)
    _, lst = await api.request("GET", CMS)
    rv = int(lst["metadata"]["resourceVersion"])
    for query in (f"resourceVersion={rv}", f"resourceVersion={rv}"
                  "&resourceVersionMatch=NotOlderThan", "resourceVersion=0"):
        status, body = await api.request("GET", f"{CMS}?{query}")
        assert status == 200 and names(body) == ["cm-0"], (query, body)
        assert int(body["metadata"]["resourceVersion"]) >= rv


async def test_too_large_resource_version_is_a_timeout(api: Api) -> None:
    for query in ("resourceVersion=99999999", "resourceVersion=99999999"
                  "&resourceVersionMatch=Exact"):
        status, body = await api.request("GET", f"{CMS}?{query}")
        body = assert_status(status, body, 408)
        assert body["reason"] == "Timeout"
        assert body["message"].startswith("Too large resource version: 99999999")
        assert body["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"


@pytest.mark.parametrize("query, code", [
    ("resourceVersionMatch=NotOlderThan", 422),  # only with sendInitialEvents
    ("sendInitialEvents=true", 422),  # needs resourceVersionMatch=NotOlderThan
    ("sendInitialEvents=true&resourceVersionMatch=Exact", 422),
    ("resourceVersion=x", 400),
    ("timeoutSeconds=1e3", 400),
])
async def test_invalid_watch_options(api: Api, query: str, code: int) -> None:
    status, body = await api.request("GET", f"{CMS}?watch=true&{query}")
    assert_status(status, body, code)


async def test_watch_list_with_initial_events(api: Api) -> None:
    await seed_configmaps(api, 2)
    hdrs = {"Authorization": f"Bearer {api.server.token}"}
    query = ("watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
             "&allowWatchBookmarks=true&timeoutSeconds=1")
    async with api.session.get(f"{api.url}{CMS}?{query}", headers=hdrs) as resp:
        assert resp.status == 200
        events = [json.loads(line) for line in (await resp.read()).splitlines() if line]
    assert [e["type"] for e in events[:3]] == ["ADDED", "ADDED", "BOOKMARK"]
    assert events[2]["object"]["metadata"]["annotations"] == {
        "k8s.io/initial-events-end": "true"}


# -- property: every collection, random list and watch queries, never a 5xx ------------

_ints = st.one_of(st.integers(-2**70, 2**70), st.sampled_from([0, -1, 1, 2**63 - 1, 2**63]))
_words = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_values = st.one_of(_ints.map(str), _words, st.sampled_from(
    ["", "0", "true", "false", "Exact", "NotOlderThan", "1.5", "e30=", "-0", "+3"]))
_continue = st.one_of(_values, st.builds(
    lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode(),
    st.dictionaries(st.sampled_from(["v", "rv", "start"]),
                    st.one_of(_ints, _words, st.none()), max_size=3)))
_selectors = st.one_of(_words, st.sampled_from(
    ["app=web", "app in (a,b)", "!app", "metadata.name=x", "spec.nodeName!=n",
     "status.phase=Running", "a=b,", "x==y", "metadata.namespace=default", "(", "a!"]))
_queries = st.fixed_dictionaries({}, optional={
    "limit": _values, "continue": _continue, "resourceVersion": _values,
    "resourceVersionMatch": _values, "timeoutSeconds": _values,
    "sendInitialEvents": _values, "allowWatchBookmarks": _values,
    "labelSelector": _selectors, "fieldSelector": _selectors})


@settings(max_examples=600, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(path=st.sampled_from(COLLECTIONS), query=_queries, watch=st.booleans())
async def test_random_list_and_watch_queries_never_5xx(api: Api, path: str, query: dict,
                                                       watch: bool) -> None:
    if watch:
        query = {"watch": "true", **query}
    url = f"{api.url}{path}?{urlencode(query)}"
    hdrs = {"Authorization": f"Bearer {api.server.token}"}
    async with api.session.get(url, headers=hdrs) as resp:
        # a watch that started streams until its timeout: its status line is the answer
        if resp.status == 200:
            return
        body = await resp.json()
    assert resp.status < 500, (path, query, body)
    assert body["kind"] == "Status" and body["code"] == resp.status, (path, query, body)
