"""Node selector terms, required node affinity and taint/toleration matching."""

from __future__ import annotations

from typing import Any

import pytest

from pinnace.api.scheduling import (
    find_untolerated_taint,
    match_node_selector_terms,
    node_selector_requirement_matches,
    node_selector_term_matches,
    pod_spec_fits_node,
    required_node_affinity_matches,
    required_node_selector_terms,
    tolerates_all,
    toleration_tolerates_taint,
)

NODE = {"metadata": {"name": "n1", "labels": {"zone": "a", "cpus": "8"}}}


def req(key: str, op: str, *values: str) -> dict[str, Any]:
    return {"key": key, "operator": op, "values": list(values)}


@pytest.mark.parametrize(("requirement", "expected"), [
    (req("zone", "In", "a", "b"), True),
    (req("zone", "In", "b"), False),
    (req("missing", "In", "a"), False),
    (req("zone", "NotIn", "b"), True),
    (req("zone", "NotIn", "a"), False),
    (req("missing", "NotIn", "a"), True),
    (req("zone", "Exists"), True),
    (req("missing", "Exists"), False),
    (req("zone", "DoesNotExist"), False),
    (req("missing", "DoesNotExist"), True),
    (req("cpus", "Gt", "4"), True),
    (req("cpus", "Gt", "8"), False),
    (req("cpus", "Lt", "16"), True),
    (req("zone", "Gt", "1"), False),  # not an integer: never matches
    (req("cpus", "Gt", "4", "5"), False),  # Gt takes exactly one value
    (req("missing", "Lt", "4"), False),
    (req("zone", "Bogus", "a"), False),
])
def test_requirement_operators(requirement: dict[str, Any], expected: bool) -> None:
    assert node_selector_requirement_matches(requirement, NODE["metadata"]["labels"]) is expected


def test_empty_term_matches_nothing() -> None:
    assert not node_selector_term_matches({}, {"zone": "a"}, "n1")
    assert not match_node_selector_terms([{}], NODE)
    assert not match_node_selector_terms([], NODE)


def test_terms_are_ored_and_requirements_anded() -> None:
    both = {"matchExpressions": [req("zone", "In", "a"), req("cpus", "Gt", "16")]}
    assert not match_node_selector_terms([both], NODE)
    assert match_node_selector_terms([both, {"matchExpressions": [req("zone", "Exists")]}],
                                     NODE)


def test_match_fields_know_the_node_name_only() -> None:
    assert match_node_selector_terms([{"matchFields": [req("metadata.name", "In", "n1")]}],
                                     NODE)
    assert not match_node_selector_terms(
        [{"matchFields": [req("metadata.name", "In", "n2")]}], NODE)
    assert not match_node_selector_terms(
        [{"matchFields": [req("metadata.namespace", "DoesNotExist")]}], NODE)
    # labels are not fields
    assert not match_node_selector_terms([{"matchFields": [req("zone", "In", "a")]}], NODE)


def test_required_affinity_with_node_selector() -> None:
    labels = NODE["metadata"]["labels"]
    assert required_node_affinity_matches(node_selector={}, required_terms=None,
                                          labels=labels, node_name="n1")
    assert not required_node_affinity_matches(node_selector={"zone": "b"}, required_terms=None,
                                              labels=labels, node_name="n1")
    # required affinity present but with no terms: nothing matches
    assert not required_node_affinity_matches(node_selector={}, required_terms=[],
                                              labels=labels, node_name="n1")


def test_pod_spec_fits_node() -> None:
    def spec(required: Any) -> dict[str, Any]:
        return {"nodeSelector": {"zone": "a"}, "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": required}}}
    assert required_node_selector_terms({}) is None
    assert required_node_selector_terms(spec({})) == []
    assert pod_spec_fits_node({"nodeSelector": {"zone": "a"}}, NODE)
    assert not pod_spec_fits_node(spec({}), NODE)
    assert pod_spec_fits_node(spec({"nodeSelectorTerms": [
        {"matchFields": [req("metadata.name", "In", "n1")]}]}), NODE)


TAINT = {"key": "gpu", "value": "true", "effect": "NoSchedule"}


@pytest.mark.parametrize(("toleration", "expected"), [
    ({"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}, True),
    ({"key": "gpu", "value": "true"}, True),  # no operator is Equal; no effect is any
    ({"key": "gpu", "operator": "Equal", "value": "false"}, False),
    ({"key": "gpu", "operator": "Exists"}, True),
    ({"key": "other", "operator": "Exists"}, False),
    ({"operator": "Exists"}, True),  # no key with Exists: every taint
    ({"operator": "Exists", "effect": "NoExecute"}, False),
    ({"value": "true"}, False),  # Equal needs a key
])
def test_toleration_tolerates_taint(toleration: dict[str, Any], expected: bool) -> None:
    assert toleration_tolerates_taint(toleration, TAINT) is expected


def test_taint_without_value_matches_empty_value() -> None:
    taint = {"key": "k", "effect": "NoExecute"}
    assert toleration_tolerates_taint({"key": "k", "operator": "Equal", "value": ""}, taint)


def test_tolerates_all_filters_by_effect() -> None:
    prefer = {"key": "p", "effect": "PreferNoSchedule"}
    evict = {"key": "e", "effect": "NoExecute"}
    taints = [TAINT, prefer, evict]
    tolerations = [{"key": "e", "operator": "Exists"}]
    assert tolerates_all(tolerations, taints, ("NoExecute",))
    assert not tolerates_all(tolerations, taints, ("NoSchedule", "NoExecute"))
    assert find_untolerated_taint(taints, tolerations, ("NoSchedule", "NoExecute")) == TAINT
    assert find_untolerated_taint(taints, [], ("PreferNoSchedule",)) == prefer
    assert tolerates_all([], [], ("NoSchedule",))
