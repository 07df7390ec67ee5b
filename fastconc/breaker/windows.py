"""The sliding windows a breaker decides with: the last N calls, or the
calls of the last T seconds in bounded buckets."""

from __future__ import annotations

import math
from collections import deque


class _CountWindow:
    """The outcomes of the last ``size`` calls."""

    __slots__ = ("_outcomes", "failures")

    def __init__(self, size: int) -> None:
        self._outcomes: deque[bool] = deque(maxlen=size)
        self.failures = 0

    def add(self, failed: bool, now: float) -> None:
        outcomes = self._outcomes
        if len(outcomes) == outcomes.maxlen:
            self.failures -= outcomes[0]  # about to fall out
        outcomes.append(failed)
        self.failures += failed

    def counts(self, now: float) -> tuple[int, int]:
        return len(self._outcomes), self.failures

    def clear(self) -> None:
        self._outcomes.clear()
        self.failures = 0


class _TimeWindow:
    """The outcomes of the last ``duration`` seconds, in ``_BUCKETS`` buckets of
    ``duration / _BUCKETS`` seconds each: memory stays bounded whatever the call
    rate, at the price of a call leaving the window between
    ``duration * (1 - 1/_BUCKETS)`` and ``duration`` seconds after it was made."""

    _BUCKETS = 100

    __slots__ = ("_width", "_buckets", "calls", "failures")

    def __init__(self, duration: float) -> None:
        self._width = duration / self._BUCKETS
        self._buckets: deque[list[int]] = deque()  # [bucket index, calls, failures]
        self.calls = 0
        self.failures = 0

    def _expire(self, index: int) -> None:
        buckets = self._buckets
        oldest = index - self._BUCKETS  # this bucket and older are out
        while buckets and buckets[0][0] <= oldest:
            _, calls, failures = buckets.popleft()
            self.calls -= calls
            self.failures -= failures

    def add(self, failed: bool, now: float) -> None:
        index = math.floor(now / self._width)
        self._expire(index)
        buckets = self._buckets
        # >= rather than ==: an injected clock that steps back must not
        # reorder the buckets, so such a call joins the newest one.
        if buckets and buckets[-1][0] >= index:
            bucket = buckets[-1]
        else:
            bucket = [index, 0, 0]
            buckets.append(bucket)
        bucket[1] += 1
        bucket[2] += failed
        self.calls += 1
        self.failures += failed

    def counts(self, now: float) -> tuple[int, int]:
        self._expire(math.floor(now / self._width))
        return self.calls, self.failures

    def clear(self) -> None:
        self._buckets.clear()
        self.calls = 0
        self.failures = 0
