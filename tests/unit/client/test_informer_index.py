"""Informer indexes: a name registered twice must mean one index function."""

from __future__ import annotations

from typing import Any

import pytest

from pinnace.api.kinds import REGISTRY
from pinnace.client.informer import Informer

Obj = dict[str, Any]


def owner(pod: Obj) -> list[str]:
    return [pod["metadata"].get("owner", "")]


def node_name(pod: Obj) -> list[str]:
    return [(pod.get("spec") or {}).get("nodeName") or ""]


class Component:
    """Registers its index from a lambda in its constructor, as controllers do."""

    def __init__(self, pods: Informer) -> None:
        pods.add_index("by-node", lambda p: [(p.get("spec") or {}).get("nodeName") or ""])


@pytest.fixture
def pods() -> Informer:
    rt = REGISTRY.by_api_version("v1", "Pod")
    assert rt is not None
    inf = Informer(None, rt)  # type: ignore[arg-type]  # no I/O: the cache alone
    inf.cache = {"ns/a": {"metadata": {"name": "a", "namespace": "ns", "owner": "x"},
                          "spec": {"nodeName": "n1"}}}
    return inf


def test_same_function_twice_is_fine(pods: Informer) -> None:
    pods.add_index("owner", owner)
    pods.add_index("owner", owner)
    assert [p["metadata"]["name"] for p in pods.by_index("owner", "x")] == ["a"]


def test_two_instances_of_one_component_share_the_index(pods: Informer) -> None:
    Component(pods)
    Component(pods)
    # and so does the same expression spelled as a function elsewhere
    pods.add_index("by-node", node_name)
    assert [p["metadata"]["name"] for p in pods.by_index("by-node", "n1")] == ["a"]


def test_a_different_function_under_a_taken_name_is_an_error(pods: Informer) -> None:
    pods.add_index("owner", owner)
    with pytest.raises(ValueError, match="'owner'"):
        pods.add_index("owner", node_name)
    with pytest.raises(ValueError, match="'owner'"):
        pods.add_index("owner", lambda p: [p["metadata"]["name"]])
    # the first registration stays in force
    assert [p["metadata"]["name"] for p in pods.by_index("owner", "x")] == ["a"]


def test_captured_values_make_functions_different(pods: Informer) -> None:
    def by(field: str) -> Any:
        return lambda p: [p["metadata"].get(field, "")]
    pods.add_index("meta", by("owner"))
    pods.add_index("meta", by("owner"))
    with pytest.raises(ValueError, match="'meta'"):
        pods.add_index("meta", by("name"))


class Indexer:
    def __init__(self, field: str) -> None:
        self.field = field

    def values(self, pod: Obj) -> list[str]:
        return [pod["metadata"].get(self.field, "")]


def test_methods_are_the_same_function_only_on_the_same_object(pods: Informer) -> None:
    a = Indexer("owner")
    pods.add_index("m", a.values)
    pods.add_index("m", a.values)
    with pytest.raises(ValueError, match="'m'"):
        pods.add_index("m", Indexer("name").values)
