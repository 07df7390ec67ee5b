"""Check the build's backend rules from a copy of the source tree.

1. A broken compiler (CC=false) still builds, with a warning, a wheel that
   holds no extension module: the pure-Python install.
2. The same with FASTCONC_REQUIRE_EXTENSIONS=1 fails.
3. FASTCONC_NO_EXTENSIONS=1 builds no extension even with a good compiler.
4. A normal build holds the compiled module.
5. The sync header also compiles, links and runs a wait on its portable
   (non-Linux POSIX) path, which nothing else here exercises.

Run by ``tox -e build``; needs setuptools and Cython in the running env.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
IGNORE = shutil.ignore_patterns(".tox", ".git", "build", "dist", "*.egg-info", "*.so", "*.c",
                                "__pycache__", ".hypothesis", ".benchmarks")


def build(env_extra: dict[str, str]) -> tuple[int, str, list[str]]:
    with tempfile.TemporaryDirectory() as tmp:
        src = pathlib.Path(tmp, "src")
        shutil.copytree(ROOT, src, ignore=IGNORE)
        out = pathlib.Path(tmp, "wheels")
        env = {k: v for k, v in os.environ.items() if not k.startswith("FASTCONC_")}
        env.update(env_extra)
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps",
             "-v", "-w", str(out), str(src)],
            env=env, capture_output=True, text=True,
        )
        names: list[str] = []
        for whl in out.glob("*.whl"):
            with zipfile.ZipFile(whl) as z:
                names = z.namelist()
        return proc.returncode, proc.stdout + proc.stderr, names


def has_extension(names: list[str]) -> bool:
    return any(n.startswith("fastconc/_channel_c") and n.endswith((".so", ".pyd")) for n in names)


SYNC_SMOKE = r"""
#include "fc_sync.h"
int main(void) {
    fc_mutex m; fc_cond c;
    if (fc_mutex_init(&m) || fc_cond_init(&c)) return 2;
    fc_mutex_lock(&m);
    int64_t t0 = fc_monotonic_ns();
    int r = fc_cond_wait(&c, &m, 1000000, 1);   /* 1 ms, nobody signals */
    fc_mutex_unlock(&m);
    fc_cond_signal_n(&c, 1);
    fc_cond_broadcast(&c);
    return (r == FC_WAIT_OK && fc_monotonic_ns() - t0 >= 0) ? 0 : 1;
}
"""


def check_portable_sync_header() -> None:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    assert cc, "no C compiler"
    with tempfile.TemporaryDirectory() as tmp:
        src = pathlib.Path(tmp, "smoke.c")
        src.write_text(SYNC_SMOKE)
        exe = pathlib.Path(tmp, "smoke")
        subprocess.run([cc, "-std=c11", "-Wall", "-Werror", "-U__linux__",
                        f"-I{ROOT / 'fastconc' / '_support'}", str(src), "-o", str(exe),
                        "-lpthread"], check=True)
        subprocess.run([str(exe)], check=True)


def main() -> int:
    code, log, names = build({"CC": "false"})
    assert code == 0, log
    assert "compiled core could not be built" in log, log
    assert names and not has_extension(names), names
    assert "fastconc/_channel_py.py" in names
    print("ok: broken compiler -> warning and a pure-Python wheel")

    code, log, names = build({"CC": "false", "FASTCONC_REQUIRE_EXTENSIONS": "1"})
    assert code != 0, "FASTCONC_REQUIRE_EXTENSIONS=1 must make a failed compile fatal"
    print("ok: broken compiler + FASTCONC_REQUIRE_EXTENSIONS=1 -> build fails")

    code, log, names = build({"FASTCONC_NO_EXTENSIONS": "1"})
    assert code == 0 and names and not has_extension(names), log
    print("ok: FASTCONC_NO_EXTENSIONS=1 -> pure-Python wheel")

    code, log, names = build({"FASTCONC_REQUIRE_EXTENSIONS": "1"})
    assert code == 0 and has_extension(names), log
    print("ok: normal build -> compiled wheel")

    check_portable_sync_header()
    print("ok: fc_sync.h portable POSIX path compiles and runs")
    print("5 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
