"""``mmrag warm`` (orchestration/warm_server.py, warm_client.py): real ``mmrag`` processes, a real
server and socket, the sample corpus. The fast tests check the pieces (fingerprint, peer check,
runtime folder, fallbacks without a server); the slow ones share one server per module and end with
the tests that stop or kill it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmrag_assets.orchestration import warm_client
from mmrag_assets.orchestration.warm_server import peer_allowed, peer_uid

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- fast: the pieces
def test_fingerprint_names_what_differs_and_ignores_terminal_variables(monkeypatch) -> None:
    a = warm_client.fingerprint()
    monkeypatch.setenv("PWD", "/elsewhere")
    monkeypatch.setenv("TERM", "dumb")
    assert warm_client.differences(a, warm_client.fingerprint()) == []
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert warm_client.differences(a, warm_client.fingerprint()) == ["env: OMP_NUM_THREADS"]
    b = json.loads(json.dumps(a))
    some = next(p for p in b["files"] if p.endswith("warm_client.py"))
    b["files"][some] = "0:0"
    assert warm_client.differences(a, b) == [f"files: {some}"]
    assert "python" in warm_client.differences(a, {**a, "python": "2.7"})


def test_peer_check_accepts_only_the_servers_uid() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        assert peer_uid(left) == os.getuid()
        assert peer_allowed(left)
        assert not peer_allowed(left, uid=os.getuid() + 1)  # another user's process


def test_runtime_dir_is_private(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    d = warm_client.runtime_dir()
    assert d.stat().st_mode & 0o777 == 0o700
    d.chmod(0o755)  # others may enter: refused
    with pytest.raises(PermissionError):
        warm_client.runtime_dir()


def test_no_server_stale_socket_and_bypass_run_in_process(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("MMRAG_WARM", "1")  # conftest turns it off for every other test
    argv = ["mmrag", "status"]
    assert warm_client.run_served(argv, frozenset({"status"})) is None  # no server
    sock, _lock, _log = warm_client.paths()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(sock))
    s.close()  # what a server killed with -9 leaves: a socket file nobody listens on
    assert warm_client.run_served(argv, frozenset({"status"})) is None
    assert not sock.exists()  # removed by the client, no server holding the lock
    assert warm_client.run_served(["mmrag", "ui"], frozenset({"status"})) is None
    monkeypatch.setenv("MMRAG_WARM", "0")
    assert warm_client.run_served(argv, frozenset({"status"})) is None


def test_mode_reads_mmrag_warm_and_refuses_a_typo(monkeypatch, tmp_path: Path, capsys) -> None:
    assert warm_client.mode({}) == warm_client.mode({"MMRAG_WARM": "auto"}) == "auto"
    assert warm_client.mode({"MMRAG_WARM": "1"}) == warm_client.mode({"MMRAG_WARM": "ON "}) == "use"
    assert warm_client.mode({"MMRAG_WARM": "0"}) == warm_client.mode({"MMRAG_WARM": "off"}) == "off"
    with pytest.raises(ValueError, match="MMRAG_WARM='yes please'"):
        warm_client.mode({"MMRAG_WARM": "yes please"})
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("MMRAG_WARM", "sometimes")
    sock, _lock, _log = warm_client.paths()
    sock.touch()  # a server's socket would be tried next: the typo must stop it before
    assert warm_client.run_served(["mmrag", "status"], frozenset({"status"})) is None
    assert "MMRAG_WARM='sometimes'" in capsys.readouterr().err
    assert warm_client.start_after(["mmrag", "status"], frozenset({"status"})) is None


def test_no_server_is_started_unless_auto_served_outside_ci_and_none_runs(
    monkeypatch, tmp_path: Path
) -> None:
    """Every case where :func:`start_after` must not start a server (the one where it does is the slow
    test below): it returns before spawning anything, so no process is left behind here."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    served = frozenset({"status"})
    spawned = []
    monkeypatch.setattr(
        warm_client, "spawn", lambda *a, **k: spawned.append(a) or (_Proc(), tmp_path / "log")
    )
    for value in ("0", "1"):
        monkeypatch.setenv("MMRAG_WARM", value)
        assert warm_client.start_after(["mmrag", "status"], served) is None
    monkeypatch.setenv("MMRAG_WARM", "auto")
    assert warm_client.start_after(["mmrag", "ui"], served) is None  # not a served command
    assert warm_client.start_after(["mmrag"], served) is None
    for ci in ("true", "1"):
        monkeypatch.setenv("CI", ci)
        assert warm_client.start_after(["mmrag", "status"], served) is None
    monkeypatch.setenv("CI", "false")
    sock, _lock, _log = warm_client.paths()
    sock.touch()  # a server listens (or was killed: the next client that finds it dead removes it)
    assert warm_client.start_after(["mmrag", "status"], served) is None
    assert spawned == []
    sock.unlink()
    assert warm_client.start_after(["mmrag", "status"], served) == 4321  # all clear: it would start one
    assert spawned == [([],)]


def test_spawn_starts_nothing_while_a_server_holds_the_lock(monkeypatch, tmp_path: Path) -> None:
    import fcntl

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail("a second server was started"))
    _sock, lock, _log = warm_client.paths()
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a server is starting (it holds the lock while it imports)
    try:
        assert warm_client.spawn([]) is None
        assert warm_client.server_holds_lock(lock)  # still ours
    finally:
        os.close(fd)


class _Proc:
    pid = 4321


# ---------------------------------------------------------------- slow: a real server
@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One environment for the server and every client (a difference would make the server stale):
    a private runtime folder with a short path (a socket path is < 108 bytes), a config folder of
    its own (touched by the staleness test), the test session's caches."""
    base = tmp_path_factory.mktemp("warm")
    run = Path(tempfile.mkdtemp(prefix="mmw-"))
    conf = base / "conf"
    shutil.copytree(ROOT / "conf", conf)
    e = {k: v for k, v in os.environ.items() if k != "MMRAG_WARM"}
    e.update(
        XDG_RUNTIME_DIR=str(run),
        MMRAG_CONF_DIR=str(conf),
        MMRAG_CACHE_DIR=str(tmp_path_factory.getbasetemp() / "mmrag-cache"),
        HF_HOME=str(tmp_path_factory.getbasetemp() / "hf-cache"),
        MPLBACKEND="Agg",
        # the Ctrl-C test holds a command inside its ingest step (lib/faults.py) while it is armed: set for
        # the server and every client alike (the environment is part of the fingerprint), armed by that test only
        MMRAG_FAULT_WAIT=f"ingest.document:{base / 'hold'}",
    )
    (base / "hold").mkdir()
    yield e
    subprocess.run([*MMRAG, "warm", "stop"], env=e, check=False, capture_output=True, timeout=60)
    shutil.rmtree(run, ignore_errors=True)


MMRAG = [sys.executable, "-m", "mmrag_assets.cli"]


def mmrag(env: dict[str, str], *args: str, warm: bool = True, **kw) -> subprocess.CompletedProcess:
    e = {**env, "MMRAG_WARM": "1" if warm else "0"}
    return subprocess.run(
        [*MMRAG, *args], env=e, capture_output=True, text=True, timeout=600, check=False, **kw
    )


def status(env: dict[str, str]) -> dict:
    return json.loads(mmrag(env, "warm", "status", "--json").stdout)


def start(env: dict[str, str], *extra: str) -> dict:
    r = mmrag(env, "warm", "start", *extra)
    assert r.returncode == 0, r.stderr
    st = status(env)
    assert st["running"] and not st["stale"]
    return st


@pytest.fixture(scope="module")
def corpus(env, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The sample corpus (no video), indexed in-process: the overrides of the commands."""
    from mmrag_assets.fixtures.sample_corpus import build_sample_corpus

    base = tmp_path_factory.mktemp("corpus")
    build_sample_corpus(base / "c", video=False)
    ovr = [f"corpus.root={base / 'c'}", f"storage.root={base / 's'}"]
    r = mmrag(env, "index", *ovr, warm=False)
    assert r.returncode == 0, r.stderr
    return ovr


@pytest.fixture(scope="module")
def server(env, corpus) -> dict:
    return start(env)


def children_of(pid: int) -> set[int]:
    out = set()
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.add(int(p.name))
            except (OSError, IndexError):
                pass
    return out


def descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        kids = children_of(todo.pop())
        found |= kids
        todo += kids
    return found


@pytest.mark.slow
def test_served_commands_print_and_exit_as_in_process(env, corpus, server) -> None:
    served0 = status(env)["served"]
    sock = Path(status(env)["socket"])
    assert sock.stat().st_mode & 0o777 == 0o600 and sock.parent.stat().st_mode & 0o777 == 0o700
    for args in (["status"], ["status", "--json"], ["search", "reset the router", "--json"]):
        here, there = mmrag(env, *args, *corpus, warm=False), mmrag(env, *args, *corpus)
        assert there.returncode == here.returncode == 0, there.stderr
        if "search" in args:
            a, b = json.loads(here.stdout), json.loads(there.stdout)
            a.pop("timings_ms"), b.pop("timings_ms")
            assert a == b
        else:
            assert there.stdout == here.stdout
        assert there.stderr == here.stderr
    # failures: the error line and the exit code (2), a usage error (2)
    no_index = [corpus[0], f"storage.root={Path(corpus[1].split('=', 1)[1]).parent / 'none'}"]
    for args in (
        ["search", "anything", *no_index],
        ["search", "ok", "--k", "0", *corpus],
        ["status", "--bogus"],
    ):
        here, there = mmrag(env, *args, warm=False), mmrag(env, *args)
        assert there.returncode == here.returncode == 2
        assert there.stdout == here.stdout
        assert there.stderr == here.stderr and ("error:" in there.stderr)
    assert status(env)["served"] == served0 + 6


@pytest.mark.slow
def test_served_index_adds_a_document_like_in_process(env, corpus, server, tmp_path: Path) -> None:
    results = {}
    for warm in (False, True):
        c, s = tmp_path / f"c{warm}", tmp_path / f"s{warm}"
        shutil.copytree(corpus[0].split("=", 1)[1], c)
        ovr = [f"corpus.root={c}", f"storage.root={s}"]
        shutil.copy(c / "manuals" / "SunVolt SV-5000 installation manual.pdf", c / "copy.pdf")
        r = mmrag(env, "index", *ovr, warm=warm)
        assert r.returncode == 0, r.stderr
        st = json.loads(mmrag(env, "status", "--json", *ovr, warm=False).stdout)
        results[warm] = (st["documents"], st["pages"], st["segments"], st["index"]["published"]["items"])
    assert results[True] == results[False]


@pytest.mark.slow
def test_two_commands_at_once_run_in_two_forks(env, corpus, server) -> None:
    served0 = status(env)["served"]
    e = {**env, "MMRAG_WARM": "1"}
    procs = [
        subprocess.Popen([*MMRAG, "search", q, "--json", *corpus], env=e, stdout=subprocess.PIPE, text=True)
        for q in ("reset the router", "revenue by region")
    ]
    outs = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert [o["query"] for o in outs] == ["reset the router", "revenue by region"]
    assert status(env)["served"] == served0 + 2


def _index_in_background(env, tmp_path: Path) -> tuple[subprocess.Popen, set[int]]:
    """A served first index of a fresh store (long enough to interrupt) and the server's processes
    before it (the command's are the new ones)."""
    from mmrag_assets.fixtures.sample_corpus import build_sample_corpus

    build_sample_corpus(tmp_path / "c", video=False)
    before = descendants(status(env)["pid"])
    p = subprocess.Popen(
        [*MMRAG, "index", f"corpus.root={tmp_path / 'c'}", f"storage.root={tmp_path / 's'}"],
        env={**env, "MMRAG_WARM": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for _ in range(300):  # the command's process exists: it started
        if descendants(status(env)["pid"]) - before:
            break
        time.sleep(0.1)
    time.sleep(3)
    return p, before


def _gone(env, before: set[int], within_s: float) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < within_s:
        if not descendants(status(env)["pid"]) - before:
            return True
        time.sleep(0.5)
    return False


@pytest.mark.slow
def test_ctrl_c_in_the_client_interrupts_the_command(env, server, tmp_path: Path) -> None:
    """Ctrl-C while the command is held inside its ingest step: sent at a fixed 3 s instead, it once
    found the run nearly done and the command ended with 0 (1 of 4 runs here; only the run's helper
    processes showed the KeyboardInterrupt), which says nothing about the forwarding."""
    hold = Path(env["MMRAG_FAULT_WAIT"].split(":", 1)[1])
    (hold / "armed").touch()
    try:
        p, before = _index_in_background(env, tmp_path)
        for _ in range(600):  # the command is held inside its step
            if any(hold.glob("*.arrived")):
                break
            time.sleep(0.1)
        assert any(hold.glob("*.arrived")), "the command never reached its ingest step"
        p.send_signal(signal.SIGINT)
        _out, err = p.communicate(timeout=120)
    finally:
        (hold / "armed").unlink()
        (hold / "go").touch()  # nothing else waits there
    assert p.returncode != 0, err
    assert _gone(env, before, 60)


@pytest.mark.slow
def test_a_killed_client_does_not_leave_its_command_running(env, server, tmp_path: Path) -> None:
    p, before = _index_in_background(env, tmp_path)
    p.kill()
    p.wait(timeout=30)
    assert _gone(env, before, 90)  # SIGINT at once, SIGKILL after the grace period (30 s)


@pytest.mark.slow
def test_killed_server_leaves_a_socket_the_client_removes(env, corpus, server) -> None:
    st = status(env)
    os.kill(st["pid"], signal.SIGKILL)
    time.sleep(0.5)
    assert Path(st["socket"]).exists()
    r = mmrag(env, "status", *corpus)
    assert r.returncode == 0 and "pages:" in r.stdout, r.stderr
    assert not Path(st["socket"]).exists()


@pytest.mark.slow
def test_a_code_change_makes_the_server_stale(env, corpus) -> None:
    st = start(env)
    conf = Path(env["MMRAG_CONF_DIR"]) / "config.yaml"
    os.utime(conf, ns=(conf.stat().st_atime_ns, conf.stat().st_mtime_ns + 1_000_000_000))
    assert status(env)["stale"] == [f"files: {conf}"]
    r = mmrag(env, "status", *corpus)
    assert r.returncode == 0 and "pages:" in r.stdout
    assert "changed" in r.stderr and str(conf) in r.stderr  # said once, then in-process
    for _ in range(50):
        if not status(env)["running"]:
            break
        time.sleep(0.2)
    assert not status(env)["running"]
    assert not Path(st["socket"]).exists()
    # a variable read at import differs: in-process too (and the server stops)
    start(env)
    e2 = {**env, "MMRAG_WARM": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [*MMRAG, "status", *corpus], check=False, env=e2, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0 and "env: OMP_NUM_THREADS" in r.stderr
    assert status(env)["running"]  # another environment: in-process, but the server serves on


@pytest.mark.slow
def test_auto_mode_starts_a_server_after_a_command_and_the_next_one_is_served(env, corpus) -> None:
    """``MMRAG_WARM`` unset (auto), no ``CI``: the first command runs in its own process and leaves a
    server starting in the background; once it listens, the same command is served with the same
    output. ``CI=true`` starts none."""
    if status(env)["running"]:
        mmrag(env, "warm", "stop")
    # the server and its clients share one environment: CI set to a value that starts a server
    auto = {**{k: v for k, v in env.items() if k != "MMRAG_WARM"}, "CI": "false"}

    def run(e: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*MMRAG, "status", *corpus], env=e, capture_output=True, text=True, timeout=300, check=False
        )

    first = run({**auto, "CI": "true"})
    assert first.returncode == 0, first.stderr
    time.sleep(1)
    assert not status(auto)["running"]
    first = run(auto)
    assert first.returncode == 0, first.stderr
    assert "warm server" not in first.stderr  # stderr is not a terminal: nothing new to parse
    # it holds the lock from the moment the command spawned it: `warm stop` waits for it, then stops it
    assert status(auto)["starting"] or status(auto)["running"]
    r = mmrag(auto, "warm", "stop")
    assert r.returncode == 0 and "stopped the warm server" in r.stderr, r.stderr
    assert not status(auto)["running"] and not status(auto)["starting"]
    assert run(auto).stdout == first.stdout  # in its own process again, and a server starts after it
    for _ in range(600):  # it imports for ~8-15 s, then listens
        st = status(auto)
        if st["running"]:
            break
        time.sleep(0.2)
    assert st["running"] and not st["stale"] and st["served"] == 0, st
    second = run(auto)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    assert status(auto)["served"] == 1
    mmrag(auto, "warm", "stop")


@pytest.mark.slow
def test_the_server_exits_when_idle(env) -> None:
    if status(env)["running"]:
        mmrag(env, "warm", "stop")
    st = start(env, "--idle-minutes", "0.2")  # 12 s after it listens; `warm status` does not count as use
    for _ in range(200):
        if not status(env)["running"]:
            break
        time.sleep(0.2)
    assert not status(env)["running"]
    assert not Path(st["socket"]).exists()
    assert "idle for" in Path(st["log"]).read_text()


@pytest.mark.slow
def test_a_command_that_outlives_its_stopped_server_holds_no_lock(env, tmp_path: Path) -> None:
    """`warm stop` while a served command runs: the server leaves, the command finishes on its own, and
    the lock (a server's life) is free at once: a new server may start (the command's process held
    the server's lock file open before, so `stop` failed after 30 s and `status` said `starting`)."""
    if not status(env)["running"]:
        start(env)
    hold = Path(env["MMRAG_FAULT_WAIT"].split(":", 1)[1])
    for f in hold.glob("*"):
        f.unlink()
    (hold / "armed").touch()
    try:
        p, _before = _index_in_background(env, tmp_path)
        for _ in range(600):
            if any(hold.glob("*.arrived")):
                break
            time.sleep(0.1)
        assert any(hold.glob("*.arrived")), "the command never reached its ingest step"
        r = mmrag(env, "warm", "stop")
        assert r.returncode == 0 and "stopped the warm server" in r.stderr, r.stderr
        st = status(env)
        assert not st["running"] and not st["starting"], st
        assert p.poll() is None  # still held: it outlived its server
    finally:
        (hold / "armed").unlink()
        (hold / "go").touch()
    _out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
