"""What `pinnace down` says it stopped (the wording; the e2e tests run the command)."""

from __future__ import annotations

from pathlib import Path

from pinnace.cli import down_report

DIR = Path("/var/lib/pinnace")


def test_up_and_its_containers() -> None:
    assert down_report(DIR, 42, 3) == "stopped pinnace up (pid 42) and 3 containers"
    assert down_report(DIR, 42, 1) == "stopped pinnace up (pid 42) and 1 container"


def test_up_without_containers() -> None:
    # simulated nodes set up no runtime (None); a real node may have had no pods (0)
    assert down_report(DIR, 42, None) == "stopped pinnace up (pid 42)"
    assert down_report(DIR, 42, 0) == "stopped pinnace up (pid 42)"


def test_containers_without_up() -> None:
    assert down_report(DIR, None, 2) == "stopped 2 containers of /var/lib/pinnace"


def test_nothing_ran() -> None:
    for containers in (None, 0):
        assert down_report(DIR, None, containers) == \
            "nothing of /var/lib/pinnace runs on this host"
