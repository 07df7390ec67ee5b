"""Run a command under a sanitizer and judge what the sanitizer reported.

    python tools/run_sanitized.py address -- pytest tests ...
    python tools/run_sanitized.py thread  -- pytest tests/stress ...

``address``: the command's Python loads a core built with
FASTCONC_SANITIZE=address,undefined.  The ASan runtime must be the first
library in the process, and python itself is not instrumented, so it is
preloaded (LD_PRELOAD, found through the C compiler).  PYTHONMALLOC=malloc
sends every Python object through malloc, so an overflow of an object the
core touches is caught too.  Every process the command starts (the tests'
subprocesses included) writes its reports to a log folder, read afterwards:

* any AddressSanitizer error or UBSan "runtime error" fails the run (the
  core is built with -fno-sanitize-recover, so the process also aborts);
* leaks: CPython does not free everything at exit, so LeakSanitizer always
  finds some blocks; a leak fails the run only when its allocation stack
  passes through fastconc's code.  The others are counted and ignored.

``thread``: the command's Python is a ThreadSanitizer build of CPython
(configure --with-thread-sanitizer) and the core was built with
FASTCONC_SANITIZE=thread.  CPython's own suppressions file (from its source
tree, given with --suppressions) silences the races CPython knows of; a
report fails the run when its stacks pass through fastconc's code, the
others are counted and listed.

Exit status: the command's own when it failed, else 1 when a report counts
against fastconc, else 0.  A summary line says what was found.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# A frame of the core: compiled module names and its C sources.
OURS = re.compile(r"fastconc|_channel_\w*c|_deque_c|_ring_\w*c|_pool_\w*c|fc_atomic|fc_sync")
REPORT_START = re.compile(
    r"^(==\d+==ERROR: |(Direct|Indirect) leak of |WARNING: ThreadSanitizer: |"
    r"SUMMARY: |.*runtime error: )"
)


def runtime_library(name: str) -> str:
    cc = os.environ.get("CC", "cc")
    path = subprocess.run(
        [cc, f"-print-file-name={name}"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if not os.path.isabs(path):
        sys.exit(f"run_sanitized: {cc} has no {name} (install the compiler's sanitizer runtime)")
    return path


def split_reports(text: str) -> list[str]:
    """Cut a sanitizer log into reports: each starts at a header line."""
    reports: list[list[str]] = []
    for line in text.splitlines():
        if REPORT_START.match(line) or not reports:
            reports.append([])
        reports[-1].append(line)
    return ["\n".join(r) for r in reports]


def judge(log_dir: Path, mode: str) -> tuple[list[str], dict[str, int]]:
    """(reports against fastconc, counts of every kind) from the log files."""
    bad: list[str] = []
    counts = {"errors": 0, "leaks_fastconc": 0, "leaks_cpython": 0,
              "races_fastconc": 0, "races_cpython": 0, "logs": 0}
    for log in sorted(log_dir.iterdir()):
        counts["logs"] += 1
        for report in split_reports(log.read_text(errors="replace")):
            head = report.splitlines()[0] if report else ""
            if (head.startswith("SUMMARY: ") or not head.strip()
                    or "LeakSanitizer: detected memory leaks" in head):
                continue  # a header or footer around the leak reports
            if "leak of " in head:
                kind = "leaks_fastconc" if OURS.search(report) else "leaks_cpython"
                counts[kind] += 1
                if kind == "leaks_fastconc":
                    bad.append(f"{log.name}:\n{report}")
            elif "ThreadSanitizer" in head:
                kind = "races_fastconc" if OURS.search(report) else "races_cpython"
                counts[kind] += 1
                if kind == "races_fastconc":
                    bad.append(f"{log.name}:\n{report}")
            elif "ERROR: " in head or "runtime error:" in head:
                counts["errors"] += 1
                bad.append(f"{log.name}:\n{report}")
    return bad, counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["address", "thread"])
    parser.add_argument("--suppressions", type=Path, action="append", default=[],
                        help="TSan suppressions file(s) (thread mode)")
    parser.add_argument("--keep-logs", type=Path, help="copy the raw logs here")
    argv = sys.argv[1:]
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        parser.error("give the command after --")
    cut = argv.index("--")
    args = parser.parse_args(argv[:cut])
    command = argv[cut + 1:]

    log_dir = Path(tempfile.mkdtemp(prefix=f"fastconc-{args.mode}-"))
    env = dict(os.environ)
    if args.mode == "address":
        env["LD_PRELOAD"] = runtime_library("libasan.so")
        env["PYTHONMALLOC"] = "malloc"
        # allocator_may_return_null: an absurd size (the API fuzz asks for
        # 2**48 slots) must give the MemoryError a user would get, not abort.
        # exitcode=0 only for leaks: they are judged here, per stack.
        env["ASAN_OPTIONS"] = (f"detect_leaks=1:log_path={log_dir}/asan:abort_on_error=1:"
                               "allocator_may_return_null=1")
        env["LSAN_OPTIONS"] = "exitcode=0"
        env["UBSAN_OPTIONS"] = f"print_stacktrace=1:log_path={log_dir}/ubsan"
    else:
        supp = ""
        if args.suppressions:
            # TSan takes one file: join them into one.
            joined = log_dir.parent / f"{log_dir.name}.supp"
            joined.write_text("\n".join(p.read_text() for p in args.suppressions))
            supp = f":suppressions={joined}"
        env["TSAN_OPTIONS"] = (
            f"log_path={log_dir}/tsan:halt_on_error=0:exitcode=0:second_deadlock_stack=1{supp}"
        )

    rc = subprocess.call(command, env=env)
    bad, counts = judge(log_dir, args.mode)
    if args.keep_logs:
        shutil.copytree(log_dir, args.keep_logs, dirs_exist_ok=True)
    shutil.rmtree(log_dir, ignore_errors=True)

    for report in bad[:20]:
        print(report, file=sys.stderr)
    figures = ", ".join(f"{k}={v}" for k, v in counts.items())
    print(f"run_sanitized {args.mode}: command exit {rc}; {figures}")
    if rc:
        return rc
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
