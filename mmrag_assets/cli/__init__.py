"""The ``mmrag`` command line: subcommand, flags, then Hydra overrides (``key=value``).

Every failure ends with one ``error: ...`` line naming the cause (exit 2; 1 when some documents
failed a blocking check); ``-v`` adds the traceback and Dagster's own log lines.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import traceback

from mmrag_assets.cli import answer, evaluation, pipeline, quality, scale, search, warm  # noqa: F401 - register the commands
from mmrag_assets.cli._app import COMMANDS, EXTRA_ARGS, HELP, say
from mmrag_assets.errors import MmragError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmrag",
        description="Multimodal retrieval: PDFs, images and recordings in one late-interaction index.",
        epilog="Overrides are Hydra key=value pairs, e.g. corpus.root=docs model=colsmol search.k=20",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, fn in COMMANDS.items():
        sp = sub.add_parser(name, help=HELP[name], description=HELP[name])
        for extra in EXTRA_ARGS[name]:
            extra(sp)
        sp.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Hydra overrides")
        sp.add_argument(
            "-v", "--verbose", action="store_true", help="show tracebacks and Dagster's own log lines"
        )
        sp.set_defaults(func=fn)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)  # overrides may also follow the flags
    flags = [e for e in extra if e.startswith("-")]
    if flags:
        parser.error(f"unrecognized arguments: {' '.join(flags)}")
    args.overrides = [*args.overrides, *extra]
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        return args.func(args)
    except MmragError as e:
        if args.verbose:
            traceback.print_exc()
        say(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - a bug: still one line, the traceback under -v
        if args.verbose:
            traceback.print_exc()
        say(f"error: unexpected {type(e).__name__}: {e} (run again with -v for the traceback)")
        return 1


def run() -> None:
    """The ``mmrag`` console script: the command in a fork of a running ``mmrag warm`` server when one
    matches (decided before anything heavy is imported: ``orchestration/warm_client.py``), else
    :func:`main` and, unless ``MMRAG_WARM`` says otherwise, a server started in the background for the
    next command; then a quick exit. Tearing down the interpreter
    (every module of Dagster, Great Expectations, LanceDB... freed one by one) cost 2-3 s after the
    last line was printed (py-spy, a one-file ``mmrag index``); nothing is left to do by then: every
    catalog connection and file is closed, so the process waits for its own non-daemon threads,
    runs the exit handlers (logging, multiprocessing, LanceDB's runtime) and exits."""
    from mmrag_assets.orchestration.warm_client import run_served, start_after

    code = run_served(sys.argv, warm.SERVED)
    if code is None:
        code = main()
        start_after(sys.argv, warm.SERVED)  # MMRAG_WARM=auto: a server for the next command
    exit_now(code)


def exit_now(code: int) -> None:
    """Exit without freeing the interpreter's objects (``os._exit``), after what a normal exit does
    that matters: ``threading``'s shutdown (thread pools told to stop, non-daemon threads joined),
    the ``atexit`` handlers, stdout and stderr flushed."""
    import atexit

    shutdown_threads = getattr(threading, "_shutdown", None)
    run_handlers = getattr(atexit, "_run_exitfuncs", None)
    if shutdown_threads is None or run_handlers is None:  # another Python: the ordinary exit
        sys.exit(code)
    shutdown_threads()
    run_handlers()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            pass
    os._exit(int(code or 0))


if __name__ == "__main__":
    run()
