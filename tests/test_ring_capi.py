"""The TypedRingBuffer C API, used by a separately built extension.

tests/cext/fc_consumer.pyx cimports the installed fastconc (its .pxd files
and headers from get_include()), is compiled here into a temporary folder, and
moves values between a C thread and the calling thread with no GIL."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import pytest
from conftest import load_backend

import fastconc

HERE = pathlib.Path(__file__).parent

pytestmark = [
    pytest.mark.compiled,
    pytest.mark.skipif(os.name != "posix", reason="the consumer uses pthreads"),
]

SETUP = textwrap.dedent("""
    import fastconc
    from Cython.Build import cythonize
    from setuptools import Extension, setup
    setup(
        name="fc_consumer",
        ext_modules=cythonize(
            [Extension("fc_consumer", ["fc_consumer.pyx"],
                       include_dirs=[fastconc.get_include()])],
            compiler_directives={"language_level": "3"},
        ),
        script_args=["build_ext", "--inplace", "-q"],
    )
""")


@pytest.fixture(scope="module")
def consumer_module(tmp_path_factory):
    load_backend("cython")
    pytest.importorskip("Cython")
    build = tmp_path_factory.mktemp("cext")
    shutil.copy(HERE / "cext" / "fc_consumer.pyx", build)
    (build / "setup.py").write_text(SETUP)
    proc = subprocess.run([sys.executable, "setup.py"], cwd=build,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (so,) = [p for p in build.iterdir() if p.name.startswith("fc_consumer.") and
             p.suffix in (".so", ".pyd")]
    spec = importlib.util.spec_from_file_location("fc_consumer", so)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
