"""Deep dependency graphs: a 100,000-task chain (`check` and `graph`) and
a 10,000-task cycle (one diagnostic), timed as whole processes.

    python3 bench/chain.py [--runs N]
"""

import argparse
import os
import statistics
import subprocess
import tempfile
import time

from common import build_kflow


def chain(n, cycle):
    first = f", after: [t{n - 1}]" if cycle else ""
    lines = ["flow chain {", f'  task t0 = log {{ message: "x"{first} }}']
    lines += [f'  task t{i} = log {{ message: "x", after: [t{i - 1}] }}' for i in range(1, n)]
    return "\n".join(lines + ["}", ""])


def median(cmd, runs, ok):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - start)
        if p.returncode not in ok:
            raise SystemExit(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.decode()[:300]}")
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    kflow = build_kflow()
    with tempfile.TemporaryDirectory() as d:
        long = os.path.join(d, "chain.kflow")
        loop = os.path.join(d, "cycle.kflow")
        with open(long, "w") as f:
            f.write(chain(100_000, False))
        with open(loop, "w") as f:
            f.write(chain(10_000, True))
        print(f"check, 100,000-task chain: {median([kflow, 'check', long], args.runs, (0,)) * 1000:.0f} ms")
        graph = [kflow, "graph", "--format", "json", long]
        print(f"graph --format json, same: {median(graph, args.runs, (0,)) * 1000:.0f} ms")
        print(f"check, 10,000-task cycle: {median([kflow, 'check', loop], args.runs, (1,)) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
