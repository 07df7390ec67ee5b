"""What the ObjectPool tests share: a stand-in connection and its factory,
a fake clock, a Channel that tells when a get() blocks, and a stats view."""

from __future__ import annotations

import itertools
import threading
import types

from fastconc.objpool import ObjectPool


class Conn:
    """A stand-in for a connection: numbered, closable."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def __repr__(self) -> str:
        return f"Conn({self.n})"


class Factory:
    """Makes Conn(0), Conn(1)...; can be told to fail next time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = itertools.count()
        self.made: list[Conn] = []
        self.fail_next = 0

    def __call__(self) -> Conn:
        with self._lock:
            if self.fail_next:
                self.fail_next -= 1
                raise ConnectionError("cannot connect")
            conn = Conn(next(self._count))
            self.made.append(conn)
            return conn


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def spy_backend(impl, waiting: threading.Event):  # noqa: ANN001, ANN201
    """impl, but its Channel sets `waiting` as a blocking recv starts: the
    pool only calls recv() when no slot is free, so a test knows a get() is
    (about to be) blocked without sleeping."""

    class SpyChannel(impl.Channel):
        def recv(self, timeout=None):  # noqa: ANN001, ANN202
            waiting.set()
            return super().recv(timeout)

    return types.SimpleNamespace(name=impl.name, Channel=SpyChannel)


def stats_of(pool: ObjectPool) -> dict[str, int]:
    s = pool.stats()
    return {"size": s.size, "idle": s.idle, "in_use": s.in_use, "created": s.created,
            "destroyed": s.destroyed}
