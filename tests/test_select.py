"""select(): one operation out of several, on both backends."""

from __future__ import annotations

import inspect
import threading
import time

import pytest
from conftest import BACKENDS, JOIN_TIMEOUT, load_backend

from fastconc import ChannelClosed, Timeout


def test_receives_from_the_ready_channel(impl):
    a, b = impl.Channel(2), impl.Channel(2)
    b.send("x")
    assert impl.select(recv=[a, b]) == (b, "x")
    assert len(b) == 0


def test_sends_where_there_is_room(impl):
    full, free = impl.Channel(1), impl.Channel(1)
    full.send("old")
    assert impl.select(send=[(full, "a"), (free, "b")], timeout=0) == (free, None)
    assert free.recv(timeout=0) == "b"
    assert full.recv(timeout=0) == "old"
    assert len(full) == 0


def test_exactly_one_of_several_ready_operations_happens(impl):
    for _ in range(50):
        src, dst = impl.Channel(4), impl.Channel(4)
        src.send("in")
        ch, value = impl.select(recv=[src], send=[(dst, "out")], timeout=0)
        if ch is src:
            assert value == "in"
            assert (len(src), len(dst)) == (0, 0)
        else:
            assert ch is dst
            assert value is None
            assert (len(src), len(dst)) == (1, 1)


def test_timeout_zero_never_blocks(impl):
    a, b = impl.Channel(1), impl.Channel(1)
    b.send("full")
    started = time.monotonic()
    with pytest.raises(Timeout):
        impl.select(recv=[a], send=[(b, "no room")], timeout=0)
    assert time.monotonic() - started < 5
    assert len(a) == 0
    assert b.recv(timeout=0) == "full"


def test_timeout_expires(impl):
    a = impl.Channel(1)
    started = time.monotonic()
    with pytest.raises(Timeout, match="select"):
        impl.select(recv=[a], timeout=0.05)
    assert time.monotonic() - started >= 0.045


def test_a_closed_drained_channel_is_ready_and_raises_naming_it(impl):
    idle, closed = impl.Channel(1), impl.Channel(1)
    closed.close()
    with pytest.raises(ChannelClosed) as info:
        impl.select(recv=[idle, closed], timeout=JOIN_TIMEOUT)
    assert repr(closed) in str(info.value)
    with pytest.raises(ChannelClosed):
        impl.select(send=[(closed, 1)], timeout=0)


def test_a_closed_channel_still_gives_its_items(impl):
    ch = impl.Channel(2)
    ch.send(1)
    ch.close()
    assert impl.select(recv=[ch]) == (ch, 1)
    with pytest.raises(ChannelClosed):
        impl.select(recv=[ch])


def test_arguments_are_checked(impl):
    ch = impl.Channel(1)
    with pytest.raises(ValueError, match="at least one"):
        impl.select()
    with pytest.raises(TypeError, match="Channel"):
        impl.select(recv=[ch, "not a channel"])
    with pytest.raises(TypeError, match="pairs"):
        impl.select(send=[ch])
    with pytest.raises(TypeError, match="pairs"):
        impl.select(send=[(ch, 1, 2)])
    with pytest.raises(TypeError, match="Channel"):
        impl.select(send=[(object(), 1)])
    with pytest.raises(ValueError, match="timeout"):
        impl.select(recv=[ch], timeout=-1)
    assert len(ch) == 0


@pytest.mark.compiled
def test_channels_of_the_other_backend_are_refused(impl):
    other = load_backend(next(b for b in BACKENDS if b != impl.name))
    with pytest.raises(TypeError, match="Channel"):
        impl.select(recv=[other.Channel(1)], timeout=0)


def test_duplicates_and_many_operations(impl):
    chans = [impl.Channel(1) for _ in range(20)]
    chans[13].send("thirteen")
    assert impl.select(recv=chans + chans, timeout=0) == (chans[13], "thirteen")
    with pytest.raises(Timeout):
        impl.select(recv=chans * 3, timeout=0.01)


def test_ready_operations_are_chosen_fairly(impl):
    a, b = impl.Channel(1), impl.Channel(1)
    wins = {id(a): 0, id(b): 0}
    rounds = 2000
    for _ in range(rounds):
        for ch in (a, b):
            if len(ch) == 0:
                ch.send(0)
        ch, _ = impl.select(recv=[a, b], timeout=0)
        wins[id(ch)] += 1
    # Binomial(2000, 1/2): 6 standard deviations is +-134.
    assert abs(wins[id(a)] - rounds / 2) < 134, wins


def test_a_blocked_select_wakes_for_any_of_its_channels(impl, threads):
    for which in range(3):
        chans = [impl.Channel(1) for _ in range(3)]
        ready = threading.Event()
        result: list[object] = []

        def selector(chans=chans, ready=ready, result=result) -> None:
            ready.set()
            result.append(impl.select(recv=chans, timeout=JOIN_TIMEOUT))

        threads.start(selector)
        assert ready.wait(JOIN_TIMEOUT)
        chans[which].send(which, timeout=JOIN_TIMEOUT)
        threads.join()
        assert result == [(chans[which], which)]


def test_a_blocked_select_sends_once_room_appears(impl, threads):
    full = impl.Channel(1)
    full.send("first")
    ready = threading.Event()
    result: list[object] = []

    def selector() -> None:
        ready.set()
        result.append(impl.select(recv=[impl.Channel(1)], send=[(full, "second")],
                                  timeout=JOIN_TIMEOUT))

    threads.start(selector)
    assert ready.wait(JOIN_TIMEOUT)
    assert full.recv(timeout=JOIN_TIMEOUT) == "first"
    threads.join()
    assert result == [(full, None)]
    assert full.recv(timeout=JOIN_TIMEOUT) == "second"


def test_close_wakes_a_blocked_select(impl, threads):
    a, b = impl.Channel(1), impl.Channel(1)
    ready = threading.Event()
    raised: list[BaseException] = []

    def selector() -> None:
        ready.set()
        try:
            impl.select(recv=[a, b], timeout=JOIN_TIMEOUT)
        except ChannelClosed as exc:
            raised.append(exc)

    threads.start(selector)
    assert ready.wait(JOIN_TIMEOUT)
    b.close()
    threads.join()
    assert len(raised) == 1
    assert repr(b) in str(raised[0])


def test_a_select_woken_for_an_item_another_took_waits_again(impl, threads):
    # Two selects on one channel, one item: one gets it, the other times out
    # (and nothing is lost or given twice).
    ch = impl.Channel(4)
    results: list[object] = []
    barrier = threading.Barrier(3)

    def selector() -> None:
        barrier.wait(JOIN_TIMEOUT)
        try:
            results.append(impl.select(recv=[ch], timeout=0.5))
        except Timeout:
            results.append("timeout")

    for _ in range(2):
        threads.start(selector)
    barrier.wait(JOIN_TIMEOUT)
    ch.send("only")
    threads.join()
    assert sorted(map(str, results)) == sorted([str((ch, "only")), "timeout"])
    assert len(ch) == 0


@pytest.mark.compiled
def test_both_backends_take_the_same_arguments():
    def params(backend: str) -> list[tuple[str, object, object]]:
        sig = inspect.signature(load_backend(backend).select)
        return [(p.name, p.kind, p.default) for p in sig.parameters.values()]

    assert params("cython") == params("python") == [
        ("recv", inspect.Parameter.POSITIONAL_OR_KEYWORD, ()),
        ("send", inspect.Parameter.POSITIONAL_OR_KEYWORD, ()),
        ("timeout", inspect.Parameter.KEYWORD_ONLY, None),
    ]
