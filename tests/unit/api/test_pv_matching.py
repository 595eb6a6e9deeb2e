"""Which volume a claim binds: pinnace.api.pv_matching, no server."""

from __future__ import annotations

from typing import Any

from pinnace.api import pv_matching as pvm


def pv(name: str, size: str, *, modes: tuple[str, ...] = ("ReadWriteOnce",), cls: str = "",
       phase: str = "Available", labels: dict[str, str] | None = None,
       **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"capacity": {"storage": size}, "accessModes": list(modes),
                     "storageClassName": cls, **spec},
            "status": {"phase": phase}}


def claim(size: str, *, modes: tuple[str, ...] = ("ReadWriteOnce",), cls: str | None = "",
          **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": "c", "namespace": "ns", "uid": "u1"},
        "spec": {"accessModes": list(modes), "resources": {"requests": {"storage": size}},
                 **spec}}
    if cls is not None:
        body["spec"]["storageClassName"] = cls
    return body


def best(c: dict[str, Any], *volumes: dict[str, Any], **kw: Any) -> str | None:
    found = pvm.find_best_match(c, list(volumes), **kw)
    return found["metadata"]["name"] if found else None


def test_smallest_fitting_volume_wins() -> None:
    assert best(claim("1Gi"), pv("a", "5Gi"), pv("b", "2Gi"), pv("c", "500Mi")) == "b"
    assert best(claim("1Gi"), pv("a", "1Gi"), pv("b", "1024Mi")) == "a"  # equal: by name
    assert best(claim("10Gi"), pv("a", "5Gi")) is None


def test_access_modes_all_needed_fewest_first() -> None:
    assert best(claim("1Gi", modes=("ReadWriteMany",)), pv("rwo", "5Gi")) is None
    both = pv("both", "1Gi", modes=("ReadWriteOnce", "ReadWriteMany"))
    assert best(claim("1Gi"), both, pv("rwo", "5Gi")) == "rwo"  # fewer modes beat size
    assert best(claim("1Gi", modes=("ReadWriteMany",)), both, pv("rwo", "1Gi")) == "both"


def test_class_selector_mode_phase_and_deletion() -> None:
    assert best(claim("1Gi"), pv("fast", "1Gi", cls="fast")) is None  # "" only with ""
    assert best(claim("1Gi", cls="fast"), pv("none", "1Gi"), pv("fast", "1Gi", cls="fast")) \
        == "fast"
    sel = {"matchLabels": {"tier": "gold"}}
    assert best(claim("1Gi", selector=sel), pv("plain", "1Gi"),
                pv("gold", "2Gi", labels={"tier": "gold"})) == "gold"
    assert best(claim("1Gi", volumeMode="Block"), pv("fs", "1Gi")) is None
    assert best(claim("1Gi"), pv("released", "1Gi", phase="Released")) is None
    going = pv("going", "1Gi")
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert best(claim("1Gi"), going) is None


def test_prebound_volume_wins_at_once() -> None:
    mine = pv("mine", "9Gi", phase="Pending", claimRef={"namespace": "ns", "name": "c"})
    other = pv("other", "1Gi", claimRef={"namespace": "ns", "name": "d"})
    assert best(claim("1Gi"), pv("small", "1Gi"), mine, other) == "mine"
    stale = pv("stale", "1Gi", claimRef={"namespace": "ns", "name": "c", "uid": "old"})
    assert best(claim("1Gi"), stale) is None


def test_delay_binding_and_node_affinity() -> None:
    affinity = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}
    local = pv("local", "1Gi", nodeAffinity=affinity)
    # the binder leaves WaitForFirstConsumer claims to the scheduler
    assert best(claim("1Gi"), local, delay_binding=True) is None
    n1 = ({"kubernetes.io/hostname": "n1"}, "n1")
    n2 = ({"kubernetes.io/hostname": "n2"}, "n2")
    assert best(claim("1Gi"), local, delay_binding=True, node=n1) == "local"
    assert best(claim("1Gi"), local, delay_binding=True, node=n2) is None
    assert best(claim("1Gi"), local, node=n1, excluded={"local"}) is None
    assert pvm.node_affinity_matches(pv("anywhere", "1Gi"), {}, "n9")


def test_volume_mismatch_reasons() -> None:
    c = claim("2Gi", cls="a")
    assert pvm.volume_mismatch(pv("v", "1Gi", cls="a"), c) == "requested PV is too small"
    assert pvm.volume_mismatch(pv("v", "2Gi", cls="b"), c) == "storageClassName does not match"
    assert pvm.volume_mismatch(pv("v", "2Gi", cls="a", volumeMode="Block"), c) == \
        "incompatible volumeMode"
    assert pvm.volume_mismatch(pv("v", "2Gi", cls="a", modes=("ReadOnlyMany",)), c) == \
        "incompatible accessMode"
    assert pvm.volume_mismatch(pv("v", "2Gi", cls="a"), c) is None


def test_classes() -> None:
    assert pvm.class_unset(claim("1Gi", cls=None))
    assert not pvm.class_unset(claim("1Gi", cls=""))
    old = {"metadata": {"name": "old", "creationTimestamp": "2026-01-01T00:00:00Z",
                        "annotations": {pvm.ANN_DEFAULT_CLASS: "true"}}}
    new = {"metadata": {"name": "new", "creationTimestamp": "2026-02-01T00:00:00Z",
                        "annotations": {pvm.ANN_BETA_DEFAULT_CLASS: "true"}}}
    plain = {"metadata": {"name": "plain", "creationTimestamp": "2026-03-01T00:00:00Z"}}
    assert (pvm.default_class([old, new, plain]) or {})["metadata"]["name"] == "new"
    assert pvm.default_class([plain]) is None
    assert pvm.is_delay_binding({"volumeBindingMode": "WaitForFirstConsumer"})
    assert not pvm.is_delay_binding(None)
