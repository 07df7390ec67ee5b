"""Put several ``fastconc bench --json`` runs side by side: one markdown
table, a row per contender, a column per run (operations per second), and
the ratio of the last run to the first.

    python tools/bench_compare.py A.json B.json [C.json ...] [--kinds compiled,other]

Used for docs/BENCHMARKS.md's "3.13 and 3.13t side by side": run
``fastconc bench --json`` under each interpreter on the same machine, one
after the other, then compare.  With several runs per interpreter
(``--runs 2``: the files alternate A, B, A, B...), each column is the
median over that interpreter's runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any


def _label(run: dict[str, Any]) -> str:
    gil = "GIL" if run["gil_enabled"] else "no GIL"
    return f"{run['python']} ({gil})"


def _fmt(ops: float) -> str:
    if ops >= 1e6:
        return f"{ops / 1e6:.2f} M"
    if ops >= 1e3:
        return f"{ops / 1e3:.0f} k"
    return f"{ops:.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--runs", type=int, default=1,
                        help="runs per interpreter; the files alternate between them")
    parser.add_argument("--kinds", default="compiled,other,baseline",
                        help="contender kinds to show (compiled, fallback, baseline, other, "
                             "fastconc)")
    args = parser.parse_args(argv)
    runs = [json.load(open(f, encoding="utf-8")) for f in args.files]
    columns = max(1, len(runs) // args.runs)
    per_column = [runs[c::columns] for c in range(columns)]
    kinds = set(args.kinds.split(","))
    header = ["group", "contender"] + [_label(col[0]) for col in per_column]
    if columns > 1:
        header.append("last / first")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for g, group in enumerate(per_column[0][0]["groups"]):
        for r, result in enumerate(group["results"]):
            if result["kind"] not in kinds:
                continue
            medians = []
            for col in per_column:
                values = [run["groups"][g]["results"][r]["ops_per_s"] for run in col]
                medians.append(statistics.median(values))
            row = [group["key"], result["name"]] + [_fmt(m) for m in medians]
            if columns > 1:
                row.append(f"{medians[-1] / medians[0]:.2f}x")
            print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
