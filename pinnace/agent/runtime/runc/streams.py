"""Streams of runc containers: exec (`runc exec` in the foreground), attach (to the
container's own process, through its monitor) and logs (the monitor's CRI-format file).

Every session has the `ExecSession` shape: `read` gives (channel, bytes) chunks in order
and None at the end, `write_stdin`/`close_stdin`/`resize` reach the process, `wait` gives
the exit code and `kill` ends (exec) or detaches (attach). Which session attach gives is
fixed when the container was created: one with stdin or a tty has a monitor serving an
attach socket (`RuncAttach`); one without has only its log, followed (`LogAttach`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import signal
import struct
import subprocess
import termios
import tty as ttymod
from pathlib import Path

from pinnace.agent.runtime import monitor
from pinnace.agent.runtime.interface import RuntimeError_
from pinnace.agent.runtime.runc.state import (
    RuncState,
    exit_record,
    exited,
    read_json,
    write_json,
)

# how long an attach waits for the monitor to register it (its accept thread's turn)
READY_TIMEOUT = 2.0

class Streams:
    """The streaming calls of the runtime over one data dir's containers."""

    def __init__(self, state: RuncState) -> None:
        self._state = state

    def log_path(self, container_id: str) -> Path:
        """The container's CRI-format log file."""
        return self._state.container_dir(container_id) / "container.log"

    def process_file(self, container_id: str, cmd: list[str], *, tty: bool) -> Path:
        """The exec'd process as a process.json: the container's own (user and groups,
        env, cwd, capabilities, rlimits, no_new_privs) running `cmd`. Given to `exec
        --process`, so runc and crun alike run it as the container's process runs (crun's
        bare `exec` would run it as root)."""
        d = self._state.container_dir(container_id)
        spec = read_json(d / "bundle" / "config.json")
        if spec is None:
            raise RuntimeError_(f"container {container_id} not found")
        path = d / f"exec-{secrets.token_hex(8)}.json"
        write_json(path, {**spec["process"], "args": cmd, "terminal": tty})
        return path

    async def exec_sync(self, container_id: str, cmd: list[str], time_limit: float
                        ) -> tuple[int, bytes, bytes]:
        process = self.process_file(container_id, cmd, tty=False)
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._state.runc_command("exec", "--process", str(process), container_id,
                                          container=container_id),
                stdin=subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            try:
                out, err = await asyncio.wait_for(proc.communicate(), time_limit or None)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise RuntimeError_(f"exec in {container_id} timed out") from None
        finally:
            process.unlink(missing_ok=True)
        return proc.returncode or 0, out, err

    async def container_logs(self, container_id: str) -> bytes:
        try:
            return self.log_path(container_id).read_bytes()
        except FileNotFoundError:
            raise RuntimeError_(f"container {container_id} not found") from None

    def _running_dir(self, container_id: str) -> Path:
        if not self._state.is_running(container_id):
            raise RuntimeError_(f"container {container_id} is not running")
        return self._state.container_dir(container_id)

    async def exec(self, container_id: str, cmd: list[str], *, stdin: bool, tty: bool
                   ) -> RuncExec:
        """Start `cmd` in the running container with its streams open (see `RuncExec`)."""
        d = self._running_dir(container_id)
        if not cmd:
            raise RuntimeError_("exec needs a command")
        return await RuncExec.start(
            self._state.runc_command(container=container_id), container_id,
            self.process_file(container_id, cmd, tty=tty),
            pid_file=d / f"exec-{secrets.token_hex(8)}.pid", stdin=stdin, tty=tty)

    async def attach(self, container_id: str, *, stdin: bool) -> RuncAttach | LogAttach:
        """Attach to the running container's process: through its monitor's attach socket
        when it has stdin or a tty (`RuncAttach`), else its output as logged (`LogAttach`)."""
        d = self._running_dir(container_id)
        c = self._state.record(container_id) or {}
        if c.get("stdin") or c.get("tty"):
            try:
                return await RuncAttach.connect(d, stdin=stdin)
            except OSError:
                if not exited(d):
                    raise RuntimeError_(f"container {container_id}: its attach socket "
                                        "does not answer") from None
        return LogAttach(d)


# -- exec sessions (`runc exec` in the foreground) ------------------------------------------


class _QueuedOutput:
    """Output chunks (channel, bytes) a reader takes in order; None marks the end and stays
    there for later reads. Shared by exec and attach sessions."""

    _output: asyncio.Queue[tuple[int, bytes] | None]

    async def read(self) -> tuple[int, bytes] | None:
        item = await self._output.get()
        if item is None:
            self._output.put_nowait(None)
        return item


class RuncExec(_QueuedOutput):
    """One `runc exec` in the foreground: runc exits with the command's exit code.

    Without a tty the command's stdio are pipes to runc. With one, runc needs a terminal
    of its own to relay the container's pty to (`--console-socket` would make runc detach,
    leaving the exit code to whoever reaps the process), so runc gets the slave side of a
    pty made here, set raw, and the agent holds the master. Resizing sets the master's
    window size and sends runc SIGWINCH, on which runc copies that size to the container's
    pty. runc writes the exec'd process's host pid to `pid_file`, so `kill` reaches the
    command itself (runc cannot forward SIGKILL)."""

    def __init__(self, proc: asyncio.subprocess.Process, pid_file: Path,
                 master: int | None, process: Path) -> None:
        self._proc = proc
        self._pid_file = pid_file
        self._process = process
        self._master = master
        self._output: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self._open_streams = 1 if master is not None else 2
        self._readers: list[asyncio.Task[None]] = []
        self._winch: asyncio.TimerHandle | None = None
        self._code: int | None = None

    @classmethod
    async def start(cls, runc: list[str], cid: str, process: Path, *, pid_file: Path,
                    stdin: bool, tty: bool) -> RuncExec:
        """`process`: the process.json to run (its `terminal` says whether `tty`)."""
        args = [*runc, "exec", "--pid-file", str(pid_file), "--process", str(process), cid]
        if not tty:
            proc = await asyncio.create_subprocess_exec(
                *args, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
            session = cls(proc, pid_file, None, process)
            assert proc.stdout is not None and proc.stderr is not None
            session._readers = [asyncio.create_task(session._pump(proc.stdout, 1)),
                                 asyncio.create_task(session._pump(proc.stderr, 2))]
            return session
        master, slave = os.openpty()
        try:
            ttymod.setraw(slave)  # runc relays bytes; our side must not echo or translate
            _set_winsize(master, 80, 24)
            proc = await asyncio.create_subprocess_exec(
                *args, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
        except BaseException:
            os.close(master)
            with contextlib.suppress(OSError):
                os.unlink(process)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        session = cls(proc, pid_file, master, process)
        asyncio.get_running_loop().add_reader(master, session._read_master)
        return session

    async def _pump(self, stream: asyncio.StreamReader, channel: int) -> None:
        while chunk := await stream.read(65536):
            await self._output.put((channel, chunk))
        self._stream_done()

    def _stream_done(self) -> None:
        self._open_streams -= 1
        if self._open_streams == 0:
            self._output.put_nowait(None)

    def _read_master(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: runc, the last holder of the slave, is gone
            data = b""
        if data:
            self._output.put_nowait((1, data))
            return
        asyncio.get_running_loop().remove_reader(self._master)
        self._stream_done()

    async def write_stdin(self, data: bytes) -> None:
        if self._master is not None:
            view = memoryview(data)
            while view:
                try:
                    view = view[os.write(self._master, view):]
                except BlockingIOError:
                    await asyncio.sleep(0.01)
            return
        if self._proc.stdin is None or self._proc.stdin.is_closing():
            return
        with contextlib.suppress(ConnectionError):
            self._proc.stdin.write(data)
            await self._proc.stdin.drain()

    async def close_stdin(self) -> None:
        if self._master is not None:
            await self.write_stdin(b"\x04")  # a terminal's end of input: ^D
        elif self._proc.stdin is not None:
            self._proc.stdin.close()

    def resize(self, width: int, height: int) -> None:
        if self._master is None or width <= 0 or height <= 0:
            return
        _set_winsize(self._master, width, height)
        self._signal_winch()
        # runc installs its SIGWINCH handler after it starts: say it again a little later
        if self._winch is not None:
            self._winch.cancel()
        self._winch = asyncio.get_running_loop().call_later(0.3, self._signal_winch)

    def _signal_winch(self) -> None:
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGWINCH)

    async def wait(self) -> int:
        if self._code is None:
            code = await self._proc.wait()
            self._code = 128 - code if code < 0 else code
            await self._release()
        return self._code

    async def kill(self) -> None:
        """End the command (the client went away)."""
        if self._proc.returncode is None:
            try:
                pid = int(self._pid_file.read_text().strip())
                os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError):
                pass
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
        await self.wait()

    async def _release(self) -> None:
        if self._winch is not None:
            self._winch.cancel()
        for task in self._readers:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), 2.0)
            task.cancel()
        if self._master is not None:
            asyncio.get_running_loop().remove_reader(self._master)
            os.close(self._master)
            self._master = None
        self._pid_file.unlink(missing_ok=True)
        self._process.unlink(missing_ok=True)


def _set_winsize(fd: int, width: int, height: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


# -- attach sessions (a client of the monitor's attach socket, or the log followed) ---------


class RuncAttach(_QueuedOutput):
    """Attached to a container with stdin or a tty through its monitor's attach socket
    (frames described in `monitor`): output chunks as the container writes them, stdin and
    window sizes passed on. `wait` gives the exit code once the container has exited (0
    when the attach ended first); `kill` detaches and leaves the container running."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 stdin: bool) -> None:
        self._reader = reader
        self._writer = writer
        self._stdin = stdin
        self._output: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self._code = 0
        self._receiver: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    @classmethod
    async def connect(cls, d: Path, *, stdin: bool) -> RuncAttach:
        # by a dir fd: the state dir's path may be longer than a socket name may be
        dirfd = os.open(d, os.O_PATH | os.O_DIRECTORY)
        try:
            reader, writer = await asyncio.open_unix_connection(
                f"/proc/self/fd/{dirfd}/{monitor.ATTACH_SOCKET}")
        finally:
            os.close(dirfd)
        session = cls(reader, writer, stdin)
        session._send(monitor.HELLO, b"1" if stdin else b"0")
        session._receiver = asyncio.create_task(session._receive())
        # returned once the monitor has registered us, so no output written after this
        # call returns is missed; a monitor that never says READY (one older than the
        # frame) is waited for briefly, then taken as it is
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(session._ready.wait(), READY_TIMEOUT)
        return session

    def _send(self, kind: int, data: bytes) -> None:
        if not self._writer.is_closing():
            self._writer.write(struct.pack(">BI", kind, len(data)) + data)

    async def _receive(self) -> None:
        try:
            while True:
                kind, size = struct.unpack(">BI", await self._reader.readexactly(5))
                data = await self._reader.readexactly(size) if size else b""
                if kind == monitor.READY:
                    self._ready.set()
                    continue
                if kind == monitor.EXIT:
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        self._code = int(json.loads(data)["exit_code"])
                    break
                if kind in (monitor.STDOUT, monitor.STDERR):
                    await self._output.put((kind, data))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._ready.set()  # ended before READY: nothing more to wait for
            self._output.put_nowait(None)

    async def write_stdin(self, data: bytes) -> None:
        if self._stdin and data:
            self._send(monitor.STDIN, data)
            with contextlib.suppress(ConnectionError):
                await self._writer.drain()

    async def close_stdin(self) -> None:
        if self._stdin:
            self._send(monitor.STDIN_CLOSE, b"")

    def resize(self, width: int, height: int) -> None:
        if 0 < width < 65536 and 0 < height < 65536:
            self._send(monitor.RESIZE, struct.pack(">HH", width, height))

    async def wait(self) -> int:
        if self._receiver is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._receiver)
        return self._code

    async def kill(self) -> None:
        """Detach (the client went away); the container runs on."""
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()
        if self._receiver is not None:
            self._receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._receiver


class LogAttach:
    """Attached to a container without stdin or tty (no attach socket): its output as the
    monitor logs it, from the log's end at the time of attaching until the container has
    exited (either monitor records the exit after the last log record)."""

    def __init__(self, d: Path) -> None:
        self._d = d
        self._log = open(d / "container.log", "rb")  # closed by read (at the end) or kill
        self._log.seek(0, os.SEEK_END)
        self._partial = b""
        self._ready: list[tuple[int, bytes]] = []
        self._done = False

    async def read(self) -> tuple[int, bytes] | None:
        while not self._ready and not self._done:
            ended = exited(self._d) or not self._d.exists()
            data = self._log.read()
            if data:
                *records, self._partial = (self._partial + data).split(b"\n")
                for record in records:
                    parts = record.split(b" ", 3)  # <time> <stream> F|P <text>
                    if len(parts) == 4:
                        channel = monitor.STDERR if parts[1] == b"stderr" else monitor.STDOUT
                        self._ready.append(
                            (channel, parts[3] + (b"\n" if parts[2] == b"F" else b"")))
            elif ended:
                self._done = True
                self._log.close()
            else:
                await asyncio.sleep(0.1)
        return self._ready.pop(0) if self._ready else None

    async def write_stdin(self, data: bytes) -> None:
        pass  # the container's stdin is /dev/null

    async def close_stdin(self) -> None:
        pass

    def resize(self, width: int, height: int) -> None:
        pass

    async def wait(self) -> int:
        exit_ = exit_record(self._d)
        return int(exit_["exit_code"]) if exit_ is not None else 0

    async def kill(self) -> None:
        self._done = True
        self._log.close()
