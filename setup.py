"""Build script: cythonizes the compiled backend, or skips it.

FASTCONC_NO_EXTENSIONS=1        build pure Python only.
FASTCONC_REQUIRE_EXTENSIONS=1   a failed compile is an error instead of a
                                warning followed by a pure-Python install.
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

# One extension per compiled module; each includes the shared headers.
MODULES = ["_channel_c", "_pool_c", "_ring_c"]

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
    exts = [
        Extension(
            f"fastconc.{name}",
            [f"fastconc/{name}.pyx"],
            include_dirs=["fastconc/include"],
            # MSVC has <stdatomic.h> only behind these switches (VS 17.5+).
            extra_compile_args=(["/std:c11", "/experimental:c11atomics"] if os.name == "nt"
                                else ["-O2", "-std=c11"]),
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
)
