"""Interpreter exit with live structures (subprocess per case, both
backends): live pools with queued work, actors with full mailboxes,
pipelines mid-stream, daemon threads blocked in every blocking call.  The
process must exit 0, without a hang or a "Fatal Python error"."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import BACKENDS, JOIN_TIMEOUT

PRELUDE = r"""
import sys, threading
import fastconc
from fastconc import _impl
from fastconc.objpool import ObjectPool
from fastconc.pipeline import Pipeline, Stage
ns = _impl.load_cython() if sys.argv[1] == "cython" else _impl.load_python()

def pool_workers(pool):
    names = {w.name for w in pool.stats().workers}
    return [t for t in threading.enumerate() if t.name in names]

# Return once every thread is asleep in the kernel (Linux: state S in /proc),
# so they are blocked where the case says when the main thread returns, not
# still on their way there.  Elsewhere: at once.  A daemon thread still
# running Python code while the interpreter finalizes crashes 3.13t itself
# (CPython gh-124878, a freed thread state re-attached; fixed in 3.14): seen
# here as 8 SIGSEGVs in 300 runs of this case without this wait, with no
# compiled code loaded, and none in 400 with it.
def wait_until_asleep(threads, deadline=30.0):
    import os, time
    if not os.path.isdir("/proc/self/task"):
        return
    end = time.monotonic() + deadline
    while True:
        states = []
        for t in threads:
            try:
                with open(f"/proc/self/task/{t.native_id}/stat") as f:
                    states.append(f.read().rpartition(")")[2].split()[0])
            except OSError:
                states.append("gone")  # ended (held.result, pool.join return)
        if all(s in ("S", "gone") for s in states):
            return
        if time.monotonic() > end:
            raise SystemExit(f"threads not asleep after {deadline}s: {states}")
        time.sleep(0.001)  # polling a kernel state: there is nothing to wait on
"""

CASES = {
    # Queued work still runs at exit, as with ThreadPoolExecutor.
    "pool_with_queued_work": r"""
done = []
pool = ns.WorkStealingPool(2)
for i in range(2000):
    pool.execute(done.append, i)
import atexit
atexit.register(lambda: print(len(done)))
print("ready")
""",
    # Every message accepted is handled; nobody shut the system down.
    "actors_with_full_mailboxes": r"""
system = fastconc.ActorSystem(2, backend=ns)
seen = []
class Slow(fastconc.Actor):
    def handle_message(self, msg):
        seen.append(msg)
refs = [system.spawn(Slow, mailbox_size=16) for _ in range(4)]
for ref in refs:
    for i in range(16):
        ref.try_tell(i)
print("ready")
""",
    "pipelines_mid_stream": r"""
p = Pipeline([lambda x: x, Stage(lambda x: x, workers=2)], capacity=4, backend=ns).start()
for i in range(4):
    p.send(i)
results = Pipeline([str], capacity=2, backend=ns).map(iter(int, 1))  # endless
next(results)
print("ready")
""",
    # Daemon threads left blocked in C-level (compiled) or Python waits.
    "daemon_threads_blocked": r"""
ch = ns.Channel(1); full = ns.Channel(1); full.send(0)
q = ns.Queue(1); full_q = ns.Queue(1); full_q.put(0)
objects = ObjectPool(object, 1, backend=ns); objects.get()
pool = ns.WorkStealingPool(1); gate = threading.Event(); held = pool.submit(gate.wait)
blocked = [ch.recv, lambda: full.send(1), lambda: ch.recv_many(8), q.get, lambda: full_q.put(1),
           objects.get, held.result, pool.join]
started = threading.Barrier(len(blocked) + 1)
def block(call):
    started.wait()
    call()
threads = [threading.Thread(target=block, args=(call,), daemon=True) for call in blocked]
for t in threads:
    t.start()
started.wait()
gate.set()  # the pool's own worker must not hold up exit
wait_until_asleep(threads + pool_workers(pool))
print("ready")
""",
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(CASES))
def test_interpreter_exits_cleanly(backend, case, tally):
    env = dict(os.environ)
    if case == "daemon_threads_blocked" and "ASAN_OPTIONS" in env:
        # Under ASan (the asan env) LeakSanitizer's exit-time scan crashes
        # here ("Tracer caught signal 11 ... LeakSanitizer has encountered a
        # fatal error", an abort) since blocked callers park on a futex word
        # in their own C frame; not understood yet (docs/RELIABILITY.md).  The
        # exit itself is still checked; only the leak scan is left out.
        env["ASAN_OPTIONS"] += ":detect_leaks=0"
    proc = subprocess.run([sys.executable, "-c", PRELUDE + CASES[case], backend],
                          capture_output=True, text=True, timeout=JOIN_TIMEOUT, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Fatal Python error" not in proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stdout.split()
    assert lines[0] == "ready"
    if case == "pool_with_queued_work":
        assert lines[1] == "2000"
    tally.add(processes=1)
