#!/usr/bin/env python3
"""Pushing big images: one command, figures for docs/performance.md.

    python3 bench/push.py [--runs N] [--sizes 400,1024]

Needs the Docker engine, Debian's docker-registry and skopeo.

For each size (MiB), an image FROM scratch of four layers, two of random
bytes and two of base64 text (which gzip shrinks to about three quarters),
is built once by `kflow run` (a `docker.build` then a `docker.push`); then,
per round, alternating which goes first, each push goes to a registry of its
own, started empty (so every blob is uploaded: skopeo's blob-info cache
would otherwise mount blobs it uploaded to another repository before):

- `kflow run` of that flow: the push task's own time (its `finished` event)
  and the whole process's peak resident memory (`wait4`);
- `skopeo copy docker-daemon:ID docker://…`, the independent client doing
  the same work (export from the engine, compress, upload): its time and
  peak resident memory.
"""

import argparse
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from common import build_kflow
from docker import start_registry

MIB = 1024 * 1024


def run(cmd, cwd):
    """Runs `cmd`; returns (seconds, peak resident MiB, stdout)."""
    out = tempfile.TemporaryFile()
    start = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - start
    p.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    text = out.read().decode(errors="replace")
    if p.returncode != 0:
        sys.exit(f"{cmd} failed: {text[-1200:]}")
    return elapsed, usage.ru_maxrss / 1024, text


class Registry:
    """An empty docker-registry of its own, removed afterwards."""

    def __init__(self, work):
        self.dir = tempfile.mkdtemp(dir=work, prefix="registry-")

    def __enter__(self):
        self.proc, port = start_registry(self.dir)
        return f"127.0.0.1:{port}"

    def __exit__(self, *_):
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def write_context(ctx, size_mib):
    os.makedirs(ctx)
    part = size_mib * MIB // 4
    for i in range(4):
        with open(os.path.join(ctx, f"part{i}"), "wb") as f:
            left = part
            while left > 0:
                n = min(left, 4 * MIB)
                if i % 2 == 0:
                    f.write(os.urandom(n))
                else:
                    f.write(base64.b64encode(os.urandom(n * 3 // 4 + 3))[:n])
                left -= n
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM scratch\n" + "".join(f"COPY part{i} /part{i}\n" for i in range(4)))


def pushed_bytes(reference):
    """The size of the layers a registry holds for `reference`."""
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{reference}"],
        capture_output=True, text=True, check=True,
    ).stdout
    return sum(layer["size"] for layer in json.loads(raw)["layers"])


def push_task_seconds(events):
    for line in events.splitlines():
        if line.startswith("{"):
            e = json.loads(line)
            if e.get("event") == "finished" and e.get("task") == "push":
                return e["elapsed_ms"] / 1000
    sys.exit("no `finished` event for the push task")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", default="400,1024")
    args = ap.parse_args()
    for tool in ("docker", "docker-registry", "skopeo"):
        if not shutil.which(tool):
            sys.exit(f"`{tool}` is needed (Debian: docker-registry, skopeo)")
    kflow = build_kflow()
    work = tempfile.mkdtemp(prefix="kflow-bench-push-")
    images = []
    try:
        print(f"machine: {os.cpu_count()} cores; {args.runs} rounds per size, alternating; medians\n")
        for size in (int(s) for s in args.sizes.split(",")):
            ctx = f"img{size}"
            write_context(os.path.join(work, ctx), size)
            flow = os.path.join(work, f"push{size}.kflow")
            with open(flow, "w") as f:
                f.write(
                    f"flow push{size} {{\n  input repo: string\n"
                    f'  task image = docker.build {{ context: "{ctx}" }}\n'
                    '  task push = docker.push { image: image.image, to: ref("${repo}:1") }\n'
                    "  output id = image.image\n}\n"
                )
            k_time, k_rss, s_time, s_rss = [], [], [], []
            sizes = {}
            for i in range(args.runs + 1):
                def kflow_push():
                    with Registry(work) as reg:
                        cmd = [kflow, "run", "--json", "--state", "state", flow, "-i", f"repo={reg}/k{size}"]
                        _, rss, out = run(cmd, work)
                        sizes["kflow"] = pushed_bytes(f"{reg}/k{size}:1")
                    for line in out.splitlines():
                        if '"event":"execution"' in line:
                            images.append(json.loads(line)["outputs"]["id"])
                    return push_task_seconds(out), rss

                def skopeo_push():
                    with Registry(work) as reg:
                        dest = f"docker://{reg}/s{size}:1"
                        cmd = ["skopeo", "copy", "-q", "--dest-tls-verify=false", f"docker-daemon:{images[-1]}", dest]
                        t, rss, _ = run(cmd, work)
                        sizes["skopeo"] = pushed_bytes(f"{reg}/s{size}:1")
                    return t, rss

                if i == 0:  # the first round builds the image and warms the caches
                    kflow_push()
                    skopeo_push()
                    continue
                if i % 2:
                    kt, kr = kflow_push()
                    st, sr = skopeo_push()
                else:
                    st, sr = skopeo_push()
                    kt, kr = kflow_push()
                k_time.append(kt)
                k_rss.append(kr)
                s_time.append(st)
                s_rss.append(sr)
            kt, st = statistics.median(k_time), statistics.median(s_time)
            print(f"{size} MiB image (4 layers):")
            mib = lambda n: f"{n / MIB:6.0f} MiB"
            print(f"  kflow docker.push   {kt:7.2f} s   peak RSS {statistics.median(k_rss):6.0f} MiB (whole run)   layers pushed {mib(sizes['kflow'])}")
            print(f"  skopeo copy         {st:7.2f} s   peak RSS {statistics.median(s_rss):6.0f} MiB                 layers pushed {mib(sizes['skopeo'])}")
            print(f"  kflow / skopeo = {kt / st:.2f}\n")
            shutil.rmtree(os.path.join(work, ctx), ignore_errors=True)
    finally:
        # The images this benchmark built, and only those.
        if images:
            subprocess.run(["docker", "rmi", "-f", *sorted(set(images))], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
