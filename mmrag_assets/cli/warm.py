"""``mmrag warm start|stop|status|serve``: a resident server that has imported what the commands
need, so that ``mmrag index``, ``search``... run in a fork of it instead of a fresh interpreter
(``orchestration/warm_server.py``; the client side, run by the console script before anything heavy
is imported: ``orchestration/warm_client.py``)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from mmrag_assets.cli._app import command, config_of, emit, say
from mmrag_assets.orchestration import warm_client

# the commands a server runs: each ends by itself and starts no server of its own (ui, serve and
# worker do, and warm manages the server); with no server, or MMRAG_WARM=0, they run in-process
SERVED = frozenset({"index", "ingest", "search", "status", "checks", "baseline", "ask", "eval", "demo"})

# what the commands import beyond the run processes' list (forkserver.preload_modules)
CLI_PRELOAD = (
    "hydra",
    "omegaconf",
    "mmrag_assets.orchestration.launch",
    "mmrag_assets.lib.status",
    "mmrag_assets.lib.store.runtime",
    "mmrag_assets.lib.search.searcher",
)
START_TIMEOUT_S = 300.0  # the imports take ~8-15 s on 2 busy cores


def warm_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("action", choices=("start", "stop", "status", "serve"), help="serve: in the foreground")
    sp.add_argument(
        "--idle-minutes", type=float, default=None,
        help="exit after this long without a command (default: 15)",
    )  # fmt: skip
    sp.add_argument("--expect", default=None, help=argparse.SUPPRESS)  # start's fingerprint, for serve
    sp.add_argument("--lock-fd", type=int, default=None, help=argparse.SUPPRESS)  # the lock spawn() took
    sp.add_argument("--json", action="store_true", help="status: print one JSON object")


@command(
    "warm", "keep a server with the imports done that runs index, ingest, search... as forks", warm_flags
)
def cmd_warm(args: argparse.Namespace) -> int:
    return {"start": _start, "stop": _stop, "status": _status, "serve": _serve}[args.action](args)


def run_command(argv: list[str]) -> int:
    """What a served command's process runs: the command line, then the console script's exit."""
    from mmrag_assets.cli import exit_now, main

    code = 1
    try:
        code = main(argv)
    except SystemExit as e:  # argparse: usage errors (2) and --help (0)
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if isinstance(e.code, str):
            say(e.code)
    finally:
        exit_now(code)
    return code


def _serve(args: argparse.Namespace) -> int:
    from mmrag_assets.orchestration.forkserver import preload_modules
    from mmrag_assets.orchestration.warm_server import serve_forever

    cfg = config_of(args)
    modules = list(dict.fromkeys([*preload_modules(cfg), *CLI_PRELOAD]))
    minutes = warm_client.IDLE_MINUTES if args.idle_minutes is None else args.idle_minutes
    info = {"overrides": list(args.overrides)}
    return serve_forever(run_command, modules, minutes * 60, args.expect, info, args.lock_fd)


def _starting() -> bool:
    """A server holds the lock but does not answer yet: it is importing (one a command started in the
    background, MMRAG_WARM=auto, or another `warm start`)."""
    _sock, lock, _log = warm_client.paths()
    return warm_client.server_holds_lock(lock)


def _status_once_started() -> dict[str, Any] | None:
    """The server's status, after waiting for one that is still importing (None: none runs, or it
    exited while starting)."""
    t0 = time.monotonic()
    while True:
        st = warm_client.request("status")
        if st is not None or not _starting() or time.monotonic() - t0 > START_TIMEOUT_S:
            return st
        time.sleep(0.2)


def _start(args: argparse.Namespace) -> int:
    st = warm_client.request("status")
    if st is None and _starting():
        say("a warm server is starting; waiting for it")
        st = _status_once_started()
    if st is not None and not st["stale"]:
        say(f"a warm server is running (pid {st['pid']}); `mmrag warm stop` first to change its settings")
        return 0
    if st is not None:
        say(f"stopping the warm server {st['pid']}: started before {'; '.join(st['stale'])} changed")
        _stop_and_wait()
    t0 = time.monotonic()
    started = warm_client.spawn(list(args.overrides), args.idle_minutes)
    if started is None:  # another one took the lock in between: that one is the server
        st = _status_once_started()
        if st is None:
            say(f"error: a warm server holds the lock but is not listening after {START_TIMEOUT_S:.0f} s")
            return 2
        say(f"warm server ready: pid {st['pid']} (started by another command)")
        return 0
    proc, log = started
    while time.monotonic() - t0 < START_TIMEOUT_S:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            say(f"error: the warm server exited with {proc.returncode}: " + " | ".join(tail))
            return 2
        st = warm_client.request("status")
        if st is not None:
            say(
                f"warm server ready: pid {st['pid']}, {st['modules']} modules imported in {st['import_s']} s; log {log}"
            )
            return 0
        time.sleep(0.2)
    say(f"error: the warm server is not ready after {START_TIMEOUT_S:.0f} s (log: {log})")
    return 2


def _stop_and_wait(timeout_s: float = 30.0) -> bool:
    _sock, lock, _log = warm_client.paths()
    warm_client.request("stop")
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if not warm_client.server_holds_lock(lock):
            return True
        time.sleep(0.1)
    return False


def _stop(args: argparse.Namespace) -> int:
    st = warm_client.request("status")
    if st is None and _starting():
        say("a warm server is starting; it stops once it listens")
        st = _status_once_started()
    if st is None:
        say("no warm server is running")
        return 0
    if not _stop_and_wait():
        say(f"error: the warm server {st['pid']} did not stop within 30 s; kill it: kill {st['pid']}")
        return 2
    say(f"stopped the warm server {st['pid']} ({st['served']} commands served)")
    return 0


def _status(args: argparse.Namespace) -> int:
    st = warm_client.request("status")
    starting = st is None and _starting()
    if args.json:
        emit({"running": st is not None, "starting": starting, **(st or {})})
        return 0
    if starting:
        print("a warm server is starting (importing); commands run in their own process until it listens")
        return 0
    if st is None:
        print("no warm server is running (`mmrag warm start`)")
        return 0
    print(_describe(st))
    return 0


def _describe(st: dict[str, Any]) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st["started"]))
    lines = [
        f"warm server: pid {st['pid']}, since {since}, {st['served']} commands served, {st['active']} running",
        (
            f"  {st['modules']} modules imported in {st['import_s']} s; exits after {st['idle_minutes']} min idle "
            f"(idle {st['idle_s']:.0f} s)"
        ),
        f"  socket {st['socket']}, log {st['log']}",
    ]
    if st["overrides"]:
        lines.append(f"  overrides: {' '.join(st['overrides'])}")
    if st["stale"]:
        lines.append(f"  stale, commands run in-process: {'; '.join(st['stale'])} changed since it started")
    return "\n".join(lines)
