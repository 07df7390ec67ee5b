"""``python -m fastconc``: which backend is in use, and what it buys you.

Runs a short side-by-side comparison of the compiled Channel/Queue, their
pure-Python twins and the standard library's queue.Queue / SimpleQueue, all
in this one process so the ratios hold on a noisy machine.  Each figure is
the median of several rounds after a warm-up round.
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import sys
import time
from collections.abc import Callable

import fastconc
from fastconc import _workloads as w

GROUPS: list[tuple[str, str, Callable[[w.Contender, int], None], int]] = [
    # title, contender kind, workload, items at full size
    ("send+recv pair, one thread", "channel", w.same_thread_pairs, 200_000),
    ("put+get pair, one thread", "queue", w.same_thread_pairs, 200_000),
    ("1 producer -> 1 consumer, item by item, capacity 1024", "channel", w.cross_thread, 200_000),
    ("1 producer -> 1 consumer, batches of 256, capacity 1024", "channel",
     w.cross_thread_batched, 500_000),
]


def gil_state() -> str:
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    if is_enabled is None:
        return "enabled (no free-threading support in this build)"
    return "enabled" if is_enabled() else "DISABLED (free-threaded)"


def header() -> str:
    available = ", ".join(fastconc.implementations())
    return (
        f"fastconc {fastconc.__version__} on {platform.python_implementation()} "
        f"{platform.python_version()} ({sys.platform}, {platform.machine()})\n"
        f"backend in use: {fastconc.IMPLEMENTATION}   available: {available}   "
        f"GIL: {gil_state()}"
    )


def measure(fn: Callable[[], None], rounds: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(scale: float, rounds: int) -> None:
    print(header())
    print(f"(median of {rounds} rounds; ratio = how many times faster than queue.Queue)\n")
    for title, kind, workload, full_n in GROUPS:
        n = max(100, int(full_n * scale))
        print(f"{title}  [{n:,} items]")
        rows = []
        for c in w.contenders(kind):
            per_item = measure(functools.partial(workload, c, n), rounds) / n
            rows.append((c, per_item))
        base = next(t for c, t in rows if c.baseline)
        for c, t in rows:
            print(f"  {c.name:<20} {t * 1e9:>9.0f} ns/item {1 / t:>14,.0f} items/s "
                  f"{base / t:>7.1f}x")
        print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastconc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, one round: checks that everything runs")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per figure")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the item counts")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.scale <= 0:
        parser.error("--rounds must be >= 1 and --scale > 0")
    if args.quick:
        args.scale, args.rounds = 0.001, 1
    run(args.scale, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
