"""The leak detector of tests/leakkit.py catches what it must (leaked objects,
untracked memory, a missing decref, C heap) and passes clean operations."""

from __future__ import annotations

import ctypes
import sys
import weakref
from collections.abc import Iterator

import pytest
from leakkit import (
    _MALLOC,
    Token,
    assert_dies,
    assert_no_growth,
)

pytestmark = pytest.mark.thread_unsafe(
    reason="reads process-wide gc/tracemalloc state that concurrent tests would disturb")


# ---------------------------------------------------------------- self-tests


_LEAKED: list[object] = []


@pytest.fixture
def leak_box() -> Iterator[list[object]]:
    yield _LEAKED
    _LEAKED.clear()


def test_detector_catches_leaked_objects(leak_box):
    def leak() -> None:
        leak_box.append(Token())

    with pytest.raises(AssertionError, match="gc objects"):
        assert_no_growth(leak, warmup=10, runs=100)


def test_detector_catches_leaked_untracked_memory(leak_box):
    # bytes are not GC-tracked: only tracemalloc can see these.
    def leak() -> None:
        leak_box.append(bytes(40))

    with pytest.raises(AssertionError, match="tracemalloc bytes") as info:
        assert_no_growth(leak, warmup=10, runs=100)
    assert "gc objects" not in str(info.value)


def test_detector_catches_a_missing_decref():
    # What a missing Py_DECREF in C code does: the object is never freed.
    incref = ctypes.pythonapi.Py_IncRef
    incref.argtypes = [ctypes.py_object]
    incref.restype = None
    kept: list[weakref.ref[Token]] = []

    def leak() -> None:
        t = Token()
        incref(t)
        kept.append(weakref.ref(t))

    with pytest.raises(AssertionError, match="gc objects"):
        assert_no_growth(leak, warmup=5, runs=100)
    assert kept[0]() is not None
    with pytest.raises(AssertionError, match="still alive"):
        assert_dies(kept[0], "the leaked token", patience=0.1)


@pytest.mark.skipif(_MALLOC is None, reason="needs glibc's mallinfo2 (not under ASan)")
def test_detector_catches_leaked_c_heap():
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks: list[int] = []
    try:
        with pytest.raises(AssertionError, match="malloc bytes") as info:
            assert_no_growth(lambda: blocks.append(libc.malloc(512)), warmup=5, runs=100)
        assert "gc objects" not in str(info.value)
    finally:
        for p in blocks:
            libc.free(p)


@pytest.mark.skipif(not hasattr(sys, "gettotalrefcount"), reason="needs a debug build")
def test_detector_catches_a_leaked_reference_to_a_shared_object():
    incref = ctypes.pythonapi.Py_IncRef
    incref.argtypes = [ctypes.py_object]
    incref.restype = None
    shared = Token()
    with pytest.raises(AssertionError, match="refcount"):
        assert_no_growth(lambda: incref(shared), warmup=5, runs=100)


def test_detector_passes_clean_and_one_off_growth(tally):
    cache: dict[int, Token] = {}
    counter = iter(range(10**9))

    def op() -> None:
        n = next(counter)
        if n < 150:  # bounded: fills up during warm-up and the first block
            cache[n] = Token(n)
        [Token(i) for i in range(5)]  # garbage, freed at once

    assert assert_no_growth(op, warmup=100, runs=100) >= 200
