"""What the proxy's nftables table holds, and the `nft -f` transactions that change it.

`ServiceTable` remembers, per Service, the `ServiceRules` last written, and turns new ones
into text, as kube-proxy's nftables proxier does (pkg/proxy/nftables/proxier.go, read for
behaviour):

- A *full* sync (the first, one after any failure, and every `full_sync_period`) writes the
  whole table in one transaction without deleting it: `add table`, `flush table` (every
  chain emptied; map and set elements stay), the fixed part again, every map and set
  flushed and refilled, every Service's chains. Affinity sets are re-declared, never
  flushed, so clients keep their endpoints across it. Chains and sets the table has but
  no Service wants (listed by the caller) are stale.
- A *partial* sync writes, in one transaction, only what the changed Services need: their
  chains created or flushed and refilled, their affinity sets declared, and the elements
  that differ deleted and added. Its size does not depend on how many Services exist.
- A chain or set nobody wants any more is flushed at once (nothing jumps to it after this
  transaction) and deleted by a later sync, at least `stale_delay` seconds on: before Linux
  6.2 a chain's references are released lazily, and deleting it in the same breath fails.
- Two Services may want the same map key (two Services naming one externalIP and port, a
  pod behind two Services in `hairpin`): each key remembers who wants it with what verdict;
  the first by Service key is written, and when it lets go the next one's is.

A failed transaction leaves this state ahead of the kernel's: the caller then does a full
sync, which rebuilds it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pinnace.proxy.rules import BASE_CHAINS, BASE_SETS, ServiceRules, base_table

__all__ = ["ServiceTable"]

ElementKey = tuple[str, str]  # (map or set, key)


class ServiceTable:
    """The written state of one table (see the module docstring)."""

    def __init__(self, table: str, *, bridge: str, stale_delay: float = 1.0) -> None:
        self.table = table
        self.bridge = bridge
        self.stale_delay = stale_delay
        self.services: dict[str, ServiceRules] = {}
        self._wanted: dict[ElementKey, dict[str, str]] = {}  # element -> service -> verdict
        self._written: dict[ElementKey, str] = {}
        self._stale_chains: dict[str, float] = {}  # name -> since when
        self._stale_sets: dict[str, float] = {}

    # -- the two kinds of sync -----------------------------------------------------------

    def full(self, desired: Mapping[str, ServiceRules], *, existing_chains: Iterable[str],
             existing_sets: Iterable[str], now: float) -> str:
        """The transaction that makes the table exactly `desired` (Service key -> rules);
        `existing_*`: what the table has now (stale unless wanted)."""
        t = self.table
        self.services = {}
        self._wanted.clear()
        self._written.clear()
        for key, rules in desired.items():
            self.services[key] = rules
            for table_set, elements in rules.elements.items():
                for k, v in elements.items():
                    self._wanted.setdefault((table_set, k), {})[key] = v
        _, body = self._declare(self.services.values(), written={})
        out = [f"add table ip {t}\n", f"flush table ip {t}\n",
               base_table(t, bridge=self.bridge, more=body)]
        out += [f"flush {kind} ip {t} {name}\n" for name, kind in BASE_SETS.items()]
        additions: dict[str, list[str]] = {}
        for ek, wanted in self._wanted.items():
            self._written[ek] = value = wanted[min(wanted)]
            additions.setdefault(ek[0], []).append(_element(ek[1], value))
        out += [f"add element ip {t} {name} {{ {', '.join(items)} }}\n"
                for name, items in additions.items()]
        chains, sets = self._owned()
        chains.update(BASE_CHAINS)
        sets.update(BASE_SETS)
        self._stale_chains = {c: now for c in existing_chains if c not in chains}
        self._stale_sets = {s: now for s in existing_sets if s not in sets}
        return "".join(out)

    def partial(self, changed: Mapping[str, ServiceRules], *, now: float) -> str:
        """The transaction that brings the `changed` Services (key -> rules; empty rules
        for a deleted one) to their new rules, plus the deletion of chains and sets stale
        long enough; "" when there is nothing to write."""
        t = self.table
        for rules in changed.values():  # wanted again before it was deleted
            for c in rules.chains:
                self._stale_chains.pop(c, None)
            for s in rules.sets:
                self._stale_sets.pop(s, None)
        out = self._delete_stale(now)
        old_chains: dict[str, tuple[str, tuple[str, ...]]] = {}
        new_rules: list[ServiceRules] = []
        touched: set[ElementKey] = set()
        for key, rules in changed.items():
            old = self.services.pop(key, None) or ServiceRules()
            if rules.chains or rules.sets or rules.elements:
                self.services[key] = rules
            new_rules.append(rules)
            old_chains.update(old.chains)
            for c in old.chains.keys() - rules.chains.keys():
                out.append(f"flush chain ip {t} {c}\n")
                self._stale_chains[c] = now
            for s in old.sets.keys() - rules.sets.keys():
                self._stale_sets[s] = now
            for table_set, elements in old.elements.items():
                for k in elements:
                    ek = (table_set, k)
                    self._wanted[ek].pop(key, None)
                    touched.add(ek)
            for table_set, elements in rules.elements.items():
                for k, v in elements.items():
                    self._wanted.setdefault((table_set, k), {})[key] = v
                    touched.add((table_set, k))
        commands, body = self._declare(new_rules, written=old_chains)
        out += commands
        if body:
            out.append(f"table ip {t} {{\n{body}}}\n")
        deletions: dict[str, list[str]] = {}
        additions: dict[str, list[str]] = {}
        for ek in sorted(touched):
            wanted = self._wanted.get(ek) or {}
            value = wanted[min(wanted)] if wanted else None
            if not wanted:
                self._wanted.pop(ek, None)
            old_value = self._written.get(ek)
            if old_value == value:
                continue
            if old_value is not None:
                deletions.setdefault(ek[0], []).append(ek[1])
                del self._written[ek]
            if value is not None:
                additions.setdefault(ek[0], []).append(_element(ek[1], value))
                self._written[ek] = value
        # deletions first: a key whose verdict changes is deleted, then added again
        out += [f"delete element ip {t} {name} {{ {', '.join(keys)} }}\n"
                for name, keys in deletions.items()]
        out += [f"add element ip {t} {name} {{ {', '.join(items)} }}\n"
                for name, items in additions.items()]
        return "".join(out)

    # -- stale chains and sets -----------------------------------------------------------

    def next_stale_deletion(self) -> float | None:
        """When the oldest stale chain or set may be deleted (None: there is none)."""
        since = [*self._stale_chains.values(), *self._stale_sets.values()]
        return min(since) + self.stale_delay if since else None

    def _delete_stale(self, now: float) -> list[str]:
        due = now - self.stale_delay
        chains = [c for c, since in self._stale_chains.items() if since <= due]
        sets = [s for s, since in self._stale_sets.items() if since <= due]
        for c in chains:
            del self._stale_chains[c]
        for s in sets:
            del self._stale_sets[s]
        return [f"delete chain ip {self.table} {c}\n" for c in sorted(chains)] + \
            [f"delete set ip {self.table} {s}\n" for s in sorted(sets)]

    # -- helpers -------------------------------------------------------------------------

    def _owned(self) -> tuple[set[str], set[str]]:
        chains: set[str] = set()
        sets: set[str] = set()
        for rules in self.services.values():
            chains.update(rules.chains)
            sets.update(rules.sets)
        return chains, sets

    def _declare(self, services: Iterable[ServiceRules],
                 *, written: Mapping[str, tuple[str, tuple[str, ...]]]) -> tuple[list[str], str]:
        """(commands, the body of a `table` block) that declare the affinity sets and the
        chains of `services` with their rules. A chain `written` as it is now is left alone;
        one written otherwise is flushed first (the commands); every chain is added before
        the block, so that rules may name any of them."""
        t = self.table
        services = list(services)
        body = [f"  set {name} {{\n    type ipv4_addr\n    flags dynamic,timeout\n"
                f"    timeout {timeout}s\n  }}\n"
                for rules in services for name, timeout in rules.sets.items()]
        chains = {name: chain for rules in services for name, chain in rules.chains.items()
                  if written.get(name) != chain}
        commands = []
        for name in chains:
            if name in written:
                commands += [f"add chain ip {t} {name}\n", f"flush chain ip {t} {name}\n"]
        for name, (comment, rules) in chains.items():
            lines = "".join(f"    {r}\n" for r in rules)
            body.append(f"  chain {name} {{\n    comment \"{comment}\"\n{lines}  }}\n")
        return commands, "".join(body)


def _element(key: str, value: str) -> str:
    return f"{key} : {value}" if value else key
