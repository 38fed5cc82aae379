"""The server of ``mmrag warm``: a process that imports what mmrag's commands need once, then runs
each command it is handed in a fork of itself, so that a command pays neither Python's imports of
Dagster, Great Expectations, LanceDB... (~39% of a one-file ``mmrag index``, py-spy) nor their
start-up again. The client side and what must match: ``warm_client.py``.

Forking after the imports is safe for the reasons ``preload.py`` gives (imported first here too): the
server has started nothing (no LanceDB or Lance call, no model session, no open connection; no
thread but LanceDB's idle event loop, which LanceDB restarts in a forked child: checked before it
listens, :data:`FORK_SAFE_THREADS`), and it stays so: its loop only accepts, forks and reaps.

Per command, two processes: a supervisor forked from the server, and the command's process forked
from the supervisor in a process group of its own, with the client's standard streams (passed as
file descriptors), working folder, umask, environment and argv. The supervisor forwards the
client's signals to that group, reports how it ended (exit code or signal) and, when the client goes
away (its socket closes: killed, or its terminal gone), interrupts the command as Ctrl-C would, then
kills it after :data:`ABANDONED_GRACE_S`. The server itself keeps no state about a command: killing
it (even -9) leaves running commands to finish and report.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import importlib
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from mmrag_assets.orchestration.warm_client import (
    FORWARDED,
    differences,
    digest,
    fingerprint,
    paths,
    recv_msg,
    send_msg,
)

ABANDONED_GRACE_S = 30.0  # a command whose client went away: SIGINT, then SIGKILL this much later
REQUEST_TIMEOUT_S = 5.0  # a client sends its whole request at once
_PR_SET_PDEATHSIG = 1

# threads an import starts that their library restarts in a forked child (os.register_at_fork) and
# that hold no lock while idle: LanceDB's event loop (lancedb/background_loop.py; idle here, since the
# server makes no LanceDB call). Any other thread and the server refuses to serve.
FORK_SAFE_THREADS = frozenset({"LanceDBBackgroundEventLoop"})

RunCommand = Callable[[list[str]], int]


def log(msg: str) -> None:
    """The server's own lines, to its log file (stderr); the root logger is left alone, so that each
    command configures logging as it would in a fresh process (``-v``)."""
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} [{os.getpid()}] {msg}", file=sys.stderr, flush=True)


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a unix socket (SO_PEERCRED: pid, uid, gid)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def peer_allowed(conn: socket.socket, uid: int | None = None) -> bool:
    """Only the server's own user may run commands in it (the socket is 0600 in a 0700 folder too)."""
    return peer_uid(conn) == (os.getuid() if uid is None else uid)


def preload(modules: list[str]) -> tuple[list[str], list[str]]:
    """Import ``modules`` in order: (imported, skipped with the reason); a module that fails is left
    to the command that needs it, which reports the error as it would without a server."""
    done, skipped = [], []
    for name in modules:
        try:
            importlib.import_module(name)
            done.append(name)
        except Exception as e:  # noqa: BLE001 - any failure: the command imports it itself
            skipped.append(f"{name} ({type(e).__name__}: {e})")
    return done, skipped


class Server:
    """One installation's warm server: :meth:`serve` until idle for ``idle_s``, stopped, or signalled."""

    def __init__(self, run_command: RunCommand, idle_s: float, info: dict[str, Any] | None = None):
        self.run_command = run_command
        self.idle_s = idle_s
        self.info = dict(info or {})
        self.sock_path, self.lock_path, self.log_path = paths()
        self.fp: dict[str, Any] = {}
        self.env_delta: dict[str, str | None] = {}  # what the imports set in os.environ (None: removed)
        self.children: set[int] = set()
        self.served = 0
        self.stopping = False
        self.last_active = time.monotonic()
        self.started = time.time()
        self._lock_fd = -1
        self._listener: socket.socket | None = None

    # ------------------------------------------------------------ start and stop
    def lock(self, held_fd: int | None = None) -> bool:
        """Take the lock file (held until this process ends): False when another server holds it.
        ``held_fd``: the lock, already taken by the process that started this one (:func:`spawn`)."""
        if held_fd is not None:
            os.set_inheritable(held_fd, False)  # as os.open makes it: no program this one runs gets it
            self._lock_fd = held_fd
            return True
        self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            return False
        return True

    def start(self, modules: list[str], expect: str | None = None) -> str | None:
        """Import ``modules`` and listen; None when serving, else why not. ``expect``: the digest of
        the fingerprint the starting command took before this process existed, so that a file
        changed at any moment after it (before or during the imports) is caught."""
        before, env = fingerprint(), dict(os.environ)
        t0 = time.perf_counter()
        done, skipped = preload(modules)
        self.info.update(import_s=round(time.perf_counter() - t0, 2), modules=len(done), skipped=skipped)
        for s in skipped:
            log(f"not preloaded: {s}")
        threads = [
            t.name
            for t in threading.enumerate()
            if t is not threading.main_thread() and t.name not in FORK_SAFE_THREADS
        ]
        if threads:  # a fork would copy a thread's locks but not the thread
            return f"the imports started threads ({', '.join(threads)}): forking from here is not safe"
        # imports may set variables (e.g. KMP_INIT_AT_FORK): the client must match the environment this
        # process started with, and each command gets what the imports would have set in-process
        self.fp = {**fingerprint(), "env": before["env"]}
        self.env_delta = {
            k: os.environ.get(k) for k in {*env, *os.environ} if env.get(k) != os.environ.get(k)
        }
        changed = differences(before, self.fp)
        if changed or (expect and digest(self.fp) != expect):
            return f"mmrag's files or environment changed while it started ({'; '.join(changed) or 'before'})"
        self._listen()
        self.last_active = time.monotonic()  # idle from now: the imports above may take a while
        log(f"serving on {self.sock_path}: {len(done)} modules in {self.info['import_s']} s")
        return None

    def _listen(self) -> None:
        tmp = self.sock_path.with_name(f".{self.sock_path.name}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # 0600 from the start, not after a chmod
        try:
            s.bind(str(tmp))
        finally:
            os.umask(old)
        s.listen(16)
        os.replace(tmp, self.sock_path)  # clients never see a socket that does not accept yet
        self._listener = s
        self._inode = self.sock_path.stat().st_ino

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            with contextlib.suppress(OSError):  # only our own socket, not a successor's
                if self.sock_path.stat().st_ino == self._inode:
                    self.sock_path.unlink()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # ------------------------------------------------------------ the loop
    def serve(self) -> None:
        def stop(signum: int, _frame: Any) -> None:
            self.stopping = True

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, stop)
        assert self._listener is not None
        try:
            while not self.stopping:
                self._reap()
                idle = time.monotonic() - self.last_active
                if not self.children and idle >= self.idle_s:
                    log(f"idle for {idle:.0f} s: exiting")
                    break
                ready, _, _ = select.select([self._listener], [], [], min(1.0, max(0.05, self.idle_s - idle)))
                if ready:
                    conn, _ = self._listener.accept()  # idle until a command: `warm status` is no use
                    with conn:
                        self._handle(conn)
        finally:
            self.close()
            log(f"stopped after {self.served} commands")

    def _reap(self) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ChildProcessError):
                done, _status = os.waitpid(pid, os.WNOHANG)
                if not done:
                    continue
            self.children.discard(pid)
            self.last_active = time.monotonic()

    def _handle(self, conn: socket.socket) -> None:
        if not peer_allowed(conn):
            log(f"refused a connection from uid {peer_uid(conn)}")
            return
        conn.settimeout(REQUEST_TIMEOUT_S)
        fds: list[int] = []
        try:
            _marker, fds, _flags, _addr = socket.recv_fds(conn, 1, 3)
            req = recv_msg(conn)
            op = req.get("op")
            stale = differences(req.get("fingerprint") or {}, self.fp)
            if op == "status":
                self._reap()
                send_msg(conn, self.status(stale))
            elif op == "stop":
                send_msg(conn, {"stopping": os.getpid()})
                self.stopping = True
            elif op == "run" and stale:
                send_msg(conn, {"stale": stale})
                log(f"a client differs ({'; '.join(stale)})")
                # new code: no client will match again; another environment: other clients may
                self.stopping = bool(req.get("stop_if_stale")) and any(not d.startswith("env") for d in stale)
            elif op == "run":
                self._fork(conn, req, fds)
            else:
                send_msg(conn, {"refused": f"unknown request {op!r}"})
        except (OSError, EOFError, ValueError) as e:
            log(f"a request failed: {type(e).__name__}: {e}")
        finally:
            for fd in fds:
                os.close(fd)

    def status(self, stale: list[str]) -> dict[str, Any]:
        return {
            **self.info,
            "pid": os.getpid(),
            "started": self.started,
            "idle_minutes": round(self.idle_s / 60, 2),
            "idle_s": round(time.monotonic() - self.last_active, 1),
            "served": self.served,
            "active": len(self.children),
            "socket": str(self.sock_path),
            "log": str(self.log_path),
            "stale": stale,
        }

    def _fork(self, conn: socket.socket, req: dict[str, Any], fds: list[int]) -> None:
        sys.stdout.flush()
        sys.stderr.flush()  # nothing of the server's buffers may reach a command's streams
        pid = os.fork()
        if pid == 0:
            try:
                assert self._listener is not None
                self._listener.close()
                os.close(self._lock_fd)  # the lock is the server's life, not its commands': one that
                # outlives a stopped server must not keep a new one from starting
                supervise(conn, {**req, "env_delta": self.env_delta}, fds, self.run_command)
            finally:
                os._exit(70)
        self.children.add(pid)
        self.served += 1
        self.last_active = time.monotonic()


# ---------------------------------------------------------------- in the forked processes
def supervise(conn: socket.socket, req: dict[str, Any], fds: list[int], run_command: RunCommand) -> None:
    """The supervisor (a fork of the server): fork the command, pass on the client's signals, report
    how the command ended; a client gone means Ctrl-C, then SIGKILL after the grace period."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pid = os.fork()
    if pid == 0:
        try:
            command(conn, req, fds, run_command)
        finally:
            os._exit(70)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)  # also done in the child: whichever runs first
    for fd in fds:
        os.close(fd)
    conn.settimeout(None)
    client = True
    try:
        send_msg(conn, {"pid": pid})
    except OSError:
        client = False
        _interrupt(pid, signal.SIGINT)
    pidfd = os.pidfd_open(pid)
    deadline = None if client else time.monotonic() + ABANDONED_GRACE_S
    while True:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([pidfd, conn] if client else [pidfd], [], [], timeout)
        if pidfd in ready:
            break
        if not ready:  # the grace period is over
            _interrupt(pid, signal.SIGKILL)
            deadline = None
            continue
        try:
            msg = recv_msg(conn)
        except (OSError, EOFError, ValueError):
            client = False
            _interrupt(pid, signal.SIGINT)
            deadline = time.monotonic() + ABANDONED_GRACE_S
            continue
        if msg.get("signal") in FORWARDED:
            _interrupt(pid, int(msg["signal"]))
    _, status = os.waitpid(pid, 0)
    end = {"signal": os.WTERMSIG(status)} if os.WIFSIGNALED(status) else {"exit": os.WEXITSTATUS(status)}
    with contextlib.suppress(OSError):
        send_msg(conn, end)
    os._exit(0)


def _interrupt(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def command(conn: socket.socket, req: dict[str, Any], fds: list[int], run_command: RunCommand) -> None:
    """The command's process: the client's streams, folder, umask, environment and argv, the signal
    dispositions of a fresh Python, then the command (which ends the process)."""
    conn.close()
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    _die_with_parent()
    fds = list(fds)
    for target, present in enumerate(req.get("stdio", [])):
        src = fds.pop(0) if present else os.open(os.devnull, os.O_RDWR)
        if src != target:
            os.dup2(src, target)
            os.close(src)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    _reopen_stdio()
    try:
        os.chdir(req["cwd"])
    except OSError as e:
        print(f"error: cannot enter {req['cwd']}: {e}", file=sys.stderr, flush=True)
        os._exit(2)
    os.umask(int(req["umask"]))
    os.environ.clear()
    os.environ.update(req["env"])
    for k, v in req.get("env_delta", {}).items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    sys.argv = list(req["argv"])
    if "numpy" in sys.modules:  # every fork would otherwise draw the server's random sequence
        sys.modules["numpy"].random.seed()
    run_command(list(req["argv"][1:]))


def _die_with_parent() -> None:
    """Ctrl-C for the command when its supervisor dies (Linux's PR_SET_PDEATHSIG), so that no command
    runs on unsupervised."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)


def _reopen_stdio() -> None:
    """New ``sys.std*`` objects over fds 0-2 (now the client's), buffered as a fresh Python buffers
    them: stdout by line on a terminal, by block on a pipe or file; stderr by line."""
    enc = getattr(sys.__stdout__, "encoding", None) or "utf-8"
    out_errors = getattr(sys.__stdout__, "errors", None) or "strict"
    streams = {
        "stdin": open(0, encoding=enc, errors=out_errors, closefd=False),  # noqa: SIM115
        "stdout": open(1, "w", encoding=enc, errors=out_errors, buffering=1 if os.isatty(1) else -1, closefd=False),  # noqa: SIM115
        "stderr": open(2, "w", encoding=enc, errors="backslashreplace", buffering=1, closefd=False),  # noqa: SIM115
    }  # fmt: skip
    for name, stream in streams.items():
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def serve_forever(
    run_command: RunCommand,
    modules: list[str],
    idle_s: float,
    expect: str | None,
    info: dict[str, Any],
    lock_fd: int | None = None,
) -> int:
    """``mmrag warm serve``: lock, import, listen, serve; 0 after an idle timeout or a stop, 1 when
    another server holds the lock, 2 when this one may not serve (see :meth:`Server.start`)."""
    server = Server(run_command, idle_s, info)
    if not server.lock(lock_fd):
        log(f"another server holds {server.lock_path}")
        return 1
    try:
        why = server.start(modules, expect)
    except BaseException:
        server.close()
        raise
    if why:
        log(f"not serving: {why}")
        server.close()
        return 2
    server.serve()
    return 0
