"""The client side of ``mmrag warm``: run a command in a fork of a warm server when one is running
and matches this process, before anything heavy is imported (the standard library and mmrag's config module: the console
script imports this, then either hands its command over or goes on in-process).

A command is handed over when ``MMRAG_WARM`` is not ``0``, the command is one the CLI lets a server
run, a server listens on this installation's socket and its :func:`fingerprint` equals this
process's. Anything else, and every failure to reach the server, runs the command in this process
as if no server existed; only a command the server has started is the server's to finish (its exit
code, or the signal that ended it, becomes this process's).

``MMRAG_WARM`` (see :func:`mode`): unset or ``auto``, a command that ran in this process because no
server runs starts one in the background as it exits (:func:`start_after`), as Gradle's and Bazel's
clients start their daemons, so that the next command forks from it; ``1`` uses a running server and
never starts one; ``0`` never uses one. A server exits after 15 minutes without a command.

What the server and this process must agree on, because it is fixed once the server has imported
its modules: the Python (executable, version, ``sys.path`` past its first entry, the mtimes of the
installed packages' folders), mmrag's own files (every file of ``mmrag_assets``, ``data_contracts``
and the config folder, by path, mtime and size) and the environment (every variable but the ones a
terminal or shell sets per window: :data:`ENV_IGNORED`), since libraries read some variables once
at import (thread counts, backends, the locale). The command process gets this
process's whole environment, working folder, umask and standard streams.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# set per terminal, window or shell level, and read by nothing at import: a difference is no reason
# to distrust the server (the command still gets the client's values)
ENV_IGNORED = frozenset(
    {"_", "PWD", "OLDPWD", "SHLVL", "COLUMNS", "LINES", "TERM", "COLORTERM", "WINDOWID", "STY", "WINDOW"}
    | {"SSH_CLIENT", "SSH_CONNECTION", "SSH_TTY", "SSH_AUTH_SOCK", "GPG_TTY", "PS1", "PS2", "PROMPT_COMMAND"}
    | {"MAIL", "HISTFILE", "HISTSIZE", "HISTFILESIZE", "HISTCONTROL", "LS_COLORS", "LESSOPEN", "LESSCLOSE"}
    | {"PYTEST_CURRENT_TEST", "MMRAG_WARM"}
)
ENV_IGNORED_PREFIXES = ("TMUX", "TERM_", "VSCODE_", "ITERM_", "KONSOLE_", "VTE_")
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
IDLE_MINUTES = 15.0  # a server's default life without a command (`mmrag warm start --idle-minutes`)
MODES = {"auto": "auto", "": "auto", "1": "use", "on": "use", "0": "off", "off": "off"}
REPLY_TIMEOUT_S = 30.0  # a server that accepted but does not answer: the command runs here instead
_HEADER = struct.Struct("!I")
MAX_FRAME = 16 << 20


# ---------------------------------------------------------------- where the server listens
def runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/mmrag`` (the user's own tmpfs), else ``<temp>/mmrag-<uid>``; created 0700,
    refused (``PermissionError``) when another user owns it or others may enter it."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    d = Path(base) / "mmrag" if base else Path(tempfile.gettempdir()) / f"mmrag-{os.getuid()}"
    try:
        d.mkdir(mode=0o700, parents=bool(base))
    except FileExistsError:
        pass
    st = d.lstat()
    if not os.path.isdir(d) or d.is_symlink() or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise PermissionError(f"{d} must be a folder of uid {os.getuid()} with mode 0700")
    return d


def install_key() -> str:
    """One server per installation (interpreter and mmrag package): two checkouts or virtual
    environments of one user never share (or stop) each other's server."""
    pkg = Path(__file__).resolve().parents[1]
    return hashlib.sha256(f"{sys.executable}\0{pkg}".encode()).hexdigest()[:12]


def paths() -> tuple[Path, Path, Path]:
    """(socket, lock, log) of this installation's server."""
    d = runtime_dir()
    key = install_key()
    return d / f"warm-{key}.sock", d / f"warm-{key}.lock", d / f"warm-{key}.log"


def server_holds_lock(lock: Path) -> bool:
    """A server process (starting or serving) holds the lock file for its whole life."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock we took
    return False


def mode(environ: dict[str, str] | None = None) -> str:
    """``MMRAG_WARM``: ``auto`` (unset, ``auto``): use a running server, start one after a command that
    ran here; ``use`` (``1``, ``on``): use a running server only; ``off`` (``0``, ``off``). Another
    value is an error (a typo must not silently start or skip a server)."""
    env = os.environ if environ is None else environ
    raw = env.get("MMRAG_WARM", "auto").strip().lower()
    if raw not in MODES:
        raise ValueError(
            f"MMRAG_WARM={raw!r}: use auto (the default), 1 (use a running server only) or 0 (off)"
        )
    return MODES[raw]


# ---------------------------------------------------------------- what must match
def _env_digest(env: dict[str, str]) -> dict[str, str]:
    return {
        k: hashlib.blake2b(v.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()
        for k, v in env.items()
        if k not in ENV_IGNORED and not k.startswith(ENV_IGNORED_PREFIXES)
    }


def _tree(root: Path, into: dict[str, str]) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        st = os.stat(dirpath)
        into[dirpath] = f"{st.st_mtime_ns}"  # a file added or removed
        for f in filenames:
            if not f.endswith((".pyc", ".pyo")):
                p = os.path.join(dirpath, f)
                try:
                    st = os.stat(p)
                except OSError:
                    continue
                into[p] = f"{st.st_mtime_ns}:{st.st_size}"


def fingerprint() -> dict[str, Any]:
    """What the server's imports depend on (see the module docstring); ~2 ms for mmrag's ~220 files."""
    pkg = Path(__file__).resolve().parents[1]
    from mmrag_assets.config import conf_dir  # imported by the CLI already; the rule the commands compose by

    conf = conf_dir()
    files: dict[str, str] = {}
    for root in (pkg, pkg.parent / "data_contracts", conf):
        if root.is_dir():
            _tree(root, files)
    installed = {}
    for entry in sys.path[1:]:  # the first is the script's folder or the working folder
        if entry and not (Path(entry) / "mmrag_assets").is_dir():  # not the checkout (its mtime is noise)
            try:
                installed[entry] = os.stat(entry).st_mtime_ns
            except OSError:
                installed[entry] = None
    return {
        "python": sys.version,
        "executable": sys.executable,
        "sys_path": sys.path[1:],
        "installed": installed,
        "files": files,
        "env": _env_digest(dict(os.environ)),
        "uid": os.getuid(),
    }


def digest(fp: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()


def differences(ours: dict[str, Any], theirs: dict[str, Any], limit: int = 5) -> list[str]:
    """What differs, named for a person (file paths, variable names; never values)."""
    out: list[str] = []
    for key in sorted(set(ours) | set(theirs)):
        a, b = ours.get(key), theirs.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            names = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
            out.append(f"{key}: {', '.join(names[:limit])}{more}")
        else:
            out.append(key)
    return out


# ---------------------------------------------------------------- the wire: length-prefixed JSON
def send_msg(sock: socket.socket, obj: dict[str, Any]) -> None:
    data = json.dumps(obj).encode("utf-8", "surrogateescape")
    sock.sendall(_HEADER.pack(len(data)) + data)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("the peer closed the connection")
        buf += chunk
    return bytes(buf)


def recv_msg(sock: socket.socket) -> dict[str, Any]:
    (n,) = _HEADER.unpack(recv_exact(sock, _HEADER.size))
    if n > MAX_FRAME:
        raise ValueError(f"message of {n} bytes")
    return json.loads(recv_exact(sock, n).decode("utf-8", "surrogateescape"))


def send_request(sock: socket.socket, obj: dict[str, Any], fds: list[int] = ()) -> None:
    """One marker byte carrying ``fds`` (SCM_RIGHTS), then the request."""
    socket.send_fds(sock, [b"R"], list(fds))
    send_msg(sock, obj)


def connect(sock_path: Path, lock: Path) -> socket.socket | None:
    """A connection to the server, or None: no server, or a dead one's socket (removed here when no
    process holds the lock, i.e. the server was killed before it could remove it)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(sock_path))
        return s
    except (FileNotFoundError, ConnectionRefusedError) as e:
        s.close()
        if isinstance(e, ConnectionRefusedError) and not server_holds_lock(lock):
            try:
                os.unlink(sock_path)
            except FileNotFoundError:
                pass
        return None
    except OSError:
        s.close()
        return None


def request(op: str, **extra: Any) -> dict[str, Any] | None:
    """``status`` or ``stop`` to this installation's server: its answer, or None when none runs."""
    sock_path, lock, _log = paths()
    s = connect(sock_path, lock)
    if s is None:
        return None
    with s:
        s.settimeout(REPLY_TIMEOUT_S)
        try:
            send_request(s, {"op": op, "fingerprint": fingerprint(), **extra})
            return recv_msg(s)
        except (OSError, EOFError, ValueError):
            return None


# ---------------------------------------------------------------- a command, served
def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_served(argv: list[str], served: frozenset[str]) -> int | None:
    """Run ``argv`` (``sys.argv``: the program, then the command's arguments) in a fork of the warm
    server: its exit code, or None when the command is to run in this process."""
    args = argv[1:]
    how = _mode_or_off()
    if how == "off" or not args or args[0] not in served:
        return None
    verbose = "-v" in args or "--verbose" in args
    try:
        sock_path, lock, _log = paths()
    except OSError:
        return None
    if not sock_path.exists():  # the common case without a server: one stat
        return None
    s = connect(sock_path, lock)
    if s is None:
        return None
    with s:
        return _served(s, argv, verbose=verbose, quiet_env=how == "auto")


def _mode_or_off() -> str:
    try:
        return mode()
    except ValueError as e:
        _say(f"mmrag warm: {e}; running the command in this process")
        return "off"


# ---------------------------------------------------------------- starting a server
def spawn(overrides: list[str], idle_minutes: float | None = None) -> tuple[subprocess.Popen, Path] | None:
    """``mmrag warm serve`` detached from this process (its own session: Ctrl-C and a closed terminal
    leave it running), told this process's fingerprint so that a file changed while it imports is
    caught; its output goes to the log, truncated. The process and the log path, or None when a
    server holds the lock. The lock is taken here and handed to the server (the same open file), so
    that from this call's return a starting server is seen as one: no second is started, and `mmrag
    warm stop` waits for it instead of finding nothing."""
    sock, lock, log = paths()
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        argv = [sys.executable, "-m", "mmrag_assets.cli", "warm", "serve", *overrides]
        argv += ["--expect", digest(fingerprint()), "--lock-fd", str(fd)]
        if idle_minutes is not None:
            argv += ["--idle-minutes", str(idle_minutes)]
        with open(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=(fd,),
                cwd=sock.parent,  # not the caller's folder: `python -m` puts it first on sys.path
                start_new_session=True,
                env={**os.environ, "MMRAG_WARM": "0"},  # the server never hands its own commands over
            )
    finally:
        os.close(fd)  # the server's copy holds the lock on
    return proc, log


def _ci(environ: Mapping[str, str]) -> bool:
    """The ``CI`` variable that GitHub Actions, GitLab CI, CircleCI, Travis, Buildkite... set."""
    return environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def start_after(argv: list[str], served: frozenset[str]) -> int | None:
    """After a command that :func:`run_served` left to this process: start a server in the background
    (``MMRAG_WARM`` auto, a served command, no ``CI``, no server running or starting); its pid or None.
    Said on stderr only when that is a terminal (scripts parse nothing new). Never fails the command:
    any error starting it is swallowed (the next command simply runs in its own process again)."""
    args = argv[1:]
    try:
        if not args or args[0] not in served or mode() != "auto" or _ci(os.environ):
            return None
        sock, _lock, _log = paths()
        # one runs (or was killed: its socket is removed by the next client that finds it dead)
        if sock.exists():
            return None
        started = spawn([])  # None: one is starting
        if started is None:
            return None
        proc, log = started
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    if sys.stderr.isatty():
        _say(
            f"mmrag: started a warm server (pid {proc.pid}; log {log}) so that the next commands skip the ~2 s of "
            f"imports; it exits after {IDLE_MINUTES:g} min without one (`mmrag warm stop`; MMRAG_WARM=0 turns this off)"
        )
    return proc.pid


def _open_stdio() -> list[int]:
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            fds.append(-1)
    return fds


def _served(s: socket.socket, argv: list[str], verbose: bool, quiet_env: bool = False) -> int | None:
    """``quiet_env``: a server that differs from this process only in its environment (another shell's
    server) is not worth a line on every command unless asked for (``-v``, or ``MMRAG_WARM=1``)."""
    stdio = _open_stdio()
    umask = os.umask(0)
    os.umask(umask)
    req = {
        "op": "run",
        "fingerprint": fingerprint(),
        "stop_if_stale": True,
        "argv": argv,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "umask": umask,
        "stdio": [fd >= 0 for fd in stdio],
    }
    s.settimeout(REPLY_TIMEOUT_S)
    try:
        send_request(s, req, [fd for fd in stdio if fd >= 0])
        first = recv_msg(s)
    except (OSError, EOFError, ValueError) as e:  # nothing started: this process runs it
        if verbose:
            _say(f"mmrag warm: the server did not take the command ({e}); running it in this process")
        return None
    if "stale" in first:
        code_changed = any(not d.startswith("env") for d in first["stale"])
        if quiet_env and not code_changed and not verbose:
            return None
        _say(
            "mmrag warm: the server was started before "
            + "; ".join(first["stale"])
            + " changed; this command runs in this process"
            + (" and the server stops (`mmrag warm start` for a new one)" if code_changed else "")
        )
        return None
    if "refused" in first:
        _say(f"mmrag warm: {first['refused']}; running the command in this process")
        return None
    if "pid" not in first:
        return None
    return _wait(s)


def _wait(s: socket.socket) -> int:
    """Forward the signals a terminal or a supervisor sends this process to the command's process
    group, until the server says how the command ended."""
    s.settimeout(None)

    def forward(signum: int, _frame: Any) -> None:
        try:
            send_msg(s, {"signal": signum})
        except OSError:
            pass

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        msg = recv_msg(s)
    except (OSError, EOFError, ValueError):
        _say("error: the warm server's process for this command ended without an exit status")
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if "signal" in msg:  # ended by a signal: end this process the same way (the shell sees 128+n)
        sig = int(msg["signal"])
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        return 128 + sig
    return int(msg.get("exit", 1))
