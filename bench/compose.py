#!/usr/bin/env python3
"""The Compose benchmark: one command, figures for docs/performance.md.

    python3 bench/compose.py [--runs N]

Needs the Docker engine, docker-compose (or the compose plugin) and
busybox-static. On the same Compose file (two services, one waiting for the
other's health), alternating in one run:

- kflow: `compose.up` (until every service is healthy) then `compose.down`
  with volumes, timed from the task log;
- docker-compose: `up -d`, then polling `docker inspect` until every
  container is healthy, then `down -v`.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from common import build_kflow, busybox_context

STACK = """services:
  seed:
    image: kflow-bench/busybox:1
    command: ["sh", "-c", "mkdir -p /d && touch /d/ok && exec sleep 3600"]
    volumes: ["data:/data"]
    healthcheck:
      test: ["CMD", "test", "-f", "/d/ok"]
      interval: 1s
      retries: 60
  web:
    image: kflow-bench/busybox:1
    command: ["sh", "-c", "mkdir -p /w && echo ok > /w/index.html && exec httpd -f -p 8080 -h /w"]
    ports: ["127.0.0.1::8080"]
    depends_on:
      seed:
        condition: service_healthy
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
      interval: 1s
      retries: 60
volumes:
  data:
"""

FLOW = """flow bench {
  input n: int
  try {
    task stack = compose.up { file: "stack.yml", project: "kflow-bench-${n}" }
  } finally {
    task down = compose.down { project: "kflow-bench-${n}", volumes: true, after: [stack] }
  }
}
"""


def compose_cmd():
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    sys.exit("neither `docker compose` nor `docker-compose` is available")


def run(cmd, cwd):
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{cmd} failed: {p.stdout[-800:]}{p.stderr[-800:]}")
    return p.stdout


def healthy(project):
    ids = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={project}"],
        capture_output=True, text=True,
    ).stdout.split()
    if len(ids) < 2:
        return False
    states = json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True).stdout)
    return all(s["State"].get("Health", {}).get("Status") == "healthy" for s in states)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    kflow = build_kflow()
    work = tempfile.mkdtemp(prefix="kflow-bench-compose-")
    try:
        ctx = os.path.join(work, "img")
        busybox_context(ctx)
        run(["docker", "build", "-q", "-t", "kflow-bench/busybox:1", ctx], work)
        with open(os.path.join(work, "stack.yml"), "w") as f:
            f.write(STACK)
        with open(os.path.join(work, "bench.kflow"), "w") as f:
            f.write(FLOW)
        cc = compose_cmd()
        k_up, k_down, c_up, c_down = [], [], [], []
        for i in range(args.runs):
            out = run([kflow, "run", "--state", "state", "bench.kflow", "-i", f"n={i}"], work)
            k_up.append(float(re.search(r"stack \| succeeded in ([0-9.]+)s", out).group(1)))
            k_down.append(float(re.search(r"down \| succeeded in ([0-9.]+)s", out).group(1)))
            project = f"compose-bench-{i}"
            t = time.perf_counter()
            run([*cc, "-f", "stack.yml", "-p", project, "up", "-d"], work)
            while not healthy(project):
                time.sleep(0.1)
            c_up.append(time.perf_counter() - t)
            t = time.perf_counter()
            run([*cc, "-f", "stack.yml", "-p", project, "down", "-v"], work)
            c_down.append(time.perf_counter() - t)
        med = statistics.median
        print(f"machine: {os.cpu_count()} cores; {args.runs} runs each, alternating; medians\n")
        print(f"up until healthy:  kflow compose.up   {med(k_up) * 1000:7.0f} ms   {' '.join(cc)} up -d + wait {med(c_up) * 1000:7.0f} ms   ratio {med(k_up) / med(c_up):.2f}")
        print(f"down with volumes: kflow compose.down {med(k_down) * 1000:7.0f} ms   {' '.join(cc)} down -v      {med(c_down) * 1000:7.0f} ms   ratio {med(k_down) / med(c_down):.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
