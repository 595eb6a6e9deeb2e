"""downwardAPI values: Go's %q map format, subscripts, resources with divisors."""

from __future__ import annotations

import pytest

from pinnace.agent.volumes.downward_api import field_value, format_map, payload
from pinnace.agent.volumes.errors import SetUpError

POD = {
    "metadata": {"name": "p", "namespace": "ns", "uid": "u-1",
                 "labels": {"zone": "a", "app": 'we"b'}, "annotations": {"note": "x\ny"}},
    "spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "250m",
                                                                   "memory": "64Mi"}}}]},
}


async def _alloc() -> dict[str, str]:
    return {"cpu": "4", "memory": "8Gi"}


def test_maps_are_sorted_quoted_lines_without_trailing_newline() -> None:
    assert field_value(POD, "metadata.labels") == 'app="we\\"b"\nzone="a"'
    assert field_value(POD, "metadata.annotations") == 'note="x\\ny"'
    assert format_map({"k": "é"}) == 'k="é"'


def test_scalar_and_subscripted_fields() -> None:
    assert field_value(POD, "metadata.name") == "p"
    assert field_value(POD, "metadata.uid") == "u-1"
    assert field_value(POD, "metadata.labels['zone']") == "a"
    assert field_value(POD, "metadata.labels['missing']") == ""
    with pytest.raises(SetUpError, match=r"unsupported fieldPath: spec\.nodeName"):
        field_value(POD, "spec.nodeName")


async def test_resources_with_divisor_and_node_allocatable_for_unset_limits() -> None:
    items = [
        {"path": "cpu_m", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu",
                                               "divisor": "1m"}},
        {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu"}},
        {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory",
                                             "divisor": "1Mi"}},
        {"path": "eph", "resourceFieldRef": {"containerName": "c",
                                             "resource": "requests.memory"}},
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}, "mode": 0o400},
    ]
    out = await payload(POD, {"items": items, "defaultMode": 0o644}, _alloc)
    assert {k: v.data for k, v in out.items()} == {
        "cpu_m": b"250", "cpu": b"1", "mem": b"64", "eph": b"0",
        "labels": b'app="we\\"b"\nzone="a"'}
    assert out["labels"].mode == 0o400 and out["cpu"].mode == 0o644
    pod = {**POD, "spec": {"containers": [{"name": "c"}]}}
    unset = await payload(pod, {"items": [{"path": "m", "resourceFieldRef": {
        "containerName": "c", "resource": "limits.memory", "divisor": "1Gi"}}]}, _alloc)
    assert unset["m"].data == b"8"
