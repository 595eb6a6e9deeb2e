"""The per-container monitor: runs `runc create` + `runc start`, owns the container's stdio,
reaps it, and records how it ended, so a container outlives the agent that started it.

Run as a script (stdlib only, so it starts fast): `python monitor.py DIR RUNC ROOT ID
[stdin] [stdin-once] [tty]`, where DIR is the container's state dir holding
`bundle/config.json`. It forks once
(the agent reaps the parent at once; the monitor itself is nobody's child but init's),
becomes a child subreaper so the container's init is reparented to it when `runc create`
exits, and then:

- pumps the container's stdout/stderr (pipes that only the container holds) into
  `DIR/container.log` in the CRI format `<RFC3339Nano> <stream> F|P <text>`;
- writes `DIR/state.json` {pid, monitor_pid, started_at} once the container is started,
  and reports `ok` (or `error <message>`) as one line on its stdout to the agent;
- on the container's exit writes `DIR/exit.json` {exit_code, finished_at, oom_killed}
  atomically (the memory cgroup's `oom_kill` counter tells an OOM kill apart).

Containers with `stdin` or `tty` can be attached to (`kubectl attach`, `kubectl run -i`):

- `stdin`: the container's stdin is a pipe whose write end the monitor keeps; without it,
  stdin is /dev/null. `stdin-once`: the pipe is closed when the first attached client
  with stdin ends its input or goes away (as containerd does, not with a tty).
- `tty`: `runc create --console-socket` (the spec has `process.terminal`): runc sends the
  pty master over that socket (SCM_RIGHTS); the monitor pumps it into the log as stdout
  and writes attached clients' stdin and window sizes into it. runc's own stdio are
  /dev/null then, never pipes (runc init would hold them).
- `DIR/attach.sock` (mode 0600: root only), served from just before `ok` until the
  container has exited: a client speaks frames `<kind:1><length:4 big-endian><data>`;
  it sends HELLO (b"1" when it brings stdin), STDIN data, STDIN_CLOSE, RESIZE (>HH width,
  height); it receives READY once it is registered (every chunk written after READY
  reaches it: a client connected meanwhile sits in the listen backlog until the accept
  thread takes it), STDOUT/STDERR chunks as they are written (besides the log), and
  EXIT (JSON {exit_code}) before the monitor closes it. Socket names are relative to DIR
  (the monitor's cwd then): a state dir's path may exceed the 108 bytes of a socket name.
Plain containers (neither flag) take none of these paths: no socket, no extra thread.
"""

from __future__ import annotations

import ctypes
import datetime
import json
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time

TYPE_CHECKING = False  # typing itself costs the monitor's start a few ms
if TYPE_CHECKING:
    import socket

PR_SET_CHILD_SUBREAPER = 36
# attach socket frame kinds (client → monitor: HELLO, STDIN, STDIN_CLOSE, RESIZE;
# monitor → client: READY, STDOUT, STDERR, EXIT); the output ones are the exec channel numbers
STDIN, STDOUT, STDERR, EXIT, RESIZE, HELLO, STDIN_CLOSE, READY = 0, 1, 2, 3, 4, 5, 6, 7
ATTACH_SOCKET = "attach.sock"
CONSOLE_SOCKET = "console.sock"


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

    def pump(self, fd: int, stream: str, tee: _Attach | None = None) -> None:
        tag = stream.encode()
        channel = STDOUT if stream == "stdout" else STDERR
        pending = b""
        with os.fdopen(fd, "rb", buffering=0) as src:
            while True:
                # text without a newline yet (`printf debug`) is logged as a partial record
                # once the writer pauses, so readers see it while the container runs
                if pending and not select.select([src], [], [], 0.2)[0]:
                    self._write(tag, b"P", [pending])
                    pending = b""
                    continue
                try:
                    chunk = src.read(65536)
                except OSError:  # EIO from a pty master: the container's side is closed
                    chunk = b""
                if not chunk:
                    break
                if tee is not None:
                    tee.broadcast(channel, chunk)
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


def runc_error(log_path: str) -> str:
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


def oom_killed(cgroups_path: str) -> bool:
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


class _Attach:
    """The attach socket's server: clients get the output as it is pumped and feed the
    container's stdin (a pipe, or the pty master with a tty). Imports what only attach
    needs when first used, so plain containers' monitors start as fast as before."""

    def __init__(self, *, stdin_fd: int | None, master: int | None, stdin_once: bool
                 ) -> None:
        import socket  # 1.5 ms: only for containers that can be attached to

        self._socket = socket
        self._stdin_fd = stdin_fd  # the pipe's write end, or the pty master (tty)
        self._master = master
        self._stdin_once = stdin_once and master is None  # containerd: not with a tty
        self._clients: set[socket.socket] = set()
        self._lock = threading.Lock()  # clients, stdin_fd
        self._send_lock = threading.Lock()  # one frame at a time from both pumps
        self._closed = False
        self._listener: socket.socket | None = None

    def serve(self) -> None:
        """Listen on ATTACH_SOCKET (in the cwd: the state dir), readable by root only."""
        sock = self._socket.socket(self._socket.AF_UNIX, self._socket.SOCK_STREAM)
        old = os.umask(0o077)
        try:
            sock.bind(ATTACH_SOCKET)
        finally:
            os.umask(old)
        sock.listen(8)
        self._listener = sock
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            # a client that stops reading is dropped after 5 s rather than stall the log
            conn.setsockopt(self._socket.SOL_SOCKET, self._socket.SO_SNDTIMEO,
                            struct.pack("ll", 5, 0))
            with self._send_lock:  # no broadcast between the add and READY
                with self._lock:
                    if self._closed:
                        conn.close()
                        continue
                    self._clients.add(conn)
                try:
                    conn.sendall(struct.pack(">BI", READY, 0))
                except OSError:
                    pass  # gone already: the client's thread drops it
            threading.Thread(target=self._serve_client, args=(conn,), daemon=True).start()

    def _serve_client(self, conn: socket.socket) -> None:
        has_stdin = False
        try:
            while (head := _recv_exact(conn, 5)) is not None:
                kind, size = struct.unpack(">BI", head)
                data = _recv_exact(conn, size) if size else b""
                if data is None:
                    break
                if kind == HELLO:
                    has_stdin = data == b"1"
                elif kind == STDIN and has_stdin:
                    self._write_stdin(data)
                elif kind == STDIN_CLOSE and has_stdin:
                    self._end_stdin()
                elif kind == RESIZE and self._master is not None and len(data) == 4:
                    self._resize(*struct.unpack(">HH", data))
        except OSError:
            pass
        finally:
            self._drop(conn)
            if has_stdin:
                self._end_stdin()

    def _write_stdin(self, data: bytes) -> None:
        fd = self._stdin_fd
        view = memoryview(data)
        while view and fd is not None:
            try:
                view = view[os.write(fd, view):]
            except OSError:  # the container is gone (EPIPE) or stdin was closed
                return

    def _end_stdin(self) -> None:
        if not self._stdin_once:
            return
        with self._lock:
            fd, self._stdin_fd = self._stdin_fd, None
        if fd is not None:
            os.close(fd)

    def _resize(self, width: int, height: int) -> None:
        import fcntl
        import termios

        if width and height and self._master is not None:
            try:
                fcntl.ioctl(self._master, termios.TIOCSWINSZ,
                            struct.pack("HHHH", height, width, 0, 0))
            except OSError:
                pass

    def broadcast(self, kind: int, data: bytes) -> None:
        if not self._clients:
            return
        frame = struct.pack(">BI", kind, len(data)) + data
        with self._send_lock:
            with self._lock:
                clients = list(self._clients)
            for conn in clients:
                try:
                    conn.sendall(frame)
                except OSError:
                    self._drop(conn)

    def _drop(self, conn: socket.socket) -> None:
        with self._lock:
            if conn not in self._clients:
                return
            self._clients.discard(conn)
        try:
            conn.shutdown(self._socket.SHUT_RDWR)
        except OSError:
            pass
        conn.close()

    def close(self, exit_code: int) -> None:
        """The container has exited (its output all sent): say so and hang up."""
        with self._lock:
            self._closed = True
        if self._listener is not None:
            try:
                os.unlink(ATTACH_SOCKET)
            except OSError:
                pass
            try:
                self._listener.shutdown(self._socket.SHUT_RDWR)  # wakes accept()
            except OSError:
                pass
            self._listener.close()
        self.broadcast(EXIT, json.dumps({"exit_code": exit_code}).encode())
        with self._lock:
            clients = list(self._clients)
        for conn in clients:
            self._drop(conn)


def _recv_exact(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data



def main(argv: list[str]) -> int:
    state_dir, runc, root, cid, *flags = argv
    tty, stdin = "tty" in flags, "stdin" in flags
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
    pid_file = os.path.join(state_dir, "container.pid")
    create = [*base, "create", "--bundle", os.path.join(state_dir, "bundle"), "--pid-file",
              pid_file]
    attach: _Attach | None = None
    pumps: list[threading.Thread] = []
    if tty:
        os.chdir(state_dir)  # socket names relative to it (see the module docstring)
        created, master = _create_with_console(create, cid)
        if master is not None:
            attach = _Attach(stdin_fd=master if stdin else None, master=master,
                             stdin_once="stdin-once" in flags)
            pumps = [threading.Thread(target=log.pump, args=(os.dup(master), "stdout", attach),
                                      daemon=True)]
    else:
        in_r, in_w = os.pipe() if stdin else (None, None)
        if stdin:
            os.chdir(state_dir)
            attach = _Attach(stdin_fd=in_w, master=None, stdin_once="stdin-once" in flags)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        pumps = [threading.Thread(target=log.pump, args=(out_r, "stdout", attach), daemon=True),
                 threading.Thread(target=log.pump, args=(err_r, "stderr", attach), daemon=True)]
        for t in pumps:
            t.start()
        created = subprocess.run(
            [*create, cid], stdin=in_r if in_r is not None else subprocess.DEVNULL,
            stdout=out_w, stderr=err_w).returncode
        os.close(out_w)  # the container holds its own copies; EOF comes when it is gone
        os.close(err_w)
        if in_r is not None:
            os.close(in_r)
    if created != 0:
        print("error", runc_error(runc_log), flush=True)
        return 1
    if tty:
        for t in pumps:
            t.start()
    with open(pid_file) as f:
        pid = int(f.read().strip())
    started = subprocess.run([*base, "start", cid], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    if started != 0:
        subprocess.run([*base, "kill", cid, "KILL"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        print("error", runc_error(runc_log), flush=True)
    else:
        if attach is not None:
            attach.serve()  # before `ok`: an attach right after the start finds it
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
                 "oom_killed": oom_killed(cgroups_path),
                 "start_failed": started != 0})
    if attach is not None:
        attach.close(exit_code)
    return 0


def _create_with_console(create: list[str], cid: str) -> tuple[int, int | None]:
    """`runc create --console-socket`: its exit code and the pty master it sent us."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(CONSOLE_SOCKET)
        listener.listen(1)
        # runc dials it from the bundle dir: an absolute name, short whatever DIR's length
        dirfd = os.open(".", os.O_PATH | os.O_DIRECTORY)
        try:
            # runc's stdio: /dev/null, never pipes (its init would hold them open)
            created = subprocess.run(
                [*create, "--console-socket",
                 f"/proc/{os.getpid()}/fd/{dirfd}/{CONSOLE_SOCKET}", cid],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL).returncode
            if created != 0:
                return created, None
            listener.settimeout(5.0)  # runc connected already; this does not wait
            try:
                conn, _ = listener.accept()
                with conn:
                    _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
            except OSError:
                fds = []
        finally:
            os.close(dirfd)
            os.unlink(CONSOLE_SOCKET)
    if not fds:
        return 1, None
    return 0, fds[0]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
