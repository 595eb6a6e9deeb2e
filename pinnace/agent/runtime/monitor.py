"""The per-container monitor: runs `runc create` + `runc start`, owns the container's stdio,
reaps it, and records how it ended, so a container outlives the agent that started it.

Run as a script (stdlib only, so it starts fast): `python monitor.py DIR RUNC ROOT ID`,
where DIR is the container's state dir holding `bundle/config.json`. It forks once
(the agent reaps the parent at once; the monitor itself is nobody's child but init's),
becomes a child subreaper so the container's init is reparented to it when `runc create`
exits, and then:

- pumps the container's stdout/stderr (pipes that only the container holds) into
  `DIR/container.log` in the CRI format `<RFC3339Nano> <stream> F|P <text>`;
- writes `DIR/state.json` {pid, monitor_pid, started_at} once the container is started,
  and reports `ok` (or `error <message>`) as one line on its stdout to the agent;
- on the container's exit writes `DIR/exit.json` {exit_code, finished_at, oom_killed}
  atomically (the memory cgroup's `oom_kill` counter tells an OOM kill apart).
"""

from __future__ import annotations

import ctypes
import datetime
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time

PR_SET_CHILD_SUBREAPER = 36


def _timestamp() -> str:
    ns = time.time_ns()
    dt = datetime.datetime.fromtimestamp(ns // 1_000_000_000, datetime.UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ns % 1_000_000_000:09d}Z"


def _write_json(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


class _Log:
    def __init__(self, path: str) -> None:
        self._file = open(path, "ab", buffering=0)
        self._lock = threading.Lock()

    def pump(self, fd: int, stream: str) -> None:
        tag = stream.encode()
        pending = b""
        with os.fdopen(fd, "rb", buffering=0) as src:
            while True:
                # text without a newline yet (`printf debug`) is logged as a partial record
                # once the writer pauses, so readers see it while the container runs
                if pending and not select.select([src], [], [], 0.2)[0]:
                    self._write(tag, b"P", [pending])
                    pending = b""
                    continue
                chunk = src.read(65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                self._write(tag, b"F", lines)
                if len(pending) >= 16384:  # a long line: flush it as a partial record
                    self._write(tag, b"P", [pending])
                    pending = b""
        if pending:
            self._write(tag, b"F", [pending])

    def _write(self, tag: bytes, kind: bytes, lines: list[bytes]) -> None:
        if not lines:
            return
        ts = _timestamp().encode()
        data = b"".join(b"%s %s %s %s\n" % (ts, tag, kind, line) for line in lines)
        with self._lock:
            self._file.write(data)


def _runc_error(log_path: str) -> str:
    """The last error runc logged (its --log file is JSON lines)."""
    message = "runc failed"
    try:
        with open(log_path) as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("level") in ("error", "fatal"):
                    message = entry.get("msg", message)
    except OSError:
        pass
    return message


def _oom_killed(cgroups_path: str) -> bool:
    path = f"/sys/fs/cgroup/memory{cgroups_path}/memory.oom_control"
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
    except (OSError, ValueError):
        pass
    try:  # cgroup v2
        with open(f"/sys/fs/cgroup{cgroups_path}/memory.events") as f:
            return any(line.startswith("oom_kill ") and line.split()[1] != "0" for line in f)
    except OSError:
        return False


def main(argv: list[str]) -> int:
    state_dir, runc, root, cid = argv
    if os.fork():
        os._exit(0)
    os.setsid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    with open(os.path.join(state_dir, "bundle", "config.json")) as f:
        cgroups_path = json.load(f)["linux"]["cgroupsPath"]
    runc_log = os.path.join(state_dir, "runc.log")
    base = [runc, "--root", root, "--log", runc_log, "--log-format", "json"]
    log = _Log(os.path.join(state_dir, "container.log"))
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pumps = [threading.Thread(target=log.pump, args=(out_r, "stdout"), daemon=True),
             threading.Thread(target=log.pump, args=(err_r, "stderr"), daemon=True)]
    for t in pumps:
        t.start()
    pid_file = os.path.join(state_dir, "container.pid")
    created = subprocess.run(
        [*base, "create", "--bundle", os.path.join(state_dir, "bundle"), "--pid-file",
         pid_file, cid], stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w).returncode
    os.close(out_w)  # the container holds its own copies; EOF comes when it is gone
    os.close(err_w)
    if created != 0:
        print("error", _runc_error(runc_log), flush=True)
        return 1
    with open(pid_file) as f:
        pid = int(f.read().strip())
    started = subprocess.run([*base, "start", cid], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    if started != 0:
        subprocess.run([*base, "kill", cid, "KILL"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        print("error", _runc_error(runc_log), flush=True)
    else:
        _write_json(os.path.join(state_dir, "state.json"),
                    {"pid": pid, "monitor_pid": os.getpid(), "started_at": time.time()})
        print("ok", pid, flush=True)
    # detach from the agent: its pipe closes, and a dead agent cannot SIGPIPE us
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    while True:
        try:
            reaped, status = os.waitpid(-1, 0)
        except ChildProcessError:
            status = 0xFF00  # lost: report 255
            break
        if reaped == pid:
            break
    code = os.waitstatus_to_exitcode(status)
    exit_code = 128 - code if code < 0 else code
    for t in pumps:
        t.join(timeout=2.0)
    _write_json(os.path.join(state_dir, "exit.json"),
                {"exit_code": exit_code, "finished_at": time.time(),
                 "oom_killed": _oom_killed(cgroups_path),
                 "start_failed": started != 0})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
