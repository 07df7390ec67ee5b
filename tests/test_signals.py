"""Ctrl-C reaches a main thread blocked in any blocking call (subprocess)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import BACKENDS, JOIN_TIMEOUT

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads thread state from /proc"
)

CHILD = r"""
import sys, time
from fastconc import _impl
ns = _impl.load_cython() if sys.argv[1] == "cython" else _impl.load_python()
op = sys.argv[2]
ch = ns.Channel(1)
q = ns.Queue(1)
if op in ("send", "send_many"):
    ch.send("fill")
if op == "put":
    q.put("fill")
if op == "join":
    q.put("unfinished")
if op.startswith("pool_"):
    import threading
    pool = ns.WorkStealingPool(1)
    gate = threading.Event()
    held = pool.submit(gate.wait, 30)
if op == "ask":
    import threading, fastconc
    system = fastconc.ActorSystem(1, backend=ns)
    gate = threading.Event()
    class Busy(fastconc.Actor):
        def handle_message(self, msg):
            if msg == "block":
                gate.wait(30)
            return msg
    actor = system.spawn(Busy)
    actor.tell("block")  # busy: the ask below waits for a worker's reply
if op == "pipeline_recv":
    from fastconc.pipeline import Pipeline
    pipe = Pipeline([lambda x: x * 2], backend=ns).start()
if op == "objpool_get":
    from fastconc.objpool import ObjectPool
    objects = ObjectPool(object, 1, backend=ns)
    taken = objects.get()
calls = {
    "recv": lambda: ch.recv(),
    "recv_timeout": lambda: ch.recv(timeout=3600),
    "recv_many": lambda: ch.recv_many(8),
    "send": lambda: ch.send("x"),
    "send_many": lambda: ch.send_many(["x", "y"]),
    "get": lambda: q.get(),
    "put": lambda: q.put("x"),
    "join": lambda: q.join(),
    "pool_join": lambda: pool.join(),
    "pool_result": lambda: held.result(),
    "ask": lambda: actor.ask("x"),
    "pipeline_recv": lambda: pipe.recv(),
    "objpool_get": lambda: objects.get(),
}
print("ready", flush=True)
try:
    calls[op]()
except KeyboardInterrupt:
    caught = time.monotonic()
else:
    sys.exit("returned without KeyboardInterrupt")
# The structure is consistent afterwards.
if op in ("recv", "recv_timeout", "recv_many"):
    ch.send(1); assert ch.recv() == 1 and len(ch) == 0
elif op in ("send", "send_many"):
    assert ch.recv() == "fill" and len(ch) == 0
elif op == "get":
    q.put(1); assert q.get() == 1 and q.qsize() == 0
elif op == "put":
    assert q.get() == "fill" and q.qsize() == 0
elif op == "join":
    q.get(); q.task_done(); q.join()
elif op.startswith("pool_"):
    gate.set(); assert held.result() is True and pool.join(); pool.shutdown()
elif op == "ask":
    gate.set(); assert actor.ask("y", timeout=30) == "y"; system.shutdown(30)
elif op == "pipeline_recv":
    pipe.send(21); assert pipe.recv(timeout=30) == 42; pipe.close(); assert pipe.join(30)
elif op == "objpool_get":
    objects.put(taken); assert objects.get(timeout=30) is taken
    assert objects.stats().in_use == 1
print("interrupted", caught, flush=True)
"""

OPS = ["recv", "recv_timeout", "recv_many", "send", "send_many", "get", "put", "join",
       "pool_join", "pool_result", "ask", "pipeline_recv", "objpool_get"]


def thread_states(pid: int) -> set[str]:
    """States of every thread of the process (a pool adds worker threads)."""
    states = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                states.add(f.read().rsplit(")", 1)[1].split()[0])
        except FileNotFoundError:  # a thread that just ended
            pass
    return states


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", OPS)
def test_sigint_interrupts_blocked_call(backend, op, record_property, tally):
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, backend, op],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        # Wait (bounded) until every thread of the child sleeps: then the
        # main thread is in the call, not waiting for the GIL while a pool
        # worker runs (a SIGINT then would land before the call).
        give_up = time.monotonic() + JOIN_TIMEOUT
        while thread_states(proc.pid) != {"S"}:
            assert time.monotonic() < give_up, "child never blocked"
        sent = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=JOIN_TIMEOUT)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    caught = float(out.split()[-1])
    # Reported, not asserted (timings are for benchmarks); see the README.
    record_property("sigint_latency_ms", round((caught - sent) * 1000, 2))
    tally.add(faults=1, operations=1)
    tally.peak(sigint_latency_ms=(caught - sent) * 1000)
