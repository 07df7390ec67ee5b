"""Actors (both backends) against pykka's ThreadingActor, side by side.
Run: ``tox -e bench -- -k actor``."""

from __future__ import annotations

import gc
import threading
import tracemalloc

import pykka
import pytest
from conftest import scaled

from fastconc import Actor, ActorSystem, _impl
from fastconc._bench.workloads import counting_actor, pykka_counter, tell_until_handled

TELLS = scaled(50_000)
ASKS = scaled(5_000)
SPAWNS = scaled(100_000)
PINGS = scaled(20_000)
TIMEOUT = 600.0

BACKENDS = list(_impl.implementations())
CONTENDERS = [*BACKENDS, "pykka"]


# The same counting actor `fastconc bench` measures.
Counter = counting_actor()


@pytest.fixture(scope="module")
def systems():
    made = {name: ActorSystem(2, backend=_impl.implementations()[name]) for name in BACKENDS}
    yield made
    for system in made.values():
        system.shutdown(TIMEOUT)
    pykka.ActorRegistry.stop_all()


def _counter(systems, name, timeout=None):  # noqa: ANN001, ANN202 - (tell, ask, stop)
    """(tell, ask, stop) of a fresh counting actor; ask's timeout defaults to
    the one given here (None may answer inline, a number goes through a
    worker: the two ask groups)."""
    if name == "pykka":
        ref = pykka_counter()
    else:
        ref = systems[name].spawn(Counter, mailbox_size=TELLS + 1)
    return ref.tell, lambda m, timeout=timeout: ref.ask(m, timeout=timeout), ref.stop


@pytest.mark.benchmark(group="tell: 50k messages to one actor, until all are handled")
@pytest.mark.parametrize("name", CONTENDERS)
def test_tell_throughput(benchmark, systems, name):
    def run() -> None:
        tell, ask, stop = _counter(systems, name, timeout=TIMEOUT)
        tell_until_handled(tell, ask, TELLS)  # the last ask is behind every tell
        stop()

    benchmark.extra_info["messages"] = TELLS
    benchmark.pedantic(run, rounds=5, warmup_rounds=1)


@pytest.mark.benchmark(group="ask: 5k sequential round trips from the main thread")
@pytest.mark.parametrize("name", CONTENDERS)
def test_ask_round_trips(benchmark, systems, name):
    _ask_loop(benchmark, *_counter(systems, name))  # no timeout: may answer inline


@pytest.mark.benchmark(group="ask with a timeout: 5k round trips through a worker")
@pytest.mark.parametrize("name", CONTENDERS)
def test_ask_round_trips_with_timeout(benchmark, systems, name):
    _ask_loop(benchmark, *_counter(systems, name, timeout=TIMEOUT))


def _ask_loop(benchmark, tell, ask, stop) -> None:  # noqa: ANN001
    def run() -> None:
        for _ in range(ASKS):
            ask(None)

    benchmark.extra_info["asks"] = ASKS
    benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    stop()


class Pinger(Actor):
    def __init__(self, done: threading.Event, rounds: int) -> None:
        self.done = done
        self.rounds = rounds

    def handle_message(self, msg):  # noqa: ANN001, ANN201
        peer, n = msg
        if n >= self.rounds:
            self.done.set()
        else:
            peer.tell((self.context.self_ref, n + 1))


class PykkaPinger(pykka.ThreadingActor):
    def __init__(self, done: threading.Event, rounds: int) -> None:
        super().__init__()
        self.done = done
        self.rounds = rounds

    def on_receive(self, message):  # noqa: ANN001, ANN201
        peer, n = message
        if n >= self.rounds:
            self.done.set()
        else:
            peer.tell((self.actor_ref, n + 1))


@pytest.mark.benchmark(group="ping-pong: 20k messages between two actors")
@pytest.mark.parametrize("name", CONTENDERS)
def test_ping_pong(benchmark, systems, name):
    def run() -> None:
        done = threading.Event()
        if name == "pykka":
            a, b = PykkaPinger.start(done, PINGS), PykkaPinger.start(done, PINGS)
        else:
            a = systems[name].spawn(Pinger, done, PINGS)
            b = systems[name].spawn(Pinger, done, PINGS)
        a.tell((b, 0))
        assert done.wait(TIMEOUT)
        a.stop()
        b.stop()

    benchmark.extra_info["messages"] = PINGS
    benchmark.pedantic(run, rounds=5, warmup_rounds=1)


class Idle(Actor):
    def handle_message(self, msg):  # noqa: ANN001, ANN201
        return msg


@pytest.mark.benchmark(group="spawn 100k idle actors (pykka: one thread each, not run)")
@pytest.mark.parametrize("name", BACKENDS)
def test_spawn_many(benchmark, name):
    per_actor: list[float] = []

    def run() -> None:
        system = ActorSystem(2, backend=_impl.implementations()[name])
        gc.collect()
        tracemalloc.start()
        refs = [system.spawn(Idle) for _ in range(SPAWNS)]
        per_actor.append(tracemalloc.get_traced_memory()[0] / SPAWNS)
        tracemalloc.stop()
        assert refs[-1].ask(1, timeout=TIMEOUT) == 1
        system.shutdown(TIMEOUT)

    benchmark.pedantic(run, rounds=3, warmup_rounds=0)
    benchmark.extra_info["actors"] = SPAWNS
    benchmark.extra_info["bytes per actor (tracemalloc, incl. the refs list)"] = per_actor
