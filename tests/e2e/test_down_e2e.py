"""`pinnace down` says what it stopped: the running `pinnace up` by its pid (also when
that `up` ran simulated nodes and so set nothing up on the host), the containers of a real
node, and "nothing" only when nothing of the data dir ran."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.e2e.cluster import Cluster
from tests.e2e.real_node import pod, real_cluster, run_pod, wait_for


def down(data_dir: Path) -> str:
    result = subprocess.run([sys.executable, "-m", "pinnace.cli", "down", "--data-dir",
                             str(data_dir)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_down_stops_a_running_up_and_names_its_pid(tmp_path: Path) -> None:
    c = Cluster(data_dir=tmp_path / "data", home=tmp_path / "home")
    c.home.mkdir()
    c.start(extra=("--fake-nodes", "1"))
    try:
        up = c.proc
        assert up is not None and up.poll() is None
        out = down(c.data_dir)
        assert out.strip() == f"pinnace: stopped pinnace up (pid {up.pid})"
        assert up.wait(5) == 0  # it was stopped, cleanly, before `down` answered
        assert not (c.data_dir / "pinnace.pid").exists()
        # and now nothing of the data dir runs
        assert down(c.data_dir).strip() == f"pinnace: nothing of {c.data_dir} runs on this host"
    finally:
        c.kill()


def test_down_on_an_empty_data_dir_stops_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    assert down(data).strip() == f"pinnace: nothing of {data} runs on this host"


def test_down_ignores_a_stale_pid_file(tmp_path: Path) -> None:
    # the pid of a process that is not `pinnace up` for this data dir (our own test
    # process): down must neither signal it nor claim to have stopped it
    data = tmp_path / "data"
    data.mkdir()
    (data / "pinnace.pid").write_text(f"{os.getpid()}\n")
    assert down(data).strip() == f"pinnace: nothing of {data} runs on this host"


def _sleeper(name: str) -> dict:
    return {"name": name, "image": "busybox:1.28", "command": ["sleep", "3600"]}


def _all_running(c: Cluster) -> bool:
    for name in ("one", "two"):
        statuses = (pod(c, name).get("status") or {}).get("containerStatuses") or []
        if not statuses or not all("running" in (s.get("state") or {}) for s in statuses):
            return False
    return True


def test_down_counts_the_containers_of_a_real_node(tmp_path: Path, local_registry) -> None:
    clusters = real_cluster(tmp_path, local_registry.url)
    c = next(clusters)
    try:
        run_pod(c, "one", [_sleeper("a")])
        run_pod(c, "two", [_sleeper("b"), _sleeper("c")])
        wait_for(lambda: _all_running(c), timeout=90)
        # `up` stopped on its own leaves its containers running, as a kubelet does
        c.stop()
        assert c.down().strip() == f"pinnace: stopped 3 containers of {c.data_dir}"
        # the next `up` runs the pods again; `down` stops it and them
        c.restart()
        wait_for(lambda: _all_running(c), timeout=90)
        up = c.proc
        assert up is not None
        assert c.down().strip() == f"pinnace: stopped pinnace up (pid {up.pid}) and 3 containers"
        assert up.wait(5) == 0
    finally:
        clusters.close()  # stops, `pinnace down`, nothing left on the host
