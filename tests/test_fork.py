"""os.fork() with a live pool (subprocess per backend): in the child the old
pool refuses work with a clear error instead of waiting for workers that do
not exist there, and fresh pools and channels work; the parent's pool is
untouched."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import BACKENDS, JOIN_TIMEOUT

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")

CHILD = r"""
import os, sys, threading
from fastconc import _impl
from fastconc.errors import PoolClosed
ns = _impl.load_cython() if sys.argv[1] == "cython" else _impl.load_python()
pool = ns.WorkStealingPool(2)
assert pool.submit(pow, 2, 5).result(30) == 32
busy = threading.Event()
pool.execute(busy.wait, 30)  # a worker is mid-task at the fork
pid = os.fork()
if pid == 0:
    code = 1
    try:
        try:
            pool.submit(pow, 2, 3)
        except PoolClosed as exc:
            assert "os.fork()" in str(exc), exc
        else:
            raise AssertionError("the old pool accepted work in the child")
        for call in (lambda: pool.execute(print), lambda: pool.join(1)):
            try:
                call()
            except PoolClosed:
                pass
            else:
                raise AssertionError("the old pool did not refuse")
        pool.shutdown()
        fresh = ns.WorkStealingPool(2)
        assert fresh.submit(pow, 3, 2).result(30) == 9
        fresh.shutdown()
        ch = ns.Channel(4)
        ch.send(1)
        assert ch.recv(30) == 1
        code = 0
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
busy.set()
assert pool.submit(pow, 2, 4).result(30) == 16
pool.shutdown()
print("ok")
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_fork_with_a_live_pool(backend, tally):
    proc = subprocess.run([sys.executable, "-W", "ignore::DeprecationWarning", "-c", CHILD,
                           backend], capture_output=True, text=True, timeout=JOIN_TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    tally.add(processes=1)


BLOCKED = r"""
import os, sys, threading
from fastconc import _impl
ns = _impl.load_cython() if sys.argv[1] == "cython" else _impl.load_python()
ch = ns.Channel(4)
parked = threading.Event()

def blocked():
    parked.set()
    ch.recv(30)   # still waiting in the parent when it forks

t = threading.Thread(target=blocked, daemon=True)
t.start()
assert parked.wait(30)
# Under the GIL the waiter parks before this thread runs again (it holds the
# GIL until it sleeps); elsewhere the fork may come first, which is fine too.
pid = os.fork()
if pid == 0:
    code = 1
    try:
        # The parent's waiter is listed here, but its thread is not: a send
        # must wake this process's own waiter, not the dead one.
        got = []
        ready = threading.Event()

        def child_receiver():
            ready.set()
            got.append(ch.recv(20))

        r = threading.Thread(target=child_receiver)
        r.start()
        assert ready.wait(30)
        ch.send("to the child")
        r.join(30)
        assert got == ["to the child"], got
        code = 0
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
ch.send("to the parent")
t.join(30)
assert not t.is_alive()
print("ok")
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_waiter_blocked_at_the_fork_takes_no_wake_up_in_the_child(backend, tally):
    proc = subprocess.run([sys.executable, "-W", "ignore::DeprecationWarning", "-c", BLOCKED,
                           backend], capture_output=True, text=True, timeout=JOIN_TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    tally.add(processes=1)
