"""Thread scaling on regular and free-threaded CPython: tables and a PNG.

Two workloads, each at 1 and 2 threads per side:

* queues: P producers + P consumers move ITEMS integers through a Channel, a
  RingBuffer (non-blocking; an empty or full side yields and retries) and a
  queue.Queue, all with capacity 1024; items/s.
* cpu: TASKS pure-Python tasks (sum(range(10_000))) through WorkStealingPool
  and ThreadPoolExecutor with W workers; tasks/s and the speed-up of 2
  workers over 1.

Run by tox (``bash tools/test-matrix -e scaling``, so python3.13 and
python3.13t are found), which builds py313-c and py313t-c and passes their
interpreters here::

    python benches/scaling.py --python .tox/py313-c/bin/python \\
        --python .tox/py313t-c/bin/python --png docs/scaling.png \\
        --json docs/scaling.json

Each interpreter runs ``--measure`` in a subprocess and prints JSON; this
process collects it, prints the tables and draws the plot (matplotlib).
Figures are medians of ROUNDS runs; nothing is asserted (timings belong in
benchmarks, and this machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

ITEMS = int(float(os.environ.get("FASTCONC_SCALING_ITEMS", "1000000")))
TASKS = int(float(os.environ.get("FASTCONC_SCALING_TASKS", "2000")))
ROUNDS = int(os.environ.get("FASTCONC_SCALING_ROUNDS", "5"))
THREADS = (1, 2)
JOIN_TIMEOUT = 600.0


# ---------------------------------------------------------------- measuring


def _run_threads(targets: list[Callable[[], None]]) -> float:
    start = threading.Barrier(len(targets) + 1)

    def wrap(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            start.wait(JOIN_TIMEOUT)
            fn()
        return run

    threads = [threading.Thread(target=wrap(fn)) for fn in targets]
    for t in threads:
        t.start()
    start.wait(JOIN_TIMEOUT)
    t0 = time.perf_counter()
    for t in threads:
        t.join(JOIN_TIMEOUT)
        if t.is_alive():
            raise RuntimeError("a benchmark thread hung")
    return time.perf_counter() - t0


def channel_run(make: Callable[[int], Any], pairs: int, n: int) -> float:
    ch = make(1024)
    per = n // pairs
    done = threading.Barrier(pairs, action=ch.close)

    def produce() -> None:
        send = ch.send
        for i in range(per):
            send(i)
        done.wait(JOIN_TIMEOUT)

    def consume() -> None:
        for _ in ch:
            pass

    return _run_threads([produce] * pairs + [consume] * pairs)


def ring_run(make: Callable[[int], Any], pairs: int, n: int) -> float:
    ring = make(1024)
    per = n // pairs
    left = [n]
    lock = threading.Lock()

    def produce() -> None:
        push = ring.push
        for i in range(per):
            while not push(i):
                time.sleep(0)  # full: let a consumer run (a yield, not a wait)

    def consume() -> None:
        pop_many = ring.pop_many
        while True:
            got = len(pop_many(64))
            if got:
                with lock:
                    left[0] -= got
            else:
                with lock:
                    if left[0] == 0:
                        return
                time.sleep(0)

    return _run_threads([produce] * pairs + [consume] * pairs)


def _cpu_task(_: int) -> int:
    return sum(range(10_000))


def cpu_run(make: Callable[[int], Any], workers: int, tasks: int) -> float:
    with make(workers) as pool:
        list(pool.map(_cpu_task, range(8)))  # warm up the threads
        t0 = time.perf_counter()
        futures = [pool.submit(_cpu_task, i) for i in range(tasks)]
        for f in futures:
            f.result(JOIN_TIMEOUT)
        return time.perf_counter() - t0


def measure() -> dict[str, Any]:
    import fastconc

    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    build = f"{sys.version_info.major}.{sys.version_info.minor}" + ("" if gil else "t")
    results: dict[str, Any] = {"build": build, "gil": gil, "backend": fastconc.IMPLEMENTATION,
                               "items": ITEMS, "tasks": TASKS, "queues": {}, "cpu": {}}

    def median(fn: Callable[[], float]) -> float:
        return statistics.median(fn() for _ in range(ROUNDS))

    queues: dict[str, Callable[[int], float]] = {
        "Channel": lambda k: channel_run(fastconc.Channel, k, ITEMS),
        "RingBuffer": lambda k: ring_run(fastconc.RingBuffer, k, ITEMS),
        "queue.Queue": lambda k: _stdlib_queue(k, ITEMS),
    }
    for name, run in queues.items():
        results["queues"][name] = {str(k): ITEMS / median(lambda k=k, run=run: run(k))
                                   for k in THREADS}
    pools: dict[str, Callable[[int], Any]] = {
        "WorkStealingPool": fastconc.WorkStealingPool,
        "ThreadPoolExecutor": ThreadPoolExecutor,
    }
    for name, make in pools.items():
        results["cpu"][name] = {
            str(w): TASKS / median(lambda w=w, make=make: cpu_run(make, w, TASKS))
            for w in THREADS}
    return results


def _stdlib_queue(pairs: int, n: int) -> float:
    """queue.Queue with one sentinel per consumer after all producers."""
    q: queue.Queue[int | None] = queue.Queue(1024)
    per = n // pairs
    finished = threading.Barrier(pairs)

    def produce() -> None:
        put = q.put
        for i in range(per):
            put(i)
        if finished.wait(JOIN_TIMEOUT) == 0:
            for _ in range(pairs):
                put(None)

    def consume() -> None:
        get = q.get
        while get() is not None:
            pass

    return _run_threads([produce] * pairs + [consume] * pairs)


# ---------------------------------------------------------------- reporting


def table(runs: list[dict[str, Any]]) -> str:
    lines = [f"Queues: {runs[0]['items']:,} items, P producers + P consumers, capacity 1024"
             " (items/s)",
             "| build | queue | P=1 | P=2 | 2 vs 1 |", "|---|---|---|---|---|"]
    for r in runs:
        for name, by in r["queues"].items():
            lines.append(f"| {r['build']} | {name} | {by['1']:,.0f} | {by['2']:,.0f} | "
                         f"{by['2'] / by['1']:.2f}x |")
    lines += ["", f"CPU-bound: {runs[0]['tasks']:,} x sum(range(10_000)) (tasks/s)",
              "| build | pool | 1 worker | 2 workers | speed-up |", "|---|---|---|---|---|"]
    for r in runs:
        for name, by in r["cpu"].items():
            lines.append(f"| {r['build']} | {name} | {by['1']:,.0f} | {by['2']:,.0f} | "
                         f"{by['2'] / by['1']:.2f}x |")
    return "\n".join(lines)


def plot(runs: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_q, ax_c) = plt.subplots(1, 2, figsize=(11, 4.5))
    styles = {False: "-", True: "--"}  # free-threaded solid, GIL dashed
    colors = {"Channel": "tab:blue", "RingBuffer": "tab:green", "queue.Queue": "tab:gray",
              "WorkStealingPool": "tab:blue", "ThreadPoolExecutor": "tab:gray"}
    for r in runs:
        for name, by in r["queues"].items():
            ax_q.plot(THREADS, [by[str(k)] / 1e6 for k in THREADS], styles[r["gil"]],
                      color=colors[name], marker="o", label=f"{name} ({r['build']})")
        for name, by in r["cpu"].items():
            ax_c.plot(THREADS, [by[str(k)] for k in THREADS], styles[r["gil"]],
                      color=colors[name], marker="o", label=f"{name} ({r['build']})")
    ax_q.set(title=f"{runs[0]['items']:,} items, P producers + P consumers",
             xlabel="P (threads per side)", ylabel="million items / s", xticks=THREADS)
    ax_c.set(title=f"{runs[0]['tasks']:,} CPU-bound Python tasks", xlabel="workers",
             ylabel="tasks / s", xticks=THREADS)
    for ax in (ax_q, ax_c):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_ylim(bottom=0)
    fig.suptitle("fastconc thread scaling, 2-core machine (dashed: with GIL, solid: free-threaded)",
                 fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--measure", action="store_true", help="measure this interpreter, print JSON")
    ap.add_argument("--python", action="append", default=[], help="interpreter to measure")
    ap.add_argument("--png", help="write the plot here")
    ap.add_argument("--json", help="write all results here")
    ap.add_argument("--replot", metavar="JSON", help="only redraw --png from a saved --json")
    args = ap.parse_args()
    if args.replot:
        replot(args.replot, args.png or "scaling.png")
        return
    if args.measure:
        print(json.dumps(measure()))
        return
    runs = []
    for exe in args.python or [sys.executable]:
        # From a neutral folder, so the uncompiled source tree cannot shadow
        # the installed package.
        out = subprocess.run([exe, os.path.abspath(__file__), "--measure"],
                             capture_output=True, text=True, cwd=os.path.expanduser("~"),
                             timeout=3600)
        if out.returncode:
            sys.exit(f"{exe} --measure failed:\n{out.stderr}")
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"measured {runs[-1]['build']} ({exe})", file=sys.stderr)
    print(table(runs))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1)
    if args.png:
        plot(runs, args.png)
        print(f"plot written to {args.png}", file=sys.stderr)


def replot(json_path: str, png: str) -> None:
    """Redraw the plot from a saved --json file (no measuring)."""
    with open(json_path) as f:
        plot(json.load(f), png)


if __name__ == "__main__":
    main()
