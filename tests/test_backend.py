"""Backend selection, packaging and the error hierarchy."""

from __future__ import annotations

import importlib.machinery
import os
import pathlib
import queue
import subprocess
import sys

import pytest

import fastconc
from fastconc import _impl, errors

SOURCE_TREE = pathlib.Path(__file__).resolve().parent.parent


def test_implementation_names():
    found = fastconc.implementations()
    assert "python" in found
    assert fastconc.IMPLEMENTATION in found
    assert fastconc.Channel is found[fastconc.IMPLEMENTATION].Channel
    assert fastconc.Queue is found[fastconc.IMPLEMENTATION].Queue
    for name, module in (("RingBuffer", "_ring_mpmc_py"), ("SpscRingBuffer", "_ring_py"),
                         ("TypedRingBuffer", "_ring_py")):
        assert getattr(fastconc, name) is getattr(found[fastconc.IMPLEMENTATION], name)
        assert getattr(found["python"], name).__module__ == f"fastconc.{module}"
    assert found["python"].Queue.__module__ == "fastconc._channel_queue_py"
    if _impl.NO_EXTENSIONS:
        assert list(found) == ["python"] and fastconc.IMPLEMENTATION == "python"


def test_tests_run_against_installed_package():
    package_dir = pathlib.Path(fastconc.__file__).resolve().parent
    assert package_dir != SOURCE_TREE / "fastconc", (
        f"fastconc imported from the source tree ({package_dir}); install it and "
        "run pytest from outside the checkout"
    )
    assert package_dir.parent.name in ("site-packages", "dist-packages"), package_dir


@pytest.mark.compiled
def test_cython_backend_is_compiled():
    from fastconc import _channel_c, _channel_queue_c, _ring_c, _ring_mpmc_c

    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for module in (_channel_c, _channel_queue_c, _ring_c, _ring_mpmc_c):
        assert module.__file__.endswith(suffixes), module.__file__
        assert isinstance(module.__loader__, importlib.machinery.ExtensionFileLoader)
    assert fastconc.IMPLEMENTATION == "cython"
    ns = fastconc.implementations()["cython"]
    assert ns.Channel.__module__ == "fastconc._channel_c"
    assert ns.Queue.__module__ == "fastconc._channel_queue_c"
    assert ns.RingBuffer.__module__ == "fastconc._ring_mpmc_c"
    for name in ("SpscRingBuffer", "TypedRingBuffer"):
        assert getattr(ns, name).__module__ == "fastconc._ring_c"


def test_no_extensions_env_forces_python():
    env = dict(os.environ, FASTCONC_NO_EXTENSIONS="1")
    env.pop("FASTCONC_REQUIRE_EXTENSIONS", None)
    out = subprocess.run(
        [sys.executable, "-c",
         "import fastconc; print(fastconc.IMPLEMENTATION, sorted(fastconc.implementations()))"],
        env=env, capture_output=True, text=True, check=True, cwd="/",
    ).stdout.split(None, 1)
    assert out == ["python", "['python']\n"]


def test_headers_and_stubs_are_installed():
    inc = pathlib.Path(fastconc.get_include())
    assert (inc / "fc_atomic.h").is_file() and (inc / "fc_sync.h").is_file()
    pkg = pathlib.Path(fastconc.__file__).parent
    for name in ("py.typed", "_channel_c.pyi", "_channel_c.pxd", "_support/sync.pxd",
                 "_support/atomic.pxd", "_support/gc.pxd", "_support/deadline.pxd",
                 "_channel_queue_c.pyi", "_channel_queue_c.pxd",
                 "_deque_c.pyi", "_deque_c.pxd", "_pool_c.pyi", "_pool_c.pxd",
                 "_pool_task_c.pyi", "_pool_task_c.pxd", "_pool_sleep_c.pxd",
                 "_pool_latch_c.pxd", "_ring_c.pyi", "_ring_c.pxd", "_ring_mpmc_c.pyi",
                 "_ring_mpmc_c.pxd"):
        assert (pkg / name).is_file(), name


@pytest.mark.parametrize(
    "exc,bases",
    [
        (errors.ChannelClosed, (errors.ConcurrencyError,)),
        (errors.Timeout, (errors.ConcurrencyError, TimeoutError)),
        (errors.Empty, (errors.ConcurrencyError, queue.Empty)),
        (errors.Full, (errors.ConcurrencyError, queue.Full)),
        (errors.ResourceUnavailable, (errors.ConcurrencyError, TimeoutError)),
        (errors.Deadlock, (errors.ConcurrencyError,)),
        (errors.CircuitOpenError, (errors.ConcurrencyError,)),
        (errors.ActorStopped, (errors.ConcurrencyError,)),
    ],
)
def test_error_hierarchy(exc, bases):
    for base in bases:
        assert issubclass(exc, base)
    assert getattr(fastconc, exc.__name__) is exc


@pytest.mark.skipif(sys.version_info < (3, 13), reason="queue.ShutDown is new in 3.13")
def test_channel_closed_is_queue_shutdown():
    assert issubclass(errors.ChannelClosed, queue.ShutDown)


def test_main_module_without_arguments_prints_version_backend_and_help():
    out = subprocess.run(
        [sys.executable, "-m", "fastconc"],
        capture_output=True, text=True, check=True, cwd="/", timeout=300,
    ).stdout
    assert f"fastconc {fastconc.__version__}" in out
    assert f"backend in use: {fastconc.IMPLEMENTATION}" in out
    assert "python -m fastconc bench" in out
