"""Workloads shared by ``fastconc bench`` and the pytest-benchmark suite,
so both measure exactly the same thing for every contender.

A contender is anything with ``send``/``recv`` (item by item) and
``send_many``/``recv_many`` (batches); :func:`contenders` adapts fastconc's
Channel and Queue of each backend plus ``queue.Queue`` and
``queue.SimpleQueue`` to that shape.
"""

from __future__ import annotations

import array
import collections
import concurrent.futures as cf
import importlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastconc import _impl

JOIN_TIMEOUT = 600.0

__all__ = [
    "bare_call",
    "borrow_return",
    "breaker_calls",
    "ask_round_trips",
    "counting_actor",
    "echo_actor",
    "pykka_counter",
    "tell_until_handled",
    "Contender",
    "contenders",
    "cross_thread",
    "cross_thread_batched",
    "cross_threads",
    "ping_pong",
    "ping_pong_contenders",
    "ring_polling",
    "select_loop",
    "deque_pairs",
    "execute_join",
    "fork_join",
    "map_items",
    "pipeline_checksum",
    "pipeline_contenders",
    "pool_contenders",
    "queue_chain",
    "ring_contenders",
    "ring_pairs",
    "same_thread_pairs",
    "simplequeue_transfer",
    "submit_result",
    "submit_wait",
    "typed_transfer",
]


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


def _join(t: threading.Thread, name: str) -> None:
    t.join(JOIN_TIMEOUT)
    if t.is_alive():
        raise RuntimeError(f"{name}: {t.name} still blocked after {JOIN_TIMEOUT}s")


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
    _join(t, c.name)
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
    _join(t, c.name)
    if total[0] != n * (n - 1) // 2:
        raise AssertionError(f"{c.name}: items lost or corrupted")


# ---------------------------------------------------------------- rings

_STOP = object()


def cross_threads(c: Contender, n: int, producers: int = 2, consumers: int = 2,
                  capacity: int = 1024) -> None:
    """``producers`` threads -> ``consumers`` threads, n ints in all, item by
    item; each consumer stops at its own stop marker."""
    obj = c.make(capacity)
    send, recv = c.send(obj), c.recv(obj)
    sums = [0] * consumers
    share = n // producers

    def produce(p: int) -> None:
        for i in range(p * share, (p + 1) * share):
            send(i)

    def consume(k: int) -> None:
        s = 0
        while (x := recv()) is not _STOP:
            s += x
        sums[k] = s

    threads = [threading.Thread(target=consume, args=(k,)) for k in range(consumers)]
    threads += [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    for t in threads:
        t.start()
    for t in threads[consumers:]:
        _join(t, c.name)
    for _ in range(consumers):
        send(_STOP)
    for t in threads[:consumers]:
        _join(t, c.name)
    total = share * producers
    if sum(sums) != total * (total - 1) // 2:
        raise AssertionError(f"{c.name}: items lost or corrupted")


def ring_polling(make: Callable[[int], Any], n: int, producers: int = 1, consumers: int = 1,
                 capacity: int = 1024) -> None:
    """cross_threads through a RingBuffer that never blocks: a full push and
    an empty pop yield the core (time.sleep(0)) and try again (polling)."""
    ring = make(capacity)
    push, pop = ring.push, ring.pop
    sums = [0] * consumers
    share = n // producers
    empty = object()

    def produce(p: int) -> None:
        for i in range(p * share, (p + 1) * share):
            while not push(i):
                _yield()

    def consume(k: int) -> None:
        s = 0
        while True:
            x = pop(empty)
            if x is empty:
                _yield()
                continue
            if x is _STOP:
                break
            s += x
        sums[k] = s

    threads = [threading.Thread(target=consume, args=(k,)) for k in range(consumers)]
    threads += [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    for t in threads:
        t.start()
    for t in threads[consumers:]:
        _join(t, "RingBuffer")
    for _ in range(consumers):
        while not push(_STOP):
            _yield()
    for t in threads[:consumers]:
        _join(t, "RingBuffer")
    total = share * producers
    if sum(sums) != total * (total - 1) // 2:
        raise AssertionError("RingBuffer: items lost or corrupted")


def ping_pong(send: Callable[[Any], Any], recv: Callable[[], Any],
              echo: Callable[[], None], n: int) -> None:
    """n round trips: send a number, wait for it to come back.  ``echo`` is
    the other side's loop (it runs on its own thread until it reads None)."""
    t = threading.Thread(target=echo)
    t.start()
    for i in range(n):
        send(i)
        if recv() != i:
            raise AssertionError("ping-pong: wrong answer")
    send(None)
    _join(t, "ping-pong")


def _echo_pair(make: Callable[[], tuple[Any, Any, Any, Any]]) -> Callable[[int], None]:
    """ping_pong over a pair of queues: make() -> (send, recv) of both."""
    def run(n: int) -> None:
        send_a, recv_a, send_b, recv_b = make()

        def echo() -> None:
            while (x := recv_a()) is not None:
                send_b(x)
        ping_pong(send_a, recv_b, echo, n)
    return run


def ping_pong_contenders() -> list[tuple[str, Callable[[int], None]]]:
    """(name, run(n)) for round trips between two threads: a Channel pair
    per backend, then a queue.SimpleQueue pair (the baseline)."""
    found: list[tuple[str, Callable[[int], None]]] = []
    for backend, ns in _impl.implementations().items():
        def channels(ns: Any = ns) -> tuple[Any, Any, Any, Any]:
            a, b = ns.Channel(1), ns.Channel(1)
            return a.send, a.recv, b.send, b.recv
        found.append((f"{backend} Channel pair", _echo_pair(channels)))

    def simple() -> tuple[Any, Any, Any, Any]:
        a: queue.SimpleQueue[Any] = queue.SimpleQueue()
        b: queue.SimpleQueue[Any] = queue.SimpleQueue()
        return a.put, a.get, b.put, b.get
    found.append(("queue.SimpleQueue pair", _echo_pair(simple)))
    return found


def select_loop(select: Callable[..., Any] | None, chans: Sequence[Any], n: int) -> None:
    """n sends, each followed by a select over all of ``chans`` (only the
    one just sent to is ready), or by a plain recv when select is None."""
    k = len(chans)
    if select is None:
        send, recv = chans[0].send, chans[0].recv
        for i in range(n):
            send(i)
            recv()
        return
    sends = [ch.send for ch in chans]
    for i in range(n):
        sends[i % k](i)
        select(recv=chans)


def ring_contenders() -> list[tuple[str, Callable[[int], Any]]]:
    """(name, factory) for every object ring of every backend."""
    found: list[tuple[str, Callable[[int], Any]]] = []
    for backend, ns in _impl.implementations().items():
        found.append((f"{backend} RingBuffer", ns.RingBuffer))
        found.append((f"{backend} SpscRingBuffer", ns.SpscRingBuffer))
    return found


def ring_pairs(make: Callable[[int], Any], n: int, capacity: int = 1024) -> None:
    """n push+pop pairs on one thread."""
    ring = make(capacity)
    push, pop = ring.push, ring.pop
    for i in range(n):
        push(i)
        pop()


def deque_pairs(n: int) -> None:
    """The baseline for ring_pairs: collections.deque append+popleft."""
    d: collections.deque[int] = collections.deque()
    append, popleft = d.append, d.popleft
    for i in range(n):
        append(i)
        popleft()


def _yield() -> None:
    # Rings never block: a side that finds nothing to do lets the other run.
    time.sleep(0)


def typed_transfer(ring: Any, src: array.array[Any], dst: array.array[Any],
                   chunk: int = 4096) -> None:
    """Move all of src into dst through a TypedRingBuffer: a producer thread
    push_many()s chunks, this thread pop_into()s them."""
    n = len(src)

    def produce() -> None:
        view, pos = memoryview(src), 0
        while pos < n:
            k = ring.push_many(view[pos:pos + chunk])
            pos += k
            if not k:
                _yield()

    t = threading.Thread(target=produce)
    t.start()
    view, pos = memoryview(dst), 0
    while pos < n:
        k = ring.pop_into(view[pos:pos + chunk])
        pos += k
        if not k:
            if not t.is_alive() and not len(ring):
                raise RuntimeError("TypedRingBuffer transfer: the producer stopped early")
            _yield()
    _join(t, "TypedRingBuffer transfer")


def simplequeue_transfer(src: array.array[Any], dst: array.array[Any]) -> None:
    """The baseline for typed_transfer: the same numbers one by one through
    queue.SimpleQueue."""
    q: queue.SimpleQueue[Any] = queue.SimpleQueue()
    n = len(src)

    def produce() -> None:
        put = q.put
        for x in src:
            put(x)

    t = threading.Thread(target=produce)
    t.start()
    get = q.get
    for i in range(n):
        dst[i] = get()
    _join(t, "SimpleQueue transfer")


# ---------------------------------------------------------------- pools


def pool_contenders() -> list[tuple[str, Callable[[int], Any]]]:
    """(name, max_workers -> executor): each backend's WorkStealingPool and
    the stdlib ThreadPoolExecutor."""
    found: list[tuple[str, Callable[[int], Any]]] = [
        (f"WorkStealingPool[{name}]", ns.WorkStealingPool)
        for name, ns in _impl.implementations().items()
    ]
    found.append(("ThreadPoolExecutor", cf.ThreadPoolExecutor))
    return found


def _noop() -> None:
    pass


def _square(x: int) -> int:
    return x * x


def submit_result(pool: cf.Executor, n: int) -> None:
    """n no-op tasks: submit them all, then collect every result."""
    futures = [pool.submit(_noop) for _ in range(n)]
    for f in futures:
        f.result(JOIN_TIMEOUT)


def submit_wait(pool: cf.Executor, n: int) -> None:
    """The stdlib way to run n fire-and-forget tasks: submit, then wait."""
    futures = [pool.submit(_noop) for _ in range(n)]
    _, not_done = cf.wait(futures, timeout=JOIN_TIMEOUT)
    if not_done:
        raise RuntimeError(f"{len(not_done)} tasks still running after {JOIN_TIMEOUT}s")


def execute_join(pool: Any, n: int) -> None:
    """n no-op tasks through execute() (no Future), then join()."""
    execute = pool.execute
    for _ in range(n):
        execute(_noop)
    if not pool.join(JOIN_TIMEOUT):
        raise RuntimeError(f"pool still busy after {JOIN_TIMEOUT}s")


def map_items(pool: cf.Executor, n: int) -> None:
    """map() a small Python function over n integers, results in order."""
    for _ in pool.map(_square, range(n), timeout=JOIN_TIMEOUT):
        pass


def _fib(pool: cf.Executor, n: int) -> int:
    if n < 2:
        return n
    branch = pool.submit(_fib, pool, n - 1)
    return _fib(pool, n - 2) + branch.result()


def fork_join(pool: Any, n: int) -> int:
    """Recursive fib(n) that submits one branch and waits for it (needs the
    pool to help while waiting; ThreadPoolExecutor would deadlock).
    Returns the steals it caused."""
    before = pool.stats().steals
    pool.submit(_fib, pool, n).result(JOIN_TIMEOUT)
    return int(pool.stats().steals - before)


# ---------------------------------------------------------------- pipelines


def _inc(x: int) -> int:
    return x + 1


def _double(x: int) -> int:
    return x * 2


PIPELINE_STAGES: tuple[Callable[[int], int], ...] = (_inc, _double, _inc)


def pipeline_contenders() -> list[tuple[str, Callable[[int, int], int]]]:
    """(name, (n, capacity) -> checksum): a 3-stage Pipeline.map on each
    backend, and the hand-written equivalent: a thread per stage joined by
    queue.Queue(capacity), a sentinel to end."""
    from fastconc.pipeline import Pipeline

    def fastconc_run(ns: Any) -> Callable[[int, int], int]:
        def run(n: int, capacity: int) -> int:
            return sum(Pipeline(PIPELINE_STAGES, capacity=capacity, backend=ns).map(range(n)))
        return run

    found = [(f"Pipeline[{name}]", fastconc_run(ns))
             for name, ns in _impl.implementations().items()]
    found.append(("queue.Queue + threads", queue_chain))
    return found


def queue_chain(n: int, capacity: int) -> int:
    """PIPELINE_STAGES as threads joined by bounded queue.Queues."""
    stop = object()
    queues: list[queue.Queue[Any]] = [queue.Queue(capacity)
                                      for _ in range(len(PIPELINE_STAGES) + 1)]

    def stage(fn: Callable[[int], int], inbox: queue.Queue[Any], outbox: queue.Queue[Any]) -> None:
        get, put = inbox.get, outbox.put
        while True:
            item = get()
            if item is stop:
                put(stop)
                return
            put(fn(item))

    def feed() -> None:
        put = queues[0].put
        for i in range(n):
            put(i)
        put(stop)

    workers = [threading.Thread(target=stage, args=(fn, queues[i], queues[i + 1]))
               for i, fn in enumerate(PIPELINE_STAGES)]
    workers.append(threading.Thread(target=feed))
    for t in workers:
        t.start()
    total = 0
    get = queues[-1].get
    while (item := get(timeout=JOIN_TIMEOUT)) is not stop:
        total += item
    for t in workers:
        _join(t, "queue chain stage")
    return total


def pipeline_checksum(n: int) -> int:
    """What every pipeline contender returns for n items."""
    return sum((i + 1) * 2 + 1 for i in range(n))


# ---------------------------------------------------------------- actors


def counting_actor() -> type:
    """An Actor that counts messages; asked ``None``, it answers the count.
    (Made on first use: this module must not import the high layer when
    it is imported.)"""
    from fastconc import Actor

    class Counter(Actor):
        def __init__(self) -> None:
            self.n = 0

        def handle_message(self, msg: Any) -> Any:
            if msg is None:
                return self.n
            self.n += 1
            return None

    return Counter


def echo_actor() -> type:
    """An Actor that answers every message with itself."""
    from fastconc import Actor

    class Echo(Actor):
        def handle_message(self, msg: Any) -> Any:
            return msg

    return Echo


def ask_round_trips(ask: Callable[..., Any], n: int) -> None:
    """n asks, each with a timeout, each answered before the next."""
    for i in range(n):
        if ask(i, timeout=JOIN_TIMEOUT) != i:
            raise AssertionError("ask: wrong answer")


def pykka_counter() -> Any:
    """The same actor on pykka (imported here: it is optional)."""
    pykka: Any = importlib.import_module("pykka")

    class Counter(pykka.ThreadingActor):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        def on_receive(self, message: Any) -> Any:
            if message is None:
                return self.n
            self.n += 1
            return None

    return Counter.start()


def tell_until_handled(tell: Callable[[Any], object], ask: Callable[..., Any], n: int) -> None:
    """Tell n messages, then ask for the count: every tell was handled."""
    before = ask(None, timeout=JOIN_TIMEOUT)
    for _ in range(n):
        tell(1)
    if ask(None, timeout=JOIN_TIMEOUT) != before + n:
        raise AssertionError("messages lost")


# ---------------------------------------------------------------- breaker, object pool


def bare_call(fn: Callable[[], object]) -> object:
    """The baseline for a breaker's call(): just the call."""
    return fn()


def breaker_calls(call: Callable[[Callable[[], object]], object], n: int) -> None:
    """n calls of a no-op through call(fn)."""
    for _ in range(n):
        call(_noop)


def borrow_return(get: Callable[[], Any], put: Callable[[Any], object], n: int) -> None:
    """n checkout + return pairs from one thread."""
    for _ in range(n):
        put(get())
