"""ObjectPool on both backends against a plain-list model (a hypothesis
state machine)."""

from __future__ import annotations

import os

import pytest
from conftest import JOIN_TIMEOUT
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from objpoolkit import Conn, Factory, FakeClock

from fastconc.errors import ResourceUnavailable
from fastconc.objpool import ObjectPool, ObjectPoolStats

T = JOIN_TIMEOUT

EXAMPLES = int(os.environ.get("FASTCONC_HYPOTHESIS_EXAMPLES", "60"))
SETTINGS = settings(max_examples=EXAMPLES, stateful_step_count=40, deadline=None)


# ---------------------------------------------------------------- model


class PoolMachine(RuleBasedStateMachine):
    """Single-threaded: every get uses timeout 0, so the model says exactly
    which object comes out (LIFO, retiring, validation) or that it fails."""

    def __init__(self, impl) -> None:  # noqa: ANN001
        super().__init__()
        self.impl = impl

    @initialize(max_size=st.integers(1, 4), min_size=st.integers(0, 4),
                max_idle=st.sampled_from([None, 3]), max_lifetime=st.sampled_from([None, 7]),
                max_uses=st.sampled_from([None, 1, 2]))
    def create(self, max_size, min_size, max_idle, max_lifetime, max_uses):  # noqa: ANN001
        min_size = min(min_size, max_size)
        self.clock = FakeClock()
        self.broken: set[int] = set()
        self.destroyed_log: list[int] = []
        self.pool = ObjectPool(
            Factory(), max_size, min_size=min_size, max_idle=max_idle,
            max_lifetime=max_lifetime, max_uses=max_uses, clock=self.clock,
            validate=lambda c: c.n not in self.broken,
            destroy=lambda c: self.destroyed_log.append(c.n), backend=self.impl)
        self.max_size, self.min_size = max_size, min_size
        self.max_idle, self.max_lifetime, self.max_uses = max_idle, max_lifetime, max_uses
        # Model: each object is [n, born, since, uses]; idle is a stack (top last).
        self.idle = [[n, self.clock.now, self.clock.now, 0] for n in range(min_size)]
        self.held: list[tuple[Conn, list]] = []
        self.created = min_size
        self.destroyed: list[int] = []
        self.timeouts = 0

    def _size(self) -> int:
        return self.created - len(self.destroyed)

    def _expect_get(self) -> int | None:
        """The model's checkout: the number of the object that comes out, or
        None when the pool is exhausted."""
        if len(self.held) == self.max_size:
            return None
        now = self.clock.now
        while True:
            if self.max_idle is not None:
                while (self.idle and self._size() > self.min_size
                       and now - self.idle[0][2] > self.max_idle):
                    self.destroyed.append(self.idle.pop(0)[0])
            candidate = None
            while self.idle:
                top = self.idle.pop()
                if self.max_lifetime is not None and now - top[1] > self.max_lifetime:
                    self.destroyed.append(top[0])
                else:
                    candidate = top
                    break
            if candidate is None:
                candidate = [self.created, now, now, 0]
                self.created += 1
            elif candidate[0] in self.broken:
                self.destroyed.append(candidate[0])
                continue
            candidate[3] += 1
            self._pending = candidate
            return candidate[0]

    @rule()
    def get_no_wait(self):
        expected = self._expect_get()
        if expected is None:
            with pytest.raises(ResourceUnavailable):
                self.pool.get(timeout=0)
            self.timeouts += 1
            return
        obj = self.pool.get(timeout=0)
        assert obj.n == expected, "not the object LIFO order and retiring predict"
        self.held.append((obj, self._pending))

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def put_one(self, data):  # noqa: ANN001
        obj, record = self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))
        self.pool.put(obj)
        now = self.clock.now
        too_old = self.max_lifetime is not None and now - record[1] > self.max_lifetime
        used_up = self.max_uses is not None and record[3] >= self.max_uses
        if too_old or used_up:
            self.destroyed.append(record[0])
        else:
            record[2] = now
            self.idle.append(record)
        with pytest.raises(ValueError):
            self.pool.put(obj)  # a second return is refused and changes nothing

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def invalidate_one(self, data):  # noqa: ANN001
        obj, record = self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))
        self.pool.invalidate(obj)
        self.destroyed.append(record[0])

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def break_one(self, data):  # noqa: ANN001
        obj, _ = self.held[data.draw(st.integers(0, len(self.held) - 1))]
        self.broken.add(obj.n)  # validate() fails for it from now on

    @rule(seconds=st.integers(0, 5))
    def advance_clock(self, seconds):  # noqa: ANN001
        self.clock.now += seconds

    @invariant()
    def stats_match_the_model(self):
        if not hasattr(self, "pool"):
            return
        assert self.pool.stats() == ObjectPoolStats(
            max_size=self.max_size, size=self._size(), idle=len(self.idle),
            in_use=len(self.held), created=self.created, destroyed=len(self.destroyed),
            waits=0, timeouts=self.timeouts)
        assert self.destroyed_log == self.destroyed

    def teardown(self) -> None:
        if hasattr(self, "pool"):
            self.pool.close()
            for obj, _ in self.held:
                self.pool.put(obj)
            assert self.pool.stats().size == 0


def test_pool_against_a_model(impl):
    run_state_machine_as_test(lambda: PoolMachine(impl), settings=SETTINGS)
