"""Build script: cythonizes the compiled backend, or skips it.

FASTCONC_NO_EXTENSIONS=1        build pure Python only.
FASTCONC_REQUIRE_EXTENSIONS=1   a failed compile is an error instead of a
                                warning followed by a pure-Python install.
FASTCONC_SANITIZE=address,undefined
                                compile and link the core with these
                                -fsanitize= checks (the asan and tsan tox
                                envs); built in a build folder of its own.
Non-CPython interpreters always get pure Python.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NO_EXTENSIONS = bool(os.environ.get("FASTCONC_NO_EXTENSIONS")) or (
    sys.implementation.name != "cpython"
)
REQUIRE_EXTENSIONS = bool(os.environ.get("FASTCONC_REQUIRE_EXTENSIONS"))
SANITIZE = os.environ.get("FASTCONC_SANITIZE", "")


def sanitizer_flags():
    """(compile, link) flags for FASTCONC_SANITIZE: -O1 and frame pointers
    for usable reports; every check fatal (no recovering past a UB report)."""
    if not SANITIZE:
        return [], []
    checks = f"-fsanitize={SANITIZE}"
    return (
        [checks, "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g", "-O1"],
        [checks],
    )

# One extension per compiled module; each includes the shared headers.
MODULES = ["_channel_c", "_channel_queue_c", "_channel_select_c", "_deque_c", "_pool_c",
           "_pool_task_c", "_ring_c", "_ring_mpmc_c"]

FALLBACK_WARNING = """
********************************************************************************
WARNING: fastconc's compiled core could not be built ({reason}).
Installing the pure-Python backend instead: everything works, only slower.
Set FASTCONC_REQUIRE_EXTENSIONS=1 to make this an error.
********************************************************************************
"""


class OptionalBuildExt(build_ext):
    """build_ext that degrades to pure Python unless extensions are required."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler at all, missing headers, ...
            self._give_up(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # this compiler failed on this module
            self._give_up(exc)

    def _give_up(self, exc):
        if REQUIRE_EXTENSIONS:
            raise
        reason = f"{type(exc).__name__}: {exc}"
        sys.stderr.write(FALLBACK_WARNING.format(reason=reason))
        import warnings

        warnings.warn(f"fastconc: compiled core not built ({reason})", stacklevel=1)
        # Leave no half-built extension behind.
        self.extensions = []


def extensions():
    if NO_EXTENSIONS:
        return []
    try:
        from Cython.Build import cythonize
    except ImportError as exc:
        if REQUIRE_EXTENSIONS:
            raise
        sys.stderr.write(FALLBACK_WARNING.format(reason=f"Cython missing: {exc}"))
        return []
    san_compile, san_link = sanitizer_flags()
    exts = [
        Extension(
            f"fastconc.{name}",
            [f"fastconc/{name}.pyx"],
            include_dirs=["fastconc/_support"],
            # MSVC has <stdatomic.h> only behind these switches (VS 17.5+).
            extra_compile_args=(["/std:c11", "/experimental:c11atomics"] if os.name == "nt"
                                else ["-O2", "-std=c11", *san_compile]),
            extra_link_args=san_link,
        )
        for name in MODULES
    ]
    return cythonize(
        exts,
        compiler_directives={"language_level": "3"},
        include_path=["."],
    )


setup(
    ext_modules=extensions(),
    cmdclass={"build_ext": OptionalBuildExt},
    # An instrumented build must never reuse (or leave behind) the objects of
    # a plain build of the same interpreter: tox builds both at once.
    options={"build": {"build_base": f"build/sanitize-{SANITIZE.replace(',', '-')}"}}
    if SANITIZE else {},
)
