"""RingBuffer, SpscRingBuffer and TypedRingBuffer behaviour, on both backends."""

from __future__ import annotations

import array
import gc
import sys
import threading
import weakref

import pytest
from conftest import JOIN_TIMEOUT

from fastconc import Empty

OBJECT_RINGS = ("RingBuffer", "SpscRingBuffer")


class Obj:
    pass


@pytest.fixture(params=OBJECT_RINGS)
def ring_cls(impl, request):
    return getattr(impl, request.param)


# ---------------------------------------------------------------- object rings


@pytest.mark.parametrize("asked,actual", [(1, 2), (2, 2), (3, 4), (4, 4), (5, 8), (1000, 1024)])
def test_capacity_rounds_up_to_power_of_two(ring_cls, asked, actual):
    r = ring_cls(asked)
    assert r.capacity == actual
    assert [r.push(i) for i in range(actual)] == [True] * actual
    assert r.is_full() and not r.push("one too many")
    assert len(r) == actual


@pytest.mark.parametrize("bad,exc", [(0, ValueError), (-4, ValueError), (2.0, TypeError),
                                     ("4", TypeError), (True, TypeError), (None, TypeError)])
def test_bad_capacity(ring_cls, bad, exc):
    with pytest.raises(exc, match="capacity"):
        ring_cls(bad)


def test_fifo_empty_and_default(ring_cls):
    r = ring_cls(8)
    assert r.is_empty() and len(r) == 0
    with pytest.raises(Empty):
        r.pop()
    import queue

    with pytest.raises(queue.Empty):
        r.pop()
    assert r.pop(None) is None and r.pop(default=7) == 7
    for i in range(5):
        r.push(i)
    assert [r.pop() for _ in range(5)] == list(range(5))


def test_wraparound(ring_cls):
    r = ring_cls(4)
    out = []
    for i in range(1000):
        assert r.push(i)
        if i % 3 == 2:
            out.extend(r.pop_many(4))
    out.extend(r.pop_many(4))
    assert out == list(range(1000))


def test_push_many_stops_at_first_that_does_not_fit(ring_cls):
    r = ring_cls(4)
    assert r.push_many([1, 2, 3]) == 3
    assert r.push_many(iter([4, 5, 6])) == 1
    assert r.push_many([]) == 0
    assert r.pop_many(10) == [1, 2, 3, 4]
    assert r.pop_many(0) == []
    with pytest.raises(ValueError, match="max_items"):
        r.pop_many(-1)
    with pytest.raises(TypeError, match="max_items"):
        r.pop_many(1.5)
    with pytest.raises(TypeError):
        r.push_many(5)


def test_generic_repr_pickle(ring_cls):
    import pickle

    r = ring_cls(2)
    r.push(1)
    assert "len=1" in repr(r) and "capacity=2" in repr(r)
    assert ring_cls[int] is not None
    with pytest.raises(TypeError):
        pickle.dumps(r)
    with pytest.raises(RuntimeError, match="already initialised"):
        r.__init__(8)
    assert r.capacity == 2 and r.pop() == 1


def test_refcounts_exact(ring_cls):
    r = ring_cls(2)
    o = Obj()
    base = sys.getrefcount(o)
    assert r.push(o) and r.push(o)
    assert sys.getrefcount(o) == base + 2
    assert not r.push(o)
    assert r.push_many([o, o]) == 0
    assert sys.getrefcount(o) == base + 2, "a failed push must leave no reference"
    assert r.pop() is o
    assert sys.getrefcount(o) == base + 1
    assert r.pop_many(5) == [o]
    assert sys.getrefcount(o) == base


def test_dropping_releases_everything(ring_cls):
    released = []
    items = [Obj() for _ in range(6)]
    for i in range(len(items)):
        weakref.finalize(items[i], released.append, i)
    r = ring_cls(8)
    assert r.push_many(items) == 6
    assert r.pop() is items[0]
    del items
    assert released == [0]
    del r
    gc.collect()
    assert sorted(released) == list(range(6))


def test_cycle_through_ring_is_collected(ring_cls):
    r = ring_cls(4)
    holder = Obj()
    holder.ring = r
    r.push(holder)
    ref = weakref.ref(holder)
    del holder, r
    gc.collect()
    assert ref() is None


def test_spsc_other_thread_is_refused(impl):
    r = impl.SpscRingBuffer(8)
    r.push(1)
    errors = []

    def intruder():
        for call in (lambda: r.push(2), lambda: r.push_many([2])):
            try:
                call()
            except RuntimeError as exc:
                errors.append(str(exc))
        r.pop()  # the consumer side is still free: this thread takes it

    t = threading.Thread(target=intruder)
    t.start()
    t.join(JOIN_TIMEOUT)
    assert len(errors) == 2 and "single-push" in errors[0]
    with pytest.raises(RuntimeError, match="single-pop"):
        r.pop()
    assert len(r) == 0 and r.push(3)


# ---------------------------------------------------------------- typed ring

SAMPLES = {
    "b": [-128, 0, 127], "B": [0, 255], "h": [-32768, 32767], "H": [0, 65535],
    "i": [-(2**31), 2**31 - 1], "I": [0, 2**32 - 1], "l": [-(2**63), 2**63 - 1],
    "L": [0, 2**64 - 1], "q": [-(2**63), 2**63 - 1], "Q": [0, 2**64 - 1],
    "f": [0.5, -2.25], "d": [1e300, -0.0, 3.141592653589793],
}
TOO_BIG = {"b": 128, "B": 256, "h": 2**15, "H": 2**16, "i": 2**31, "I": 2**32,
           "l": 2**63, "L": 2**64, "q": 2**63, "Q": 2**64}


@pytest.mark.parametrize("typecode", sorted(SAMPLES))
def test_typed_round_trip(impl, typecode):
    if typecode in "lL" and array.array(typecode).itemsize != 8:
        pytest.skip("platform long is not 64-bit")
    r = impl.TypedRingBuffer(4, typecode)
    assert r.typecode == typecode and r.itemsize == array.array(typecode).itemsize
    for x in SAMPLES[typecode]:
        assert r.push(x)
    assert [r.pop() for _ in SAMPLES[typecode]] == SAMPLES[typecode]
    assert r.pop(None) is None


@pytest.mark.parametrize("typecode", sorted(TOO_BIG))
def test_typed_out_of_range_like_array(impl, typecode):
    r = impl.TypedRingBuffer(4, typecode)
    for bad in (TOO_BIG[typecode], -TOO_BIG[typecode] - 1 if typecode.islower() else -1):
        with pytest.raises(OverflowError):
            array.array(typecode).append(bad)
        with pytest.raises(OverflowError):
            r.push(bad)
    with pytest.raises(TypeError):
        r.push(1.5)
    with pytest.raises(TypeError):
        r.push("1")
    assert len(r) == 0


def test_typed_float_rejects_non_numbers(impl):
    r = impl.TypedRingBuffer(4, "d")
    with pytest.raises(TypeError):
        r.push("1.0")
    assert r.push(3) and r.pop() == 3.0


@pytest.mark.parametrize("bad,exc", [("x", ValueError), ("u", ValueError), ("dd", ValueError),
                                     (b"d", TypeError), (None, TypeError)])
def test_typed_bad_typecode(impl, bad, exc):
    with pytest.raises(exc, match="typecode"):
        impl.TypedRingBuffer(4, bad)


def test_typed_batches_wrap_and_partial(impl):
    r = impl.TypedRingBuffer(8, "i")
    src = array.array("i", range(100))
    out = []
    pos = 0
    while pos < len(src) or len(r):
        pos += r.push_many(memoryview(src)[pos:pos + 5])
        buf = array.array("i", [0] * 3)
        got = r.pop_into(buf)
        out.extend(buf[:got])
    assert out == list(src)
    assert r.push_many(array.array("i", range(20))) == 8
    assert r.is_full()
    got = r.pop_many(5)
    assert isinstance(got, array.array) and got.typecode == "i" and list(got) == [0, 1, 2, 3, 4]
    assert list(r.pop_many(100)) == [5, 6, 7]
    assert len(r.pop_many(3)) == 0


def test_typed_buffer_mismatch_is_rejected_before_copying(impl):
    r = impl.TypedRingBuffer(8, "d")
    with pytest.raises(ValueError, match="format"):
        r.push_many(array.array("f", [1.0]))
    with pytest.raises(ValueError, match="format"):
        r.push_many(array.array("q", [1]))
    with pytest.raises(ValueError, match="format"):
        r.push_many(b"12345678")
    with pytest.raises(TypeError, match="buffer protocol"):
        r.push_many([1.0, 2.0])
    strided = memoryview(array.array("d", range(8)))[::2]
    with pytest.raises(ValueError, match="contiguous"):
        r.push_many(strided)
    # Empty, it is contiguous whatever its strides (PyBuffer_IsContiguous):
    # both twins copy nothing and raise nothing (the fallback used to raise).
    assert r.push_many(strided[0:0]) == 0
    assert r.pop_into(memoryview(bytearray(16)).cast("d")[::2][0:0]) == 0
    with pytest.raises(ValueError, match="format"):
        r.push_many(memoryview(array.array("f", [1.0, 2.0]))[::2][0:0])
    assert len(r) == 0
    r.push(1.0)
    with pytest.raises(TypeError, match="read-only"):
        r.pop_into(memoryview(bytes(8)).cast("d"))
    with pytest.raises(ValueError, match="format"):
        r.pop_into(array.array("f", [0.0]))
    assert len(r) == 1


def test_typed_numpy_when_available(impl):
    np = pytest.importorskip("numpy")
    r = impl.TypedRingBuffer(1024, "q")
    src = np.arange(1000, dtype=np.int64)      # format 'l' on LP64: same kind and size
    assert r.push_many(src) == 1000
    dst = np.zeros(1000, dtype=np.int64)
    assert r.pop_into(dst) == 1000
    assert (dst == src).all()
    with pytest.raises(ValueError):
        r.push_many(np.zeros(4, dtype=np.float64))
    with pytest.raises(ValueError, match="contiguous"):
        r.push_many(np.zeros((4, 4), dtype=np.int64)[:, 0])
    be = np.arange(4, dtype=">i8" if sys.byteorder == "little" else "<i8")
    with pytest.raises(ValueError):
        r.push_many(be)
    assert len(r) == 0


def test_typed_spsc_ownership(impl):
    r = impl.TypedRingBuffer(8, "d")
    r.push(1.0)
    caught = []

    def intruder():
        try:
            r.push(2.0)
        except RuntimeError as exc:
            caught.append(exc)

    t = threading.Thread(target=intruder)
    t.start()
    t.join(JOIN_TIMEOUT)
    assert len(caught) == 1 and len(r) == 1


def test_spsc_push_many_from_generator_that_uses_the_ring(impl):
    # The generator pushes and pops on the same ring while push_many reads it.
    r = impl.SpscRingBuffer(8)

    def gen():
        r.push("a")
        r.pop()
        r.push("b")
        r.pop()
        yield "x"
        yield "y"

    assert r.push_many(gen()) == 2
    assert r.pop_many(10) == ["x", "y"] and len(r) == 0


def test_new_without_init_cannot_corrupt(ring_cls):
    try:
        r = ring_cls.__new__(ring_cls)
    except TypeError:
        return  # compiled: storage is allocated by __new__ itself
    with pytest.raises(AttributeError):
        r.push(1)


def test_typed_read_only_numpy_target(impl):
    np = pytest.importorskip("numpy")
    r = impl.TypedRingBuffer(8, "d")
    r.push(1.0)
    target = np.zeros(4)
    target.flags.writeable = False
    with pytest.raises(TypeError, match="read-only"):
        r.pop_into(target)
    assert len(r) == 1
