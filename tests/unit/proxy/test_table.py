"""The service table's transactions: a full one writes everything without deleting the
table, a partial one only what the changed Services need (no host)."""

from __future__ import annotations

from pinnace.proxy.rules import ServiceRules
from pinnace.proxy.table import ServiceTable

T = "pinnace-svc-abc"


def rules(name: str, ip: str, *, endpoints: tuple[str, ...] = ("10.1.2.5",),
          affinity: bool = False) -> ServiceRules:
    r = ServiceRules()
    r.add("cluster-ips", ip)
    if endpoints:
        r.chains[f"svc-{name}"] = (f"default/{name}", tuple(
            f"meta l4proto tcp dnat to {e}:80" for e in endpoints))
        r.add("service-ips", f"{ip} . tcp . 80", f"goto svc-{name}")
        for e in endpoints:
            r.add("hairpin", f"{e} . {e}")
            if affinity:
                r.sets[f"affinity-{name}-{e}"] = 60
    else:
        r.add("no-endpoint-services", f"{ip} . tcp . 80", "goto reject-chain")
    return r


def table_with(**services: ServiceRules) -> ServiceTable:
    t = ServiceTable(T, bridge="pnabc")
    t.full({f"default/{k}": v for k, v in services.items()}, existing_chains=(),
           existing_sets=(), now=0.0)
    return t


def test_a_full_sync_rewrites_without_deleting_the_table_or_the_affinity_sets() -> None:
    t = ServiceTable(T, bridge="pnabc")
    text = t.full({"default/a": rules("a", "10.96.0.1", affinity=True)},
                  existing_chains={"svc-a", "svc-gone", "services"},
                  existing_sets={"affinity-old", "service-ips"}, now=0.0)
    lines = text.splitlines()
    assert lines[:3] == [f"add table ip {T}", f"flush table ip {T}", f"table ip {T} {{"]
    assert f"delete table ip {T}" not in text
    for name in ("service-ips", "service-nodeports", "no-endpoint-services",
                 "no-endpoint-nodeports"):
        assert f"flush map ip {T} {name}" in lines
    assert f"flush set ip {T} cluster-ips" in lines
    # everything in one block (one block is much faster for nft than many commands)
    assert text.count(f"table ip {T} {{") == 1
    assert "  set affinity-a-10.1.2.5 {\n    type ipv4_addr\n    flags dynamic,timeout\n" \
           "    timeout 60s\n  }\n" in text
    assert f"flush set ip {T} affinity" not in text  # declared again, never flushed
    assert f"add element ip {T} service-ips {{ 10.96.0.1 . tcp . 80 : goto svc-a }}" in lines
    assert f"add element ip {T} cluster-ips {{ 10.96.0.1 }}" in lines
    # what no Service wants is deleted a second later (it was emptied by the flush)
    assert t.next_stale_deletion() == 1.0
    assert t.partial({}, now=0.5) == ""
    assert t.partial({}, now=1.0) == (f"delete chain ip {T} svc-gone\n"
                                      f"delete set ip {T} affinity-old\n")
    assert t.next_stale_deletion() is None


def test_a_partial_sync_writes_only_the_changed_service() -> None:
    t = table_with(a=rules("a", "10.96.0.1"), b=rules("b", "10.96.0.2", endpoints=("10.1.2.9",)))
    text = t.partial({"default/a": rules("a", "10.96.0.1", endpoints=("10.1.2.6",))}, now=1.0)
    assert text == (
        f"add chain ip {T} svc-a\n"
        f"flush chain ip {T} svc-a\n"
        f"table ip {T} {{\n  chain svc-a {{\n    comment \"default/a\"\n"
        f"    meta l4proto tcp dnat to 10.1.2.6:80\n  }}\n}}\n"
        f"delete element ip {T} hairpin {{ 10.1.2.5 . 10.1.2.5 }}\n"
        f"add element ip {T} hairpin {{ 10.1.2.6 . 10.1.2.6 }}\n")
    assert "svc-b" not in text and "10.96.0.2" not in text
    # the same rules again: nothing to write
    assert t.partial({"default/a": rules("a", "10.96.0.1", endpoints=("10.1.2.6",))},
                     now=2.0) == ""


def test_a_service_losing_its_endpoints_then_deleted() -> None:
    t = table_with(a=rules("a", "10.96.0.1"))
    text = t.partial({"default/a": rules("a", "10.96.0.1", endpoints=())}, now=1.0)
    lines = text.splitlines()
    assert f"flush chain ip {T} svc-a" in lines  # emptied now, deleted later
    assert "delete chain" not in text
    # a verdict moving to another map: deleted from the old one, added to the new one
    assert f"delete element ip {T} service-ips {{ 10.96.0.1 . tcp . 80 }}" in lines
    assert f"add element ip {T} no-endpoint-services {{ 10.96.0.1 . tcp . 80 : " \
           f"goto reject-chain }}" in lines
    assert lines.index(f"flush chain ip {T} svc-a") < \
        lines.index(f"delete element ip {T} service-ips {{ 10.96.0.1 . tcp . 80 }}")
    text = t.partial({"default/a": ServiceRules()}, now=2.5)
    assert text.splitlines() == [
        f"delete chain ip {T} svc-a",
        f"delete element ip {T} cluster-ips {{ 10.96.0.1 }}",
        f"delete element ip {T} no-endpoint-services {{ 10.96.0.1 . tcp . 80 }}"]
    assert t.services == {}


def test_a_chain_wanted_again_before_its_deletion_is_kept() -> None:
    t = table_with(a=rules("a", "10.96.0.1"))
    t.partial({"default/a": rules("a", "10.96.0.1", endpoints=())}, now=1.0)
    text = t.partial({"default/a": rules("a", "10.96.0.1")}, now=3.0)
    assert "delete chain" not in text
    assert "  chain svc-a {\n" in text  # it is empty: filled again
    assert t.next_stale_deletion() is None


def test_a_key_two_services_want_is_kept_until_both_let_go() -> None:
    t = table_with(a=rules("a", "10.96.0.1"), b=rules("b", "10.96.0.2"))  # one pod behind both
    text = t.partial({"default/a": ServiceRules()}, now=1.0)
    assert "hairpin" not in text  # b still wants 10.1.2.5 . 10.1.2.5
    text = t.partial({"default/b": ServiceRules()}, now=1.0)
    assert f"delete element ip {T} hairpin {{ 10.1.2.5 . 10.1.2.5 }}" in text.splitlines()
    # the same external address and port in two Services: the first by key is written,
    # and the other's verdict when it goes
    t = ServiceTable(T, bridge="pnabc")
    x, y = rules("x", "10.96.0.1"), rules("y", "10.96.0.2")
    x.add("service-ips", "192.0.2.7 . tcp . 80", "goto ext-x")
    y.add("service-ips", "192.0.2.7 . tcp . 80", "goto ext-y")
    text = t.full({"default/x": x, "default/y": y}, existing_chains=(), existing_sets=(),
                  now=0.0)
    assert "192.0.2.7 . tcp . 80 : goto ext-x" in text and "goto ext-y" not in text
    text = t.partial({"default/x": ServiceRules()}, now=1.0)
    assert f"add element ip {T} service-ips {{ 192.0.2.7 . tcp . 80 : goto ext-y }}" in \
        text.splitlines()
