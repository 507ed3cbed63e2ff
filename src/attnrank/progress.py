"""Progress of long loops as periodic log lines (done/total, rate, ETA), readable in a rule's log file.

A terminal bar (tqdm) writes carriage returns to stderr, which a batch job's log file shows as one garbled line or
not at all; these lines go through ``logging`` like everything else. The interval is ``every_s`` seconds
(default: ``$ATTNRANK_PROGRESS_SECONDS`` or 30); a last line with the total time is written when the loop ends.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

_log = logging.getLogger("attnrank.progress")


def default_interval() -> float:
    return float(os.environ.get("ATTNRANK_PROGRESS_SECONDS", 30))


def _fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """Count work done; log ``desc: done/total unit (pct), rate, ETA`` every ``every_s`` seconds and at ``close``."""

    def __init__(self, total: int | None, desc: str, unit: str = "it", log: logging.Logger | None = None,
                 every_s: float | None = None, enabled: bool = True):
        self.total, self.desc, self.unit = total, desc, unit
        self.log = log or _log
        self.every_s = default_interval() if every_s is None else float(every_s)
        self.enabled = enabled
        self.n = 0
        self.t0 = self._last = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if self.enabled and now - self._last >= self.every_s:
            self._last = now
            self.log.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        dt = (now or time.perf_counter()) - self.t0
        rate = self.n / dt if dt > 0 else 0.0
        if self.total:
            eta = (self.total - self.n) / rate if rate > 0 else float("nan")
            left = _fmt_s(eta) if eta == eta else "?"
            return f"{self.desc}: {self.n}/{self.total} {self.unit} ({100 * self.n / self.total:.0f}%), {rate:.3g} {self.unit}/s, elapsed {_fmt_s(dt)}, ETA {left}"
        return f"{self.desc}: {self.n} {self.unit}, {rate:.3g} {self.unit}/s, elapsed {_fmt_s(dt)}"

    def close(self) -> None:
        if self.enabled:
            dt = time.perf_counter() - self.t0
            self.log.info("%s: %d %s in %.1f s (%.3g %s/s)", self.desc, self.n, self.unit, dt, self.n / dt if dt > 0 else 0.0, self.unit)
            self.enabled = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it", log: logging.Logger | None = None,
             every_s: float | None = None, enabled: bool = True) -> Iterator[T]:
    """Iterate ``items`` with periodic progress lines (a drop-in for ``tqdm(items, desc=...)``)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(total, desc, unit, log=log, every_s=every_s, enabled=enabled) as bar:
        for x in items:
            yield x
            bar.update(1)
