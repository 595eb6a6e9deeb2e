"""Probe result counting (the kubelet's worker.go thresholds) and port resolution."""

from __future__ import annotations

import pytest

from pinnace.agent.probes import ProbeKind, ProbePortError, ThresholdCounter, probe_port

S, F = True, False


def feed(counter: ThresholdCounter, results: list[bool]) -> list[bool | None]:
    out = []
    for r in results:
        counter.observe(r)
        out.append(counter.value)
    return out


def test_initial_values() -> None:
    assert ThresholdCounter(ProbeKind.READINESS).value is False
    assert ThresholdCounter(ProbeKind.LIVENESS).value is True
    assert ThresholdCounter(ProbeKind.STARTUP).value is None


def test_readiness_needs_success_threshold_in_a_row() -> None:
    c = ThresholdCounter(ProbeKind.READINESS, success_threshold=2, failure_threshold=3)
    assert feed(c, [S, F, S, S]) == [F, F, F, S]
    # failures below the threshold leave it ready; a success in between resets the run
    assert feed(c, [F, F, S, F, F, F]) == [S, S, S, S, S, F]
    assert not c.on_hold  # readiness keeps probing


def test_readiness_threshold_one_flips_each_time() -> None:
    c = ThresholdCounter(ProbeKind.READINESS, success_threshold=1, failure_threshold=1)
    assert feed(c, [S, F, S]) == [S, F, S]


def test_observe_reports_changes_only() -> None:
    c = ThresholdCounter(ProbeKind.READINESS, failure_threshold=1)
    assert [c.observe(r) for r in [F, S, S, F, F]] == [False, True, False, True, False]


def test_liveness_fails_after_threshold_then_holds() -> None:
    c = ThresholdCounter(ProbeKind.LIVENESS, failure_threshold=3)
    assert feed(c, [F, F, S, F, F]) == [S, S, S, S, S]
    assert not c.on_hold
    assert c.observe(F) is True
    assert c.value is False and c.on_hold and c.run == 0


def test_startup_succeeds_at_first_success_and_fails_at_threshold() -> None:
    c = ThresholdCounter(ProbeKind.STARTUP, failure_threshold=2)
    assert feed(c, [F, S]) == [None, S]
    c = ThresholdCounter(ProbeKind.STARTUP, failure_threshold=2)
    assert feed(c, [F, F]) == [None, F]
    assert c.on_hold


def test_probe_port() -> None:
    container = {"ports": [{"name": "http", "containerPort": 8080}]}
    assert probe_port(80, container) == 80
    assert probe_port("http", container) == 8080
    assert probe_port("9090", container) == 9090
    with pytest.raises(ProbePortError, match=r'^strconv.Atoi: parsing "web": invalid syntax$'):
        probe_port("web", container)
    with pytest.raises(ProbePortError, match=r"^invalid port number: 0$"):
        probe_port(0, container)
    with pytest.raises(ProbePortError, match=r"^invalid port number: 70000$"):
        probe_port(70000, container)
