"""``fastconc bench`` (or ``python -m fastconc bench``): every part of
fastconc against its fallback twin and what you would use otherwise, side by
side in one process.

Each group runs one workload for every contender: the compiled backend, the
pure-Python fallback, and the natural baseline (queue.Queue, deque,
ThreadPoolExecutor, pykka, pybreaker, ...).  A contender's setup (making the
pool, spawning the actor) is not timed; the workload runs once to warm up,
then ``rounds`` timed times, and the median is reported.  ``ratio`` is the
baseline's median time over the contender's: how many times faster.

JSON (``--json PATH``)::

    {"fastconc": version, "python": "3.11.7", "implementation": "CPython",
     "platform": str, "gil_enabled": bool, "backend_in_use": "cython",
     "backends": ["cython", "python"], "date": ISO 8601, "rounds": int,
     "scale": float,
     "groups": [{"key": "channel", "title": str, "unit": "items", "n": int,
                 "baseline": contender name, "notes": [str],
                 "results": [{"name": str, "kind": "compiled" | "fallback" |
                              "baseline" | "fastconc" | "other",
                              "median_s": float,
                              "per_op_s": float, "ops_per_s": float,
                              "ratio": float}]}]}
"""

from __future__ import annotations

import array
import datetime
import importlib
import importlib.util
import json
import platform
import queue
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

import fastconc
from fastconc import _impl
from fastconc._bench import workloads as w

# A contender: its name, its kind, and n -> (run, close): run() does n
# operations, close() releases what the setup made (called once, untimed).
Setup = Callable[[int], tuple[Callable[[], object], Callable[[], object]]]


@dataclass(frozen=True)
class Contender:
    name: str
    # "compiled", "fallback", "baseline", "fastconc" (the same code on either
    # backend) or "other"
    kind: str
    setup: Setup


@dataclass(frozen=True)
class Group:
    key: str
    title: str
    unit: str
    n: int  # operations per run at scale 1 (the quick suite)
    contenders: Callable[[], tuple[list[Contender], list[str]]]  # and notes


@dataclass
class Result:
    name: str
    kind: str
    median_s: float
    per_op_s: float
    ops_per_s: float
    ratio: float = 0.0


@dataclass
class GroupResult:
    key: str
    title: str
    unit: str
    n: int
    baseline: str | None
    notes: list[str] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)


def _nothing() -> None:
    pass


def _backend_kind(backend: str) -> str:
    return "compiled" if backend == "cython" else "fallback"


def _backends() -> Iterator[tuple[str, Any]]:
    return iter(_impl.implementations().items())


def _missing(module: str) -> bool:
    return importlib.util.find_spec(module) is None


# ---------------------------------------------------------------- groups


def _channel_group(kind: str, workload: Callable[[w.Contender, int], None]) -> Callable[
        [], tuple[list[Contender], list[str]]]:
    def contenders() -> tuple[list[Contender], list[str]]:
        found = []
        for c in w.contenders(kind):
            if c.baseline:
                role = "baseline"
            elif c.name.startswith("cython"):
                role = "compiled"
            elif c.name.startswith("python"):
                role = "fallback"
            else:
                role = "other"

            def setup(n: int, c: w.Contender = c) -> tuple[Callable[[], object],
                                                          Callable[[], object]]:
                return (lambda: workload(c, n)), _nothing
            found.append(Contender(c.name, role, setup))
        return found, []
    return contenders


def _cross(producers: int, consumers: int) -> Callable[[], tuple[list[Contender], list[str]]]:
    """Channel/Queue-shaped contenders moving items between threads, plus a
    polling RingBuffer per backend."""
    def contenders() -> tuple[list[Contender], list[str]]:
        found, _ = _channel_group(
            "channel", lambda c, n: w.cross_threads(c, n, producers, consumers))()
        for backend, ns in _backends():
            def setup(n: int, ns: Any = ns) -> tuple[Callable[[], object], Callable[[], object]]:
                return (lambda: w.ring_polling(ns.RingBuffer, n, producers, consumers)), _nothing
            found.append(Contender(f"{backend} RingBuffer, polling", "other", setup))
        return found, ["capacity 1024; the RingBuffer never blocks: a full push and an empty "
                       "pop yield (time.sleep(0)) and try again"]
    return contenders


def _ping_pongs() -> tuple[list[Contender], list[str]]:
    found = []
    for name, run in w.ping_pong_contenders():
        role = ("baseline" if name.startswith("queue") else
                _backend_kind("cython" if "cython" in name else "python"))

        def setup(n: int, run: Any = run) -> tuple[Callable[[], object], Callable[[], object]]:
            return (lambda: run(n)), _nothing
        found.append(Contender(name, role, setup))
    for backend, ns in _backends():
        def ask_setup(n: int, ns: Any = ns) -> tuple[Callable[[], object], Callable[[], object]]:
            system = fastconc.ActorSystem(2, backend=ns)
            ref = system.spawn(w.echo_actor())
            return (lambda: w.ask_round_trips(ref.ask, n)), system.shutdown
        found.append(Contender(f"{backend} ActorRef.ask(timeout=...)", "other", ask_setup))
    return found, ["one round trip at a time between two threads (the asker is not a pool "
                   "worker)"]


def _selects() -> tuple[list[Contender], list[str]]:
    found: list[Contender] = []
    for backend, ns in _backends():
        for k in (0, 1, 4):
            def setup(n: int, ns: Any = ns, k: int = k) -> tuple[Callable[[], object],
                                                                  Callable[[], object]]:
                chans = [ns.Channel(1024) for _ in range(max(k, 1))]
                return (lambda: w.select_loop(ns.select if k else None, chans, n)), _nothing
            role = "baseline" if k == 0 and not found else _backend_kind(backend)
            name = f"{backend} " + (f"select over {k}" if k else "Channel.recv")
            found.append(Contender(name, role, setup))
    return found, ["one thread: a send, then a select over k channels of which only that one "
                   "is ready (or a plain recv)"]


def _rings(spsc: bool) -> tuple[list[Contender], list[str]]:
    found = []
    for backend, ns in _backends():
        make = ns.SpscRingBuffer if spsc else ns.RingBuffer

        def setup(n: int, make: Any = make) -> tuple[Callable[[], object], Callable[[], object]]:
            return (lambda: w.ring_pairs(make, n)), _nothing
        found.append(Contender(f"{backend} {make.__name__}", _backend_kind(backend), setup))
    found.append(Contender("collections.deque", "baseline",
                           lambda n: ((lambda: w.deque_pairs(n)), _nothing)))
    return found, []


def _typed() -> tuple[list[Contender], list[str]]:
    found = []
    for backend, ns in _backends():
        def setup(n: int, ns: Any = ns) -> tuple[Callable[[], object], Callable[[], object]]:
            src = array.array("d", range(n))
            dst = array.array("d", bytes(8 * n))
            # A fresh ring per run: each run's producer is a new thread, and
            # the first thread to push owns a TypedRingBuffer's push side.
            return (lambda: w.typed_transfer(ns.TypedRingBuffer(1 << 16, "d"), src, dst)), \
                _nothing
        found.append(Contender(f"{backend} TypedRingBuffer", _backend_kind(backend), setup))

    def simple(n: int) -> tuple[Callable[[], object], Callable[[], object]]:
        src = array.array("d", range(n))
        dst = array.array("d", bytes(8 * n))
        return (lambda: w.simplequeue_transfer(src, dst)), _nothing
    found.append(Contender("queue.SimpleQueue", "baseline", simple))
    return found, ["float64 numbers moved between two threads: the rings in chunks of 4096, "
                   "SimpleQueue one by one"]


def _pools() -> tuple[list[Contender], list[str]]:
    found = []
    for name, make in w.pool_contenders():
        role = ("baseline" if name == "ThreadPoolExecutor"
                else _backend_kind("cython" if "cython" in name else "python"))

        def setup(n: int, make: Any = make) -> tuple[Callable[[], object], Callable[[], object]]:
            pool = make(2)
            return (lambda: w.submit_result(pool, n)), pool.shutdown
        found.append(Contender(name, role, setup))
    return found, ["no-op tasks: submit all, then result() each; 2 workers"]


def _actors() -> tuple[list[Contender], list[str]]:
    found = []
    for backend, ns in _backends():
        def setup(n: int, ns: Any = ns) -> tuple[Callable[[], object], Callable[[], object]]:
            system = fastconc.ActorSystem(2, backend=ns)
            ref = system.spawn(w.counting_actor())
            return (lambda: w.tell_until_handled(ref.tell, ref.ask, n)), system.shutdown
        found.append(Contender(f"{backend} ActorSystem", _backend_kind(backend), setup))
    notes = []
    if _missing("pykka"):
        notes.append("pykka not installed: no baseline (pip install pykka)")
    else:
        def pykka_setup(n: int) -> tuple[Callable[[], object], Callable[[], object]]:
            ref = w.pykka_counter()
            proxy_ask = ref.ask
            return (lambda: w.tell_until_handled(ref.tell, proxy_ask, n)), ref.stop
        found.append(Contender("pykka ThreadingActor", "baseline", pykka_setup))
    return found, notes + ["tell n messages to one actor, then ask for the count"]


def _pipelines() -> tuple[list[Contender], list[str]]:
    found = []
    for name, run in w.pipeline_contenders():
        role = ("baseline" if name.startswith("queue") else
                _backend_kind("cython" if "cython" in name else "python"))

        def setup(n: int, run: Any = run) -> tuple[Callable[[], object], Callable[[], object]]:
            return (lambda: run(n, 64)), _nothing
        found.append(Contender(name, role, setup))
    return found, ["3 trivial stages, capacity 64; baseline: a thread per stage joined by "
                   "queue.Queue(64)"]


def _breakers() -> tuple[list[Contender], list[str]]:
    found = [Contender("CircuitBreaker", "fastconc",
                       lambda n: ((lambda: w.breaker_calls(fastconc.CircuitBreaker().call, n)),
                                  _nothing)),
             Contender("bare call", "other",
                       lambda n: ((lambda: w.breaker_calls(w.bare_call, n)), _nothing))]
    notes = ["no-op calls in CLOSED state; the breaker is pure Python on either backend"]
    if _missing("pybreaker"):
        notes.append("pybreaker not installed: no baseline (pip install pybreaker)")
    else:
        def setup(n: int) -> tuple[Callable[[], object], Callable[[], object]]:
            pybreaker: Any = importlib.import_module("pybreaker")
            return (lambda: w.breaker_calls(pybreaker.CircuitBreaker().call, n)), _nothing
        found.append(Contender("pybreaker", "baseline", setup))
    return found, notes


def _object_pools() -> tuple[list[Contender], list[str]]:
    found = []
    for backend, ns in _backends():
        def setup(n: int, ns: Any = ns) -> tuple[Callable[[], object], Callable[[], object]]:
            pool = fastconc.ObjectPool(object, 4, min_size=4, backend=ns)
            return (lambda: w.borrow_return(pool.get, pool.put, n)), pool.close
        found.append(Contender(f"{backend} ObjectPool", _backend_kind(backend), setup))

    def queue_pool(n: int) -> tuple[Callable[[], object], Callable[[], object]]:
        q: queue.Queue[object] = queue.Queue()
        for _ in range(4):
            q.put(object())
        return (lambda: w.borrow_return(q.get, q.put, n)), _nothing
    found.append(Contender("queue.Queue pool", "baseline", queue_pool))
    return found, ["get + put pairs from one thread, 4 objects"]


GROUPS = [
    Group("channel", "Channel: 1 producer -> 1 consumer thread, item by item, capacity 1024",
          "items", 100_000, _cross(1, 1)),
    Group("channel2x2", "Channel: 2 producers -> 2 consumer threads, item by item",
          "items", 100_000, _cross(2, 2)),
    Group("pingpong", "Ping-pong: round trips between two threads", "round trips", 10_000,
          _ping_pongs),
    Group("select", "select(): a send, then a select over k channels", "items", 100_000,
          _selects),
    Group("queue", "Queue: put + get pair, one thread", "pairs", 200_000,
          _channel_group("queue", w.same_thread_pairs)),
    Group("ring", "RingBuffer: push + pop pair, one thread", "pairs", 200_000,
          lambda: _rings(spsc=False)),
    Group("spsc", "SpscRingBuffer: push + pop pair, one thread", "pairs", 200_000,
          lambda: _rings(spsc=True)),
    Group("typed", "TypedRingBuffer: float64 between two threads", "numbers", 1_000_000,
          _typed),
    Group("pool", "WorkStealingPool: submit + result", "tasks", 20_000, _pools),
    Group("actors", "Actors: tell to one actor until handled", "messages", 20_000, _actors),
    Group("pipeline", "Pipeline: 3 trivial stages", "items", 100_000, _pipelines),
    Group("breaker", "CircuitBreaker: a no-op call through it, CLOSED state", "calls", 200_000,
          _breakers),
    Group("objpool", "ObjectPool: borrow + return", "pairs", 200_000, _object_pools),
]
KEYS = [g.key for g in GROUPS]

# --full: this many times the work, and more rounds.
FULL_SCALE = 10.0
FULL_ROUNDS = 7


# ---------------------------------------------------------------- running


def measure(run: Callable[[], object], rounds: int) -> float:
    """Median seconds of ``rounds`` timed runs after one warm-up run."""
    run()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_group(group: Group, scale: float, rounds: int,
              progress: Callable[[str], None]) -> GroupResult:
    n = max(10, int(group.n * scale))
    contenders, notes = group.contenders()
    baseline = next((c.name for c in contenders if c.kind == "baseline"), None)
    out = GroupResult(group.key, group.title, group.unit, n, baseline, list(notes))
    for c in contenders:
        progress(f"{group.key}: {c.name}")
        run, close = c.setup(n)
        try:
            median = measure(run, rounds)
        finally:
            close()
        per_op = median / n
        out.results.append(Result(c.name, c.kind, median, per_op,
                                  1 / per_op if per_op else float("inf")))
    base = next((r for r in out.results if r.name == baseline), None)
    if base is None:  # no baseline installed: ratios against the fallback, else the first
        base = next((r for r in out.results if r.kind == "fallback"), out.results[0])
        out.notes.append(f"ratios are against {base.name}")
    for r in out.results:
        r.ratio = base.median_s / r.median_s if r.median_s else float("inf")
    return out


def gil_enabled() -> bool:
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    return True if is_enabled is None else bool(is_enabled())


def header() -> str:
    """What is measured: the backend in use, and why when it is the fallback
    (then on the first line, so it cannot be missed)."""
    available = ", ".join(_impl.implementations()) or "none"
    gil = "enabled" if gil_enabled() else "DISABLED (free-threaded)"
    lines = []
    if _impl.FALLBACK is not None:
        lines.append(f"PURE-PYTHON FALLBACK ONLY, not the compiled core: {_impl.FALLBACK.reason}")
    lines.append(f"fastconc {fastconc.__version__} on {platform.python_implementation()} "
                 f"{platform.python_version()} ({sys.platform}, {platform.machine()})")
    lines.append(f"backend in use: {fastconc.IMPLEMENTATION}   available: {available}   "
                 f"GIL: {gil}")
    return "\n".join(lines)


def refusal() -> str | None:
    """Why the bench must not run: the fallback is in use although a compiled
    build exists (shadowed by a source checkout, or failing to import), so
    its figures would pass for the library's.  None when it may run."""
    fallback = _impl.FALLBACK
    if fallback is None or fallback.expected:
        return None
    return (f"fastconc bench: not measuring the pure-Python fallback as if it were "
            f"fastconc: {fallback.reason}.\n"
            f"(To measure the fallback on purpose, set FASTCONC_NO_EXTENSIONS=1.)")


def _fmt_time(seconds: float) -> str:
    for unit, factor in (("s", 1.0), ("ms", 1e3), ("us", 1e6), ("ns", 1e9)):
        if seconds * factor >= 1:
            return f"{seconds * factor:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def format_group(g: GroupResult) -> str:
    lines = [f"{g.title}  [{g.n:,} {g.unit} per run]"]
    for r in g.results:
        mark = "  (baseline)" if r.name == g.baseline else ""
        lines.append(f"  {r.name:<34} {r.ops_per_s:>14,.0f} {g.unit}/s "
                     f"{_fmt_time(r.per_op_s):>10}/op {r.ratio:>8.2f}x{mark}")
    lines.extend(f"  note: {note}" for note in g.notes)
    return "\n".join(lines)


def run(keys: list[str], scale: float, rounds: int, out: TextIO = sys.stdout,
        err: TextIO = sys.stderr) -> dict[str, Any]:
    """Run the selected groups; print the tables; return the JSON document."""
    print(header(), file=out)
    print(f"median of {rounds} rounds after a warm-up; ratio = times faster than the "
          "baseline\n", file=out, flush=True)
    selected = [g for g in GROUPS if g.key in keys]
    results = []
    # The progress line rewrites itself: only on a terminal, not in a log.
    live = err.isatty()
    for i, group in enumerate(selected, 1):
        def progress(what: str, i: int = i) -> None:
            if live:
                err.write(f"\r\033[K[{i}/{len(selected)}] {what}")
                err.flush()
        result = run_group(group, scale, rounds, progress)
        if live:
            err.write("\r\033[K")
            err.flush()
        print(format_group(result) + "\n", file=out, flush=True)
        results.append(result)
    return {
        "fastconc": fastconc.__version__,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "gil_enabled": gil_enabled(),
        "backend_in_use": fastconc.IMPLEMENTATION,
        "backends": list(_impl.implementations()),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "rounds": rounds,
        "scale": scale,
        "groups": [asdict(g) for g in results],
    }


def write_json(doc: dict[str, Any], path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


def have_matplotlib() -> bool:
    return not _missing("matplotlib")


def plot(doc: dict[str, Any], path: str) -> None:
    """A bar chart of every contender's ratio to its group's baseline."""
    matplotlib: Any = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    plt: Any = importlib.import_module("matplotlib.pyplot")

    ticker: Any = importlib.import_module("matplotlib.ticker")
    groups = doc["groups"]
    colors = {"compiled": "#1f77b4", "fallback": "#ff7f0e", "baseline": "#7f7f7f",
              "fastconc": "#1f77b4", "other": "#2ca02c"}
    ratios_all = [r["ratio"] for g in groups for r in g["results"]]
    rows = sum(len(g["results"]) for g in groups)
    fig, axes = plt.subplots(len(groups), 1, sharex=True, squeeze=False,
                             figsize=(9, 0.8 * len(groups) + 0.28 * rows))
    for ax, g in zip(axes[:, 0], groups, strict=True):
        names = [r["name"] for r in g["results"]]
        ratios = [r["ratio"] for r in g["results"]]
        # Bars grow from 1x (the baseline) to the ratio, left for slower.
        ax.barh(names, [ratio - 1 for ratio in ratios], left=1,
                color=[colors.get(r["kind"], "#999999") for r in g["results"]])
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        ax.invert_yaxis()
        ax.set_title(g["title"], fontsize=9, loc="left")
        ax.tick_params(labelsize=8)
        for y, ratio in enumerate(ratios):
            ax.text(ratio, y, f" {ratio:.2g}x ", va="center", fontsize=7,
                    ha="left" if ratio >= 1 else "right")
    axes[-1, 0].set_xlim(min(ratios_all) / 2, max(ratios_all) * 2)
    axes[-1, 0].xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
    axes[-1, 0].set_xlabel(f"times faster than the baseline (log scale)  -  "
                           f"Python {doc['python']}, GIL "
                           f"{'on' if doc['gil_enabled'] else 'off'}, {doc['date'][:10]}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


