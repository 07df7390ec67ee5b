"""The TypedRingBuffer C API, used by a separately built extension.

tests/cext/fc_consumer.pyx cimports the installed fastconc (its .pxd files
and headers from get_include()), is compiled here into a temporary folder, and
moves values between a C thread and the calling thread with no GIL."""

from __future__ import annotations

import os
import pathlib

import pytest
from conftest import build_cext

import fastconc

HERE = pathlib.Path(__file__).parent

pytestmark = [
    pytest.mark.compiled,
    pytest.mark.skipif(os.name != "posix", reason="the consumer uses pthreads"),
]

@pytest.fixture(scope="module")
def consumer_module(tmp_path_factory):
    return build_cext("fc_consumer", tmp_path_factory.mktemp("cext"))


@pytest.mark.parametrize("capacity", [2, 64, 4096])
def test_c_thread_to_nogil_consumer_in_order(consumer_module, capacity):
    ring = fastconc.implementations()["cython"].TypedRingBuffer(capacity, "q")
    n = 200_000
    assert consumer_module.run(ring, n) == n
    assert len(ring) == 0


def test_c_api_and_python_api_share_the_ring(consumer_module):
    ring = fastconc.implementations()["cython"].TypedRingBuffer(8, "q")
    assert consumer_module.run(ring, 10) == 10
    # The Python side still works on the same ring afterwards.
    assert ring.push(5) and ring.pop() == 5
