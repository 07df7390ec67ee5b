"""Free-threaded CPython (3.13t): importing fastconc keeps the GIL off.

An extension module that does not declare ``freethreading_compatible``
silently turns the GIL back on for the whole process when it is imported;
this is the test that notices.  Skipped on builds with a GIL.
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import sysconfig

import pytest

import fastconc

pytestmark = pytest.mark.skipif(
    not sysconfig.get_config_var("Py_GIL_DISABLED"), reason="needs a free-threaded build"
)


def all_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(fastconc.__path__, "fastconc.")
                  if not m.name.endswith("__main__"))


def test_importing_every_module_keeps_the_gil_disabled(tmp_path):
    # In a fresh interpreter: this one may have imported them long ago, and
    # PYTHON_GIL must not be forcing the answer.
    names = all_modules()
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            "    assert not sys._is_gil_enabled(), name + ' re-enabled the GIL'\n"
            "print(len(sys.modules))\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHON_GIL"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "RuntimeWarning" not in proc.stderr, proc.stderr


def test_compiled_modules_are_among_them():
    names = all_modules()
    compiled = {"fastconc._channel_c", "fastconc._channel_queue_c", "fastconc._deque_c",
                "fastconc._pool_c", "fastconc._pool_task_c", "fastconc._ring_c",
                "fastconc._ring_mpmc_c"}
    if fastconc.IMPLEMENTATION == "cython":
        assert compiled <= set(names)
        for name in compiled:
            assert importlib.import_module(name).__file__.endswith((".so", ".pyd"))
    assert not sys._is_gil_enabled()
