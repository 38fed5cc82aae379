"""Progress lines for long work (pages, documents, items): a rate and an ETA, at most every few
seconds, so that a 300-page PDF says where it is without a log line per page (each Dagster log
line is an event in the instance's storage: ~10-50 ms on disk)."""

from __future__ import annotations

import time
from collections.abc import Callable


class Progress:
    """``p = Progress("rendered", total, say); p.step(); ...; p.done()``."""

    def __init__(
        self,
        what: str,
        total: int,
        say: Callable[[str], None] | None,
        *,
        every_s: float = 5.0,
        unit: str = "",
    ):
        self.what, self.total, self.say, self.every_s, self.unit = what, total, say, every_s, unit
        self.n = 0
        self.t0 = self.last = time.perf_counter()

    def step(self, k: int = 1, detail: str = "") -> None:
        self.n += k
        now = time.perf_counter()
        if self.say is not None and now - self.last >= self.every_s and self.n < self.total:
            self.last = now
            self.say(self.line(detail))

    def line(self, detail: str = "") -> str:
        elapsed = time.perf_counter() - self.t0
        rate = self.n / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.n) / rate if rate > 0 else float("nan")
        unit = f" {self.unit}" if self.unit else ""
        tail = f" ({detail})" if detail else ""
        return f"{self.what} {self.n}/{self.total}{unit}, {rate:.1f}/s, ETA {eta:.0f} s{tail}"

    def done(self, detail: str = "") -> None:
        if self.say is not None and self.total:
            elapsed = time.perf_counter() - self.t0
            self.say(
                f"{self.what} {self.n}/{self.total}{' ' + self.unit if self.unit else ''} in {elapsed:.1f} s"
                + (f" ({detail})" if detail else "")
            )


def page_counter(
    what: str, say: Callable[[str], None] | None, *, unit: str, detail: str = "", every_s: float = 5.0
) -> Callable[[int, int], None]:
    """A ``(done, total)`` callback for a loop that learns its total when it starts (a PDF's page
    count): reports through a :class:`Progress` made on the first call, ``detail`` on each line;
    a loop shorter than ``every_s`` says nothing (each line is a Dagster event: one per small PDF
    would cost more than rendering it)."""
    state: dict[str, Progress] = {}

    def on_step(done: int, total: int) -> None:
        p = state.get("p")
        if p is None:
            p = state["p"] = Progress(what, total, say, unit=unit, every_s=every_s)
        p.step(done - p.n, detail)
        if done >= total and p.last > p.t0:  # only a loop long enough to have said where it was
            p.done(detail)

    return on_step
