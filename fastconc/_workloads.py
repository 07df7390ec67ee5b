"""Workloads shared by ``python -m fastconc`` and the pytest-benchmark suite,
so both measure exactly the same thing for every contender.

A contender is anything with ``send``/``recv`` (item by item) and
``send_many``/``recv_many`` (batches); :func:`contenders` adapts fastconc's
Channel and Queue of each backend plus ``queue.Queue`` and
``queue.SimpleQueue`` to that shape.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastconc import _impl

JOIN_TIMEOUT = 600.0

__all__ = ["Contender", "contenders", "cross_thread", "cross_thread_batched", "same_thread_pairs"]


@dataclass(frozen=True)
class Contender:
    name: str
    make: Callable[[int], Any]            # capacity -> fresh object
    send: Callable[[Any], Callable[[Any], Any]]
    recv: Callable[[Any], Callable[[], Any]]
    send_many: Callable[[Any], Callable[[Sequence[Any]], Any]]
    recv_many: Callable[[Any], Callable[[int], list[Any]]]
    baseline: bool = False


def _stdlib_recv_many(q: Any) -> Callable[[int], list[Any]]:
    """What a queue.Queue user writes for a batch: block for one, then take
    what is there without blocking."""
    get, get_nowait = q.get, q.get_nowait

    def recv_many(k: int) -> list[Any]:
        out = [get()]
        try:
            while len(out) < k:
                out.append(get_nowait())
        except queue.Empty:
            pass
        return out

    return recv_many


def _stdlib_send_many(q: Any) -> Callable[[Sequence[Any]], None]:
    put = q.put

    def send_many(items: Sequence[Any]) -> None:
        for x in items:
            put(x)

    return send_many


def contenders(kind: str = "channel") -> list[Contender]:
    """Contenders for the channel workloads: fastconc Channel (kind="channel")
    or Queue (kind="queue") per backend, then the stdlib baselines."""
    found: list[Contender] = []
    for backend, ns in _impl.implementations().items():
        if kind == "channel":
            found.append(Contender(
                f"{backend} Channel", ns.Channel,
                lambda c: c.send, lambda c: c.recv,
                lambda c: c.send_many, lambda c: c.recv_many,
            ))
        else:
            found.append(Contender(
                f"{backend} Queue", ns.Queue,
                lambda q: q.put, lambda q: q.get,
                _stdlib_send_many, _stdlib_recv_many,
            ))
    found.append(Contender(
        "queue.Queue", queue.Queue,
        lambda q: q.put, lambda q: q.get, _stdlib_send_many, _stdlib_recv_many, baseline=True,
    ))
    found.append(Contender(
        "queue.SimpleQueue", lambda capacity: queue.SimpleQueue(),
        lambda q: q.put, lambda q: q.get, _stdlib_send_many, _stdlib_recv_many,
    ))
    return found


def _join(t: threading.Thread, c: Contender) -> None:
    t.join(JOIN_TIMEOUT)
    if t.is_alive():
        raise RuntimeError(f"{c.name}: consumer still blocked after {JOIN_TIMEOUT}s")


def same_thread_pairs(c: Contender, n: int, capacity: int = 1024) -> None:
    """n send+recv pairs on one thread (the uncontended cost of one hand-off)."""
    obj = c.make(capacity)
    send, recv = c.send(obj), c.recv(obj)
    for i in range(n):
        send(i)
        recv()


def cross_thread(c: Contender, n: int, capacity: int = 1024) -> None:
    """One producer thread -> one consumer thread, n ints, item by item."""
    obj = c.make(capacity)
    send, recv = c.send(obj), c.recv(obj)
    total = [0]

    def consume() -> None:
        s = 0
        for _ in range(n):
            s += recv()
        total[0] = s

    t = threading.Thread(target=consume)
    t.start()
    for i in range(n):
        send(i)
    _join(t, c)
    if total[0] != n * (n - 1) // 2:
        raise AssertionError(f"{c.name}: items lost or corrupted")


def cross_thread_batched(c: Contender, n: int, batch: int = 256, capacity: int = 1024) -> None:
    """Like cross_thread, but in batches of ``batch`` on both sides."""
    obj = c.make(capacity)
    send_many, recv_many = c.send_many(obj), c.recv_many(obj)
    chunks = [list(range(i, min(n, i + batch))) for i in range(0, n, batch)]
    total = [0]

    def consume() -> None:
        got = s = 0
        while got < n:
            part = recv_many(batch)
            got += len(part)
            s += sum(part)
        total[0] = s

    t = threading.Thread(target=consume)
    t.start()
    for chunk in chunks:
        send_many(chunk)
    _join(t, c)
    if total[0] != n * (n - 1) // 2:
        raise AssertionError(f"{c.name}: items lost or corrupted")
