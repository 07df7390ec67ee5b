"""Hypothesis state machines: every primitive against a plain-deque model."""

from __future__ import annotations

import array
import os
from collections import deque

import pytest
from conftest import BACKENDS, load_backend
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from fastconc import ChannelClosed, Empty, Full, Timeout

EXAMPLES = int(os.environ.get("FASTCONC_HYPOTHESIS_EXAMPLES", "60"))
SETTINGS = settings(max_examples=EXAMPLES, stateful_step_count=40, deadline=None)

items = st.integers(-5, 1000)


class ChannelMachine(RuleBasedStateMachine):
    backend = "python"

    @initialize(capacity=st.integers(1, 6))
    def create(self, capacity):
        self.ch = load_backend(self.backend).Channel(capacity)
        self.capacity = capacity
        self.model: deque[int] = deque()
        self.closed = False

    @rule(item=items)
    def try_send(self, item):
        if self.closed:
            with pytest.raises(ChannelClosed):
                self.ch.try_send(item)
            return
        ok = self.ch.try_send(item)
        assert ok == (len(self.model) < self.capacity)
        if ok:
            self.model.append(item)

    @rule(item=items)
    def send_no_wait(self, item):
        if self.closed:
            with pytest.raises(ChannelClosed):
                self.ch.send(item, timeout=0)
        elif len(self.model) < self.capacity:
            self.ch.send(item, timeout=0)
            self.model.append(item)
        else:
            with pytest.raises(Timeout):
                self.ch.send(item, timeout=0)

    @rule(batch=st.lists(items, max_size=8))
    def send_many(self, batch):
        room = self.capacity - len(self.model)
        if not batch:
            assert self.ch.send_many(batch, timeout=0) == 0
        elif self.closed:
            with pytest.raises(ChannelClosed):
                self.ch.send_many(batch, timeout=0)
        elif room == 0:
            with pytest.raises(Timeout):
                self.ch.send_many(batch, timeout=0)
        else:
            sent = self.ch.send_many(batch, timeout=0)
            assert sent == min(room, len(batch))
            self.model.extend(batch[:sent])

    @rule()
    def try_recv(self):
        if self.model:
            assert self.ch.try_recv() == self.model.popleft()
        elif self.closed:
            with pytest.raises(ChannelClosed):
                self.ch.try_recv()
        else:
            with pytest.raises(Empty):
                self.ch.try_recv()

    @rule(n=st.integers(1, 8))
    def recv_many(self, n):
        if self.model:
            expected = [self.model.popleft() for _ in range(min(n, len(self.model)))]
            assert self.ch.recv_many(n, timeout=0) == expected
        elif self.closed:
            with pytest.raises(ChannelClosed):
                self.ch.recv_many(n, timeout=0)
        else:
            with pytest.raises(Timeout):
                self.ch.recv_many(n, timeout=0)

    @precondition(lambda self: not self.closed)
    @rule()
    def close(self):
        self.ch.close()
        self.closed = True

    @invariant()
    def same_length(self):
        if hasattr(self, "ch"):
            assert len(self.ch) == len(self.model)
            assert self.ch.closed == self.closed


class QueueMachine(RuleBasedStateMachine):
    backend = "python"

    @initialize(maxsize=st.integers(-1, 5))
    def create(self, maxsize):
        self.q = load_backend(self.backend).Queue(maxsize)
        self.maxsize = maxsize
        self.model: deque[int] = deque()
        self.unfinished = 0
        self.shutdown = False

    def full(self):
        return 0 < self.maxsize <= len(self.model)

    @rule(item=items)
    def put_nowait(self, item):
        if self.shutdown:
            with pytest.raises(ChannelClosed):
                self.q.put_nowait(item)
        elif self.full():
            with pytest.raises(Full):
                self.q.put_nowait(item)
        else:
            self.q.put_nowait(item)
            self.model.append(item)
            self.unfinished += 1

    @rule()
    def get_nowait(self):
        if self.model:
            assert self.q.get_nowait() == self.model.popleft()
        elif self.shutdown:
            with pytest.raises(ChannelClosed):
                self.q.get_nowait()
        else:
            with pytest.raises(Empty):
                self.q.get(timeout=0)

    @rule()
    def task_done(self):
        if self.unfinished:
            self.q.task_done()
            self.unfinished -= 1
        else:
            with pytest.raises(ValueError):
                self.q.task_done()

    @rule(immediate=st.booleans())
    def shut_down(self, immediate):
        self.q.shutdown(immediate=immediate)
        self.shutdown = True
        if immediate:
            self.unfinished -= min(self.unfinished, len(self.model))
            self.model.clear()

    @invariant()
    def observers(self):
        if hasattr(self, "q"):
            assert self.q.qsize() == len(self.model)
            assert self.q.empty() == (not self.model)
            assert self.q.full() == self.full()
            assert self.q.unfinished_tasks == self.unfinished
            assert self.q.is_shutdown == self.shutdown


class RingMachine(RuleBasedStateMachine):
    """RingBuffer or SpscRingBuffer (one thread is both producer and consumer)."""

    backend = "python"
    kind = "RingBuffer"

    @initialize(capacity=st.integers(1, 9))
    def create(self, capacity):
        self.ring = getattr(load_backend(self.backend), self.kind)(capacity)
        self.capacity = max(2, 1 << (capacity - 1).bit_length())
        self.model: deque[int] = deque()

    @rule(item=items)
    def push(self, item):
        ok = self.ring.push(item)
        assert ok == (len(self.model) < self.capacity)
        if ok:
            self.model.append(item)

    @rule(batch=st.lists(items, max_size=12))
    def push_many(self, batch):
        n = self.ring.push_many(batch)
        assert n == min(len(batch), self.capacity - len(self.model))
        self.model.extend(batch[:n])

    @rule()
    def pop(self):
        if self.model:
            assert self.ring.pop() == self.model.popleft()
        else:
            with pytest.raises(Empty):
                self.ring.pop()
            assert self.ring.pop("d") == "d"

    @rule(n=st.integers(0, 12))
    def pop_many(self, n):
        expected = [self.model.popleft() for _ in range(min(n, len(self.model)))]
        assert self.ring.pop_many(n) == expected

    @invariant()
    def observers(self):
        if hasattr(self, "ring"):
            assert len(self.ring) == len(self.model)
            assert self.ring.is_empty() == (not self.model)
            assert self.ring.is_full() == (len(self.model) == self.capacity)


class SpscMachine(RingMachine):
    kind = "SpscRingBuffer"


class TypedMachine(RuleBasedStateMachine):
    backend = "python"

    @initialize(capacity=st.integers(1, 9), typecode=st.sampled_from("bHiqfd"))
    def create(self, capacity, typecode):
        self.ring = load_backend(self.backend).TypedRingBuffer(capacity, typecode)
        self.capacity = max(2, 1 << (capacity - 1).bit_length())
        self.typecode = typecode
        self.model: deque[float] = deque()
        self.values = st.integers(0, 100) if typecode in "bHiq" else st.floats(-8, 8, width=32)

    def _numbers(self, data, n):
        return [data.draw(self.values) for _ in range(n)]

    @rule(data=st.data())
    def push(self, data):
        (x,) = self._numbers(data, 1)
        ok = self.ring.push(x)
        assert ok == (len(self.model) < self.capacity)
        if ok:
            self.model.append(x)

    @rule(data=st.data(), n=st.integers(0, 12))
    def push_many(self, data, n):
        batch = array.array(self.typecode, self._numbers(data, n))
        k = self.ring.push_many(batch)
        assert k == min(n, self.capacity - len(self.model))
        self.model.extend(batch[:k])

    @rule()
    def pop(self):
        if self.model:
            assert self.ring.pop() == self.model.popleft()
        else:
            assert self.ring.pop(None) is None

    @rule(n=st.integers(0, 12), into=st.booleans())
    def pop_batch(self, n, into):
        expected = [self.model.popleft() for _ in range(min(n, len(self.model)))]
        if into:
            buf = array.array(self.typecode, [0] * n)
            k = self.ring.pop_into(buf)
            assert list(buf[:k]) == expected
        else:
            assert list(self.ring.pop_many(n)) == expected

    @invariant()
    def observers(self):
        if hasattr(self, "ring"):
            assert len(self.ring) == len(self.model)
            assert self.ring.is_full() == (len(self.model) == self.capacity)


class DequeMachine(RuleBasedStateMachine):
    """One thread plays owner and thief: LIFO at one end, FIFO at the other."""

    backend = "python"

    @initialize()
    def create(self):
        self.deque = load_backend(self.backend).WorkStealingDeque()
        self.model: deque[int] = deque()

    @rule(item=items)
    def push(self, item):
        self.deque.push(item)
        self.model.append(item)

    @rule(n=st.integers(1, 80))
    def push_burst(self, n):
        # Bursts past the first array's size exercise growth.
        for i in range(n):
            self.deque.push(i)
            self.model.append(i)

    @rule()
    def pop(self):
        if self.model:
            assert self.deque.pop() == self.model.pop()
        else:
            with pytest.raises(Empty):
                self.deque.pop()

    @rule()
    def steal(self):
        if self.model:
            assert self.deque.steal() == self.model.popleft()
        else:
            with pytest.raises(Empty):
                self.deque.steal()

    @invariant()
    def observers(self):
        if hasattr(self, "deque"):
            assert len(self.deque) == len(self.model)
            assert self.deque.is_empty() == (not self.model)


class SelectMachine(RuleBasedStateMachine):
    """Three channels (capacities 1..3; one of them also lap-wrapping) and
    select() over random subsets against three deques: a select completes
    exactly one of the operations the model says are ready, or raises
    Timeout when none is (timeout=0), or ChannelClosed for a closed one."""

    backend = "python"

    @initialize(capacities=st.lists(st.integers(1, 3), min_size=3, max_size=3))
    def create(self, capacities):
        ns = load_backend(self.backend)
        self.select = ns.select
        self.chans = [ns.Channel(c) for c in capacities]
        self.capacities = capacities
        self.models: list[deque[int]] = [deque() for _ in capacities]
        self.closed = [False] * len(capacities)

    @rule(k=st.integers(0, 2), item=items)
    def send(self, k, item):
        if not self.closed[k] and len(self.models[k]) < self.capacities[k]:
            assert self.chans[k].try_send(item)
            self.models[k].append(item)

    @rule(k=st.integers(0, 2))
    def recv(self, k):
        if self.models[k]:
            assert self.chans[k].try_recv() == self.models[k].popleft()

    @rule(k=st.integers(0, 2))
    def close(self, k):
        self.chans[k].close()
        self.closed[k] = True

    @rule(recv=st.lists(st.integers(0, 2), max_size=4),
          send=st.lists(st.tuples(st.integers(0, 2), items), max_size=4))
    def select_once(self, recv, send):
        if not recv and not send:
            with pytest.raises(ValueError):
                self.select(timeout=0)
            return
        # Ready per the model: a receive with an item or closed; a send with
        # room or closed.  A closed operation's completion raises.
        ready_recv = [k for k in recv if self.models[k] or self.closed[k]]
        ready_send = [(k, x) for k, x in send
                      if self.closed[k] or len(self.models[k]) < self.capacities[k]]
        try:
            ch, value = self.select(recv=[self.chans[k] for k in recv],
                                    send=[(self.chans[k], x) for k, x in send], timeout=0)
        except Timeout:
            assert not ready_recv and not ready_send
            return
        except ChannelClosed as exc:
            closed = ([k for k in recv if self.closed[k] and not self.models[k]]
                      + [k for k, _ in send if self.closed[k]])
            assert any(repr(self.chans[k]) in str(exc) for k in closed), (exc, closed)
            return
        k = self.chans.index(ch)
        if value is None:
            # A send (items are never None): one of k's items is now last.
            assert not self.closed[k]
            candidates = [x for j, x in ready_send if j == k]
            drained = [self.chans[k].try_recv() for _ in range(len(self.models[k]) + 1)]
            assert drained[:-1] == list(self.models[k])
            assert drained[-1] in candidates
            self.models[k].clear()
        else:
            assert k in recv
            assert value == self.models[k].popleft()

    @invariant()
    def lengths(self):
        if hasattr(self, "chans"):
            assert [len(ch) for ch in self.chans] == [len(m) for m in self.models]


def _for_backend(machine: type[RuleBasedStateMachine], backend: str):
    cls = type(f"{machine.__name__}_{backend}", (machine,), {"backend": backend})
    case = cls.TestCase
    case.settings = SETTINGS
    return case


for _backend in BACKENDS:
    for _machine in (ChannelMachine, QueueMachine, RingMachine, SpscMachine, TypedMachine,
                     DequeMachine, SelectMachine):
        _case = _for_backend(_machine, _backend)
        globals()[f"Test{_machine.__name__}_{_backend}"] = _case
del _backend, _machine, _case
