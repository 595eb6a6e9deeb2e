"""A container started under Debian's `conmon`, the small C monitor CRI-O and Podman run per
container, instead of a Python process (`runtime.monitor`): ~1 MB instead of ~10 MB each,
and no interpreter start.

conmon is given the container's dir as its bundle's parent, persist dir and cwd. It forks
away from us (double fork, new session: the container outlives the agent), becomes a child
subreaper, runs `<oci runtime> create` with the container's stdout/stderr as pipes it
reads, and writes:

- `container.log`: the CRI format (`<RFC3339Nano> stdout|stderr F|P <text>`; a read
  without a newline is a `P` record at once, so `logs -f` shows partial lines);
- `conmon.pid`, `container.pid`; one JSON line `{"data": <pid>}` (or -1 and a message)
  on the sync pipe (`_OCI_SYNCPIPE`) once the runtime's create has ended;
- after the container's exit and the last log record: `exit` (the exit code, 128+signal
  when killed) and, on an OOM kill seen through the memory cgroup's eventfd, `oom`.
  `state.exit_record` reads those into exit.json.

Then the agent runs `<oci runtime> start` itself and writes state.json. What conmon does
not offer pinnace's way is left to the Python monitor: containers with stdin or a tty
(attach through a socket that registers a client before any output it should see, and says
the exit code on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time

from pinnace.agent.runtime.interface import RuntimeError_
from pinnace.agent.runtime.monitor import runc_error
from pinnace.agent.runtime.runc.state import Record, RuncState, exited, run, write_json

LOG_LEVEL = "error"


def command(state: RuncState, cid: str, c: Record) -> list[str]:
    assert state.conmon is not None
    d = state.container_dir(cid)
    binary = c.get("oci_runtime") or state.runc
    runtime_args = ["--root", state.oci_root(binary), "--log", str(d / "runc.log"),
                    "--log-format", "json"]
    return [state.conmon, "--api-version", "1", "-c", cid, "-u", cid, "-r", binary,
            "-b", str(d / "bundle"), "-p", str(d / "container.pid"),
            "-P", str(d / "conmon.pid"), "-l", f"k8s-file:{d / 'container.log'}",
            "--persist-dir", str(d), "--full-attach", "--socket-dir-path", str(d),
            "--log-level", LOG_LEVEL,
            # `=`: conmon's option parser would take a bare `--root` for one of its own
            *(f"--runtime-arg={a}" for a in runtime_args)]


async def _read_line(fd: int) -> bytes:
    """One line from the read end of a pipe, without a thread (EOF: b"")."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0))
    try:
        return await reader.readline()
    finally:
        transport.close()


async def launch(state: RuncState, cid: str, c: Record) -> None:
    """conmon creates the container, we start it; RuntimeError_ with the runtime's own
    message when either fails (a container whose start failed exits, recorded so)."""
    d = state.container_dir(cid)
    read_end, write_end = os.pipe()
    try:
        # conmon's own complaints before it detaches (a bad option): a local file
        with open(d / "monitor.err", "ab") as err:  # noqa: ASYNC230
            proc = await asyncio.create_subprocess_exec(
                *command(state, cid, c), stdin=asyncio.subprocess.DEVNULL,
                stdout=err, stderr=err, pass_fds=(write_end,), cwd=str(d),
                # TZ: log timestamps in UTC (conmon writes local time with its offset)
                env={"_OCI_SYNCPIPE": str(write_end), "TZ": "UTC",
                     "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")})
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    line = await _read_line(read_end)
    await proc.wait()  # the first of conmon's forks, gone at once
    try:
        pid = int(json.loads(line)["data"]) if line.strip() else -1
    except (ValueError, KeyError, TypeError):
        pid = -1
    if pid <= 0:
        raise RuntimeError_(f"start container: {runc_error(str(d / 'runc.log'))}")
    started_at = time.time()  # before: a quick container may be gone when start returns
    try:
        await run(*state.runc_command("start", cid, container=cid))
    except RuntimeError_:
        (d / "start_failed").touch()
        await run(*state.runc_command("kill", cid, "KILL", container=cid), check=False)
        for _ in range(100):  # its exit recorded before we answer, as the Python monitor
            if exited(d):
                break
            await asyncio.sleep(0.02)
        raise RuntimeError_(f"start container: {runc_error(str(d / 'runc.log'))}") from None
    monitor_pid = -1
    with contextlib.suppress(OSError, ValueError):
        monitor_pid = int((d / "conmon.pid").read_text().strip())
    write_json(d / "state.json", {"pid": pid, "monitor_pid": monitor_pid,
                                  "started_at": started_at})
