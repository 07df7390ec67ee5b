"""Shared fixtures: every behaviour test runs once per backend.

The "cython" parameter imports the compiled module directly, so a broken
build errors out here instead of quietly testing the fallback twice.  Where
FASTCONC_NO_EXTENSIONS says there is no compiled backend (a pure env), no
compiled case is collected at all: the parameter is not generated, and tests
marked ``compiled`` are deselected, so the summary counts only what ran.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import threading
import types
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator

import pytest

from fastconc import _impl

COMPILED = not _impl.NO_EXTENSIONS
BACKENDS = ("cython", "python") if COMPILED else ("python",)

# Upper bound, in seconds, for any single join/wait in a test: generous so a
# loaded CI machine never fails a correct run, finite so a bug cannot hang it.
JOIN_TIMEOUT = 60.0


def load_backend(name: str):  # noqa: ANN201 - a SimpleNamespace of classes
    return _impl.load_cython() if name == "cython" else _impl.load_python()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a pure env, deselect the tests marked ``compiled``."""
    if COMPILED:
        return
    compiled = [item for item in items if item.get_closest_marker("compiled")]
    if compiled:
        config.hook.pytest_deselected(items=compiled)
        items[:] = [item for item in items if not item.get_closest_marker("compiled")]


@pytest.fixture(params=BACKENDS)
def impl(request: pytest.FixtureRequest):  # noqa: ANN201
    """The primitives of one backend, as ``impl.Channel``, ``impl.Queue``..."""
    return load_backend(request.param)


def stress_scale() -> float:
    """Multiplier for stress-test sizes (FASTCONC_STRESS_SCALE, default 1)."""
    return float(os.environ.get("FASTCONC_STRESS_SCALE", "1"))


def check_counts(received: Iterable[Hashable], accepted: Iterable[Hashable],
                 what: str = "item") -> int:
    """Everything accepted was received exactly once and nothing else was;
    returns how many items that verified."""
    got = Counter(received)
    dupes = [x for x, c in got.items() if c > 1]
    assert not dupes, f"{len(dupes)} {what}s received twice, e.g. {dupes[:5]}"
    want = Counter(accepted)
    assert all(c == 1 for c in want.values()), "test bug: an item was accepted twice"
    lost = want.keys() - got.keys()
    assert not lost, f"{len(lost)} accepted {what}s lost, e.g. {sorted(lost)[:5]}"
    extra = got.keys() - want.keys()
    assert not extra, (f"{len(extra)} {what}s received that no call accepted, "
                       f"e.g. {sorted(extra)[:5]}")
    return len(want)


def check_exactly_once_sent(received: list[list[tuple[int, int]]], sent: list[int]) -> int:
    """Producer p sent (p, 0) .. (p, sent[p] - 1): each received exactly once,
    and each consumer saw one producer's items in order.  Returns the number
    of items checked."""
    n = check_counts((x for part in received for x in part),
                     ((p, i) for p, count in enumerate(sent) for i in range(count)))
    check_fifo_per_producer(received)
    return n


def check_fifo_per_producer(received: list[list[tuple[int, int]]]) -> None:
    """Each consumer sees one producer's items in the order sent."""
    for part in received:
        last: dict[int, int] = {}
        for p, i in part:
            assert i > last.get(p, -1), f"items of producer {p} arrived out of order"
            last[p] = i


def join_queue(q, timeout: float = JOIN_TIMEOUT) -> None:
    """q.join() has no timeout parameter (as in queue.Queue): run it in a
    thread so a bug fails the test instead of hanging it."""
    t = threading.Thread(target=q.join, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"Queue.join() still blocked after {timeout}s"


def watch_stopped(system, ref) -> threading.Event:  # noqa: ANN001 - ActorSystem, ActorRef
    """An Event set once ref has stopped (a watcher actor hears Terminated).
    Spawn it before whatever should stop the actor."""
    from fastconc import Actor, Terminated

    stopped = threading.Event()

    class Watcher(Actor):
        def on_start(self) -> None:
            self.context.watch(ref)

        def handle_message(self, msg):  # noqa: ANN001, ANN201
            if isinstance(msg, Terminated):
                stopped.set()

    system.spawn(Watcher)
    return stopped


class Threads:
    """Start threads that all begin together; join them with a timeout and
    re-raise the first exception any of them hit."""

    def __init__(self) -> None:
        # A lock because under pytest-run-parallel several copies of one
        # test share this fixture: a thread is listed only once started.
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def start(self, target: Callable[..., object], *args: object) -> threading.Thread:
        def run() -> None:
            try:
                target(*args)
            except BaseException as exc:  # reported by join()
                self.errors.append(exc)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        with self._lock:
            self._threads.append(t)
        return t

    def join(self, timeout: float = JOIN_TIMEOUT) -> None:
        with self._lock:
            started = list(self._threads)
        for t in started:
            t.join(timeout)
            assert not t.is_alive(), f"thread {t.name} still running after {timeout}s"
        if self.errors:
            raise self.errors[0]


@pytest.fixture
def threads() -> Iterator[Threads]:
    pool = Threads()
    yield pool
    pool.join()


class Tally:
    """Counts what the reliability tests did, for RELIABILITY.md's figures.

    Kinds used: ``operations`` (calls made on a structure), ``items_checked``
    (items whose exactly-once delivery was verified), ``faults`` (exceptions
    or misbehaviour injected through user code, and Ctrl-C deliveries),
    ``leak_checks`` (operations run in a loop and checked for growth),
    ``processes`` (child interpreters checked for a clean exit or fork).
    :meth:`peak` keeps maxima (the worst Ctrl-C latency).  Printed at the end of the run and
    written as JSON to $FASTCONC_TALLY_FILE when that is set.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.peaks: dict[str, float] = {}

    def add(self, **kinds: int) -> None:
        with self._lock:
            self.counts.update(kinds)

    def peak(self, **figures: float) -> None:
        """Keep the largest value seen of each figure (e.g. a latency)."""
        with self._lock:
            for name, value in figures.items():
                self.peaks[name] = max(value, self.peaks.get(name, value))


TALLY = Tally()


@pytest.fixture
def tally() -> Tally:
    return TALLY


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001 - pytest's reporter
    if not TALLY.counts and not TALLY.peaks:
        return
    figures = [f"{kind}={n:,}" for kind, n in sorted(TALLY.counts.items())]
    figures += [f"max {name}={v:,.1f}" for name, v in sorted(TALLY.peaks.items())]
    terminalreporter.write_line(f"fastconc tally: {', '.join(figures)}")
    path = os.environ.get("FASTCONC_TALLY_FILE")
    if path:
        with open(path, "w") as f:
            json.dump({"counts": dict(TALLY.counts), "max": TALLY.peaks}, f,
                      indent=1, sort_keys=True)


_CEXT_SETUP = textwrap.dedent("""
    import sys
    import fastconc
    from Cython.Build import cythonize
    from setuptools import Extension, setup
    name = sys.argv.pop(1)
    setup(
        name=name,
        ext_modules=cythonize(
            [Extension(name, [name + ".pyx"], include_dirs=[fastconc.get_include()])],
            compiler_directives={"language_level": "3"},
        ),
        script_args=["build_ext", "--inplace", "-q"],
    )
""")


def build_cext(name: str, build: pathlib.Path) -> types.ModuleType:
    """Compile tests/cext/<name>.pyx into ``build`` against the *installed*
    fastconc (its .pxd files and get_include() headers) and import it: how a
    third-party extension uses the C API, and how test-only C code stays out
    of the wheel."""
    pytest.importorskip("Cython")
    shutil.copy(pathlib.Path(__file__).parent / "cext" / f"{name}.pyx", build)
    (build / "setup.py").write_text(_CEXT_SETUP)
    proc = subprocess.run([sys.executable, "setup.py", name], cwd=build,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (so,) = [p for p in build.iterdir() if p.name.startswith(f"{name}.") and
             p.suffix in (".so", ".pyd")]
    spec = importlib.util.spec_from_file_location(name, so)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def reported(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201 - faultkit.Reported
    """Captures what fastconc reports through threading.excepthook and
    sys.unraisablehook (see tests/faultkit.py), so tests check it."""
    from faultkit import capture_reports

    return capture_reports(monkeypatch)
