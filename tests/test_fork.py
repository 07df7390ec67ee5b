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
