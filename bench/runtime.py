#!/usr/bin/env python3
"""The `kflow run` benchmarks: one command, figures for docs/performance.md.

    python3 bench/runtime.py [--runs N] [--only noop|chain|sleeps|dag] [--kflow BIN]

1. 10,000 no-op tasks in a layered DAG (100 layers of 100, each task after
   two of the layer before), end to end with the execution history.
2. The critical path: a chain of 10,000 tasks, each after the one before
   and the seventh before, so no two run at once — `sleep { duration: 0ms }`
   and `log { message: "step done" }` (a line logged per task) — end to end
   with the history; the time per task is the executor's own overhead.
3. 200 one-second sleeps with --jobs 200.
4. A 1,000-command DAG of `shell.run { cmd: ["true"] }` against `ninja -j2`
   on an equivalent build.ninja (Debian's ninja-build, whose `command = true`
   runs `sh -c true`: one process per command on both sides, as `true` is a
   shell builtin), same run, alternating.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from common import build_kflow


def timed(cmd, cwd, env=None):
    start = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {p.stderr.decode()[:400]}")
    return time.perf_counter() - start


def layered(layers, width, task):
    out = ["flow bench {"]
    for l in range(layers):
        for w in range(width):
            after = f", after: [t{l - 1}_{w}, t{l - 1}_{(w + 1) % width}]" if l else ""
            out.append(f"  task t{l}_{w} = {task}{after} }}")
    out.append("}")
    return "\n".join(out) + "\n"


def chain(n, task):
    out = ["flow chain {"]
    for i in range(n):
        deps = [f"t{j}" for j in (i - 1, i - 7) if j >= 0]
        after = f", after: [{', '.join(deps)}]" if deps else ""
        out.append(f"  task t{i} = {task}{after} }}")
    out.append("}")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", choices=["noop", "chain", "sleeps", "dag"], help="run one benchmark")
    ap.add_argument("--kflow", help="a kflow binary to measure instead of a release build of this tree")
    args = ap.parse_args()
    wanted = lambda name: args.only in (None, name)
    kflow = os.path.abspath(args.kflow) if args.kflow else build_kflow()
    work = tempfile.mkdtemp(prefix="kflow-bench-")
    with open(os.path.join(work, "noop.kflow"), "w") as f:
        f.write(layered(100, 100, 'log { message: ""'))
    with open(os.path.join(work, "chain-sleep.kflow"), "w") as f:
        f.write(chain(10_000, "sleep { duration: 0ms"))
    with open(os.path.join(work, "chain-log.kflow"), "w") as f:
        f.write(chain(10_000, 'log { message: "step done"'))
    with open(os.path.join(work, "sleeps.kflow"), "w") as f:
        f.write("flow sleeps {\n" + "".join(f"  task s{i} = sleep {{ duration: 1s }}\n" for i in range(200)) + "}\n")
    with open(os.path.join(work, "dag.kflow"), "w") as f:
        f.write(layered(10, 100, 'shell.run { cmd: ["true"]'))
    with open(os.path.join(work, "build.ninja"), "w") as f:
        # Outputs are never written, so every run runs every command.
        f.write("rule t\n  command = true\n")
        for l in range(10):
            for w in range(100):
                deps = f" | o{l - 1}_{w} o{l - 1}_{(w + 1) % 100}" if l else ""
                f.write(f"build o{l}_{w}: t{deps}\n")

    print(f"machine: {os.cpu_count()} cores; {args.runs} runs each; medians\n")
    if wanted("noop"):
        noop = [timed([kflow, "run", "--jobs", "64", "noop.kflow"], work) for _ in range(args.runs)]
        print(f"10,000 no-op tasks, layered DAG, with history: {statistics.median(noop) * 1000:7.1f} ms (target < 1000)")
    for name, what in [("chain-sleep", "sleep 0ms"), ("chain-log", "log     ")] if wanted("chain") else []:
        times = [timed([kflow, "run", f"{name}.kflow"], work) for _ in range(args.runs)]
        t = statistics.median(times)
        print(f"10,000-task chain, {what}, with history:   {t * 1000:7.1f} ms, {t * 100:5.1f} us/task (target < 1000 ms)")
    if wanted("sleeps"):
        sleeps = [timed([kflow, "run", "--jobs", "200", "sleeps.kflow"], work) for _ in range(args.runs)]
        print(f"200 one-second sleeps, --jobs 200:             {statistics.median(sleeps) * 1000:7.1f} ms (target < 1300)")
    if not wanted("dag"):
        shutil.rmtree(work)
        return
    ninja = shutil.which("ninja")
    if not ninja:
        print("\nninja not found: `apt-get install ninja-build` to compare")
        return
    k_times, n_times = [], []
    for _ in range(args.runs):
        k_times.append(timed([kflow, "run", "--jobs", "2", "dag.kflow"], work))
        n_times.append(timed([ninja, "-j2"], work))
    k, n = statistics.median(k_times), statistics.median(n_times)
    print("\n1,000 `true` commands in a DAG, same run, alternating:")
    print(f"  kflow run --jobs 2  {k * 1000:7.1f} ms")
    print(f"  ninja -j2           {n * 1000:7.1f} ms")
    print(f"  kflow / ninja = {k / n:.2f} (target <= 1.2)")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
