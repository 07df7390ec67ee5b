"""The ThreadSanitizer run can see a race: tests/cext/planted_race.pyx has
two threads write one plain C integer with no synchronisation, and TSan must
report that race, naming the function.  A TSan run that reports nothing on
fastconc proves something only because this one reports here.

Runs under the TSan interpreter only (``tools/tsan-run`` sets
``FASTCONC_TSAN=1`` and runs this file first); elsewhere nothing would see
the race.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import build_cext

pytestmark = [
    pytest.mark.skipif(not os.environ.get("FASTCONC_TSAN"),
                       reason="needs the ThreadSanitizer interpreter (tools/tsan-run)"),
    pytest.mark.thread_unsafe(reason="builds an extension and runs a subprocess"),
]


def test_tsan_reports_the_planted_race(tmp_path):
    build = tmp_path / "build"
    build.mkdir()
    build_cext("planted_race", build)
    logs = tmp_path / "logs"
    logs.mkdir()
    # Its own log folder: the outer run (tools/run_sanitized.py) judges
    # fastconc's reports and must not see this one.
    env = dict(os.environ, TSAN_OPTIONS=f"log_path={logs}/tsan:halt_on_error=0:exitcode=0")
    proc = subprocess.run(
        [sys.executable, "-c", "import planted_race; print(planted_race.race(200_000))"],
        cwd=build, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    reports = "\n".join(p.read_text(errors="replace") for p in sorted(logs.iterdir()))
    races = [r for r in reports.split("WARNING: ThreadSanitizer: ")[1:]
             if r.startswith("data race") and "planted_race" in r]
    assert races, f"TSan did not report the planted race; its logs:\n{reports[:4000]}"
    assert "bump" in races[0]
