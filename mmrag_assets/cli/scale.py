"""``mmrag worker``: a celery worker that executes the steps of scale-out runs (``orchestration=celery``)."""

from __future__ import annotations

import argparse
import os
import shutil

from mmrag_assets.cli._app import command, config_of, say


def worker_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--queue", "-q", action="append", default=None,
                    help="celery queue to consume (repeat; default: dagster and mmrag-embed). "
                    "CPU-only workers: --queue dagster; GPU workers: --queue mmrag-embed")  # fmt: skip
    sp.add_argument("--name", default=None, help="worker name (default: a random dagster-XXXXXX)")
    sp.add_argument("--concurrency", type=int, default=1, help="steps this worker runs at once (default: 1)")


@command(
    "worker",
    "start a celery worker for scale-out runs (orchestration=celery): it executes their steps",
    worker_flags,
)
def cmd_worker(args: argparse.Namespace) -> int:
    from mmrag_assets.defs.shared import EMBED_QUEUE
    from mmrag_assets.errors import MmragError
    from mmrag_assets.orchestration.distributed import celery_yaml
    from mmrag_assets.orchestration.forkserver import preload_modules
    from mmrag_assets.orchestration.instance import dagster_home, open_instance

    cfg = config_of(args)
    if cfg.orchestration.executor != "celery":
        raise MmragError(
            "mmrag worker serves orchestration=celery: add orchestration=celery (and its settings)"
        )
    with open_instance(cfg):  # writes the instance's dagster.yaml (Postgres) the worker reads
        pass
    home = dagster_home(cfg)
    conf = home / "celery.yaml"
    conf.write_text(celery_yaml(cfg))
    exe = shutil.which("celery")
    if exe is None:
        raise MmragError("celery is not installed in this environment: run `uv sync`")
    os.environ["DAGSTER_HOME"] = str(home)
    from dagster_celery.cli import get_config_dir, get_worker_name

    # what `dagster-celery worker start -y celery.yaml` does (a config module on PYTHONPATH), then exec
    # celery itself, so that this process is the worker (signals, pid) rather than a wrapper around it
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            p for p in (get_config_dir(str(conf)), os.environ.get("PYTHONPATH")) if p
        ),
    }
    env["MMRAG_PRELOAD"] = ",".join(
        preload_modules(cfg)
    )  # imported once, before the pool forks (celery_app.py)
    queues = args.queue or ["dagster", EMBED_QUEUE]
    argv = [exe, "-A", "mmrag_assets.orchestration.celery_app", "worker", "--prefetch-multiplier=1", "--disable-prefetch", "--loglevel=INFO",
            "-Q", ",".join(queues), "-n", get_worker_name(args.name), f"--concurrency={args.concurrency}", "--pool=prefork"]  # fmt: skip
    say(f"celery worker on {', '.join(queues)} (broker {cfg.orchestration.celery.broker})")
    os.execve(exe, argv, env)
    return 0  # not reached
