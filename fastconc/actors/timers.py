"""Time in the actor system: checking a timeout argument and the time left
until its deadline (made by fastconc._support.waits.deadline), and the one
timer thread per system that runs receive timeouts and restart back-offs."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from fastconc._support.args import seconds_arg
from fastconc._support.report import report_uncaught as _report


def _timeout_arg(timeout: object) -> float | None:
    """A ``timeout`` argument checked: None (or inf) waits forever."""
    if timeout is None:
        return None
    seconds = seconds_arg(timeout, "timeout", zero_ok=True)
    return None if seconds == float("inf") else seconds


def _left(deadline: float | None) -> float | None:
    """Seconds left until deadline (None: no deadline), never negative."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class _Timers:
    """One thread per system running callbacks at deadlines (receive
    timeouts, restart back-offs); started on first use, asleep on a
    condition variable until the next deadline."""

    def __init__(self, name: str) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Callable[[Any], object], Any]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._name = name

    def call_later(self, delay: float, fn: Callable[[Any], object], arg: Any) -> None:
        with self._cond:
            if self._closed:
                return
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), fn, arg))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    if self._heap:
                        wait = self._heap[0][0] - time.monotonic()
                        if wait <= 0:
                            break
                        self._cond.wait(wait)
                    else:
                        self._cond.wait()
                if self._closed:
                    return
                _, _, fn, arg = heapq.heappop(self._heap)
            try:
                fn(arg)
            except BaseException as exc:  # a timer callback must not kill the timer
                _report(exc)

    def close(self, timeout: float | None = None) -> None:
        """Run nothing more; wait up to ``timeout`` seconds for a callback
        that is running (a restart runs the actor's factory) to return."""
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
