"""``fastconc`` (or ``python -m fastconc``): the version, the backend in use
and why, and ``fastconc bench``, which measures every part of fastconc against
its fallback twin and what you would use otherwise (see fastconc._bench.runner)."""

from __future__ import annotations

import argparse
import os
import sys

from fastconc._bench import runner

USAGE = """\
commands:
  {prog} bench            quick comparison of everything (about 30 seconds)
  {prog} bench --full     longer, steadier runs
  {prog} bench --only channel,pool --json out.json --plot out.png
groups: {groups}
"""


def _prog() -> str:
    # The console script is named fastconc; under -m argv[0] is this file.
    name = os.path.basename(sys.argv[0]) if sys.argv else ""
    return "python -m fastconc" if name in ("", "__main__.py", "-c") else "fastconc"


def _parser() -> argparse.ArgumentParser:
    prog = _prog()
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=USAGE.format(prog=prog, groups=", ".join(runner.KEYS)))
    commands = parser.add_subparsers(dest="command")
    bench = commands.add_parser(
        "bench", help="compare compiled, fallback and the usual alternatives",
        description=runner.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_argument("--full", action="store_true",
                       help=f"{runner.FULL_SCALE:g}x the work and {runner.FULL_ROUNDS} rounds")
    bench.add_argument("--only", metavar="GROUPS",
                       help=f"comma-separated groups to run: {','.join(runner.KEYS)}")
    bench.add_argument("--rounds", type=int, help="timed rounds per figure (default 5)")
    bench.add_argument("--scale", type=float, help="multiply the work per run (default 1)")
    bench.add_argument("--json", metavar="PATH", help="write the results as JSON")
    bench.add_argument("--plot", metavar="PATH.png",
                       help="draw the ratios as a bar chart (needs matplotlib: "
                            "pip install fastconc[plot])")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        print(runner.header())
        print()
        parser.print_help()
        return 0
    keys = runner.KEYS
    if args.only:
        keys = [k.strip() for k in args.only.split(",") if k.strip()]
        unknown = [k for k in keys if k not in runner.KEYS]
        if unknown or not keys:
            parser.error(f"--only: unknown group(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(runner.KEYS)}")
    rounds = args.rounds if args.rounds is not None else (
        runner.FULL_ROUNDS if args.full else 5)
    scale = args.scale if args.scale is not None else (runner.FULL_SCALE if args.full else 1.0)
    if rounds < 1 or scale <= 0:
        parser.error("--rounds must be >= 1 and --scale > 0")
    refusal = runner.refusal()
    if refusal is not None:
        print(refusal, file=sys.stderr)
        return 2
    if args.plot and not runner.have_matplotlib():
        # Before the run, not after a minute of it.
        print("--plot needs matplotlib, which is not installed: "
              "pip install 'fastconc[plot]' (or pip install matplotlib)", file=sys.stderr)
        return 2
    doc = runner.run(keys, scale, rounds)
    if args.json:
        runner.write_json(doc, args.json)
        print(f"results written to {args.json}")
    if args.plot:
        runner.plot(doc, args.plot)
        print(f"plot written to {args.plot}")
    return 0
