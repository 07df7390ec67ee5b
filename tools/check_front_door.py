"""Run the README's first command as a new user would, and check what it prints.

The command is read out of README.md (its first ```sh block), so the README
cannot drift from what is tested.  It runs with ``bash -c`` from the root of
this checkout, in a fresh virtual environment made here (its bin folder first
on PATH, as activating it would do), with no FASTCONC_* or PYTHONPATH
variables from the caller.  It fails unless:

* the command exits 0;
* the bench header says ``backend in use: cython`` and has no fallback line;
* the channel group has a measured compiled row;
* the actors group has a measured pykka row (the command installs the peers).

Run by tools/test-matrix before the tox matrix.  Usage:
``python3 tools/check_front_door.py [--python PYTHON] [--log PATH]``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 20 * 60  # install (a compile) + the quick bench take ~2 min here
# A measured row: "  name   1,234,567 items/s   812 ns/op   9.50x"
ROW = re.compile(r"^\s{2}(?P<name>\S.*?)\s+(?P<rate>[\d,]+) \S+/s\s+\S+ \S+/op\s+"
                 r"(?P<ratio>[\d.]+)x")


def readme_command(readme: Path) -> str:
    text = readme.read_text(encoding="utf-8")
    match = re.search(r"^```sh\n(.*?)^```", text, flags=re.S | re.M)
    if match is None:
        raise SystemExit(f"check_front_door: no ```sh block in {readme}")
    lines = [line for line in match.group(1).splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise SystemExit(f"check_front_door: the first ```sh block of {readme} is empty")
    return "\n".join(lines)


def groups(output: str) -> dict[str, list[tuple[str, float]]]:
    """Group title -> its measured rows (name, rate)."""
    found: dict[str, list[tuple[str, float]]] = {}
    title = None
    for line in output.splitlines():
        if line and not line[0].isspace() and "per run]" in line:
            title = line
            found[title] = []
        elif title is not None and (m := ROW.match(line)):
            found[title].append((m["name"], float(m["rate"].replace(",", ""))))
    return found


def check(output: str) -> list[str]:
    """What is wrong with the command's output (empty when it is right)."""
    problems = []
    lines = output.splitlines()
    header = [i for i, line in enumerate(lines) if line.startswith("backend in use:")]
    if not header:
        problems.append("no 'backend in use:' line: the bench did not start")
    else:
        backend = lines[header[0]].split()[3]
        if backend != "cython":
            problems.append(f"the header says 'backend in use: {backend}', not cython")
    if header and any("FALLBACK" in line for line in lines[:header[0]]):
        problems.append("the header reports the pure-Python fallback")
    measured = groups(output)

    def rows(title_word: str) -> list[tuple[str, float]]:
        return [row for title, rs in measured.items() if title_word in title.lower()
                for row in rs]

    if not any(name.startswith("cython") and rate > 0 for name, rate in rows("channel")):
        problems.append("no measured compiled (cython) row in the channel group")
    if not any(name.startswith("pykka") and rate > 0 for name, rate in rows("actor")):
        problems.append("no measured pykka row in the actors group")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter the fresh venv is made from")
    parser.add_argument("--log", help="also write the command's output here")
    args = parser.parse_args()
    command = readme_command(ROOT / "README.md")
    print(f"check_front_door: README's first command, from {ROOT}:\n  {command}", flush=True)
    with tempfile.TemporaryDirectory(prefix="fastconc-front-door-") as tmp:
        venv = Path(tmp, "venv")
        subprocess.run([args.python, "-m", "venv", str(venv)], check=True)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("FASTCONC_", "PYTHON", "PIP_REQUIRE", "VIRTUAL_ENV"))}
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(venv)
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        try:
            proc = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            print(exc.output or "")
            print(f"check_front_door: FAILED: the command ran over {TIMEOUT} s")
            return 1
    output = proc.stdout
    # What follows pip's install log (long) is the bench's output.
    installed = output.rfind("Successfully installed")
    print(output if installed < 0 else output[output.find("\n", installed) + 1:], flush=True)
    if args.log:
        Path(args.log).write_text(output, encoding="utf-8")
    problems = check(output)
    if proc.returncode != 0:
        problems.insert(0, f"the command exited {proc.returncode}")
    if problems:
        for problem in problems:
            print(f"check_front_door: FAILED: {problem}")
        return 1
    print("check_front_door: OK (compiled backend measured, pykka row present)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
