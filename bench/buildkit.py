#!/usr/bin/env python3
"""The BuildKit benchmark: one command, figures for docs/performance.md.

    python3 bench/buildkit.py [--runs N]

Needs the Docker engine, Debian's docker-registry and docker.io (its 20.10
client speaks BuildKit without buildx), busybox-static, and arm64 added as a
foreign architecture (`dpkg --add-architecture arm64 && apt-get update`) for
Debian's arm64 busybox.

1. `docker.build` with BuildKit against the classic builder, each a whole
   `kflow run` of one build task, alternating, on the quickstart's context
   (a static busybox and a page) and on a 50-file context (50 files of
   16 KiB, `COPY` then a `RUN` over them), cold (`no_cache: true`) and warm
   (the same context again); Debian's `docker build` with BuildKit beside
   them, the peer on the same engine.
2. A two-platform build, push and index: `kflow run` of `docker.build {
   platforms }` + `docker.push`, against what a team writes without buildx:
   Debian's `docker build --platform` twice (BuildKit), `docker push`
   twice, `docker manifest create` and `docker manifest push`. Each round
   changes one file, so both sides build and push a new layer and config.
"""

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from common import build_kflow, busybox_context
from docker import start_registry, timed

DEBIAN_DOCKER = "/usr/bin/docker"


def arm64_busybox(work):
    """Debian's arm64 busybox-static, unpacked from its package."""
    dl = os.path.join(work, "deb")
    os.makedirs(dl)
    subprocess.run(["apt-get", "download", "busybox-static:arm64"], cwd=dl, check=True, capture_output=True)
    deb = glob.glob(os.path.join(dl, "*.deb"))[0]
    subprocess.run(["dpkg-deb", "-x", deb, os.path.join(dl, "root")], check=True)
    return os.path.join(dl, "root", "bin", "busybox")


def fifty_files(path):
    os.makedirs(os.path.join(path, "files"))
    shutil.copy(shutil.which("busybox"), os.path.join(path, "busybox"))
    for i in range(50):
        with open(os.path.join(path, "files", f"f{i:02}.txt"), "w") as f:
            f.write((f"line {i} " * 2048)[:16384])
    with open(os.path.join(path, "Dockerfile"), "w") as f:
        f.write(
            "FROM scratch\nCOPY busybox /bin/busybox\n"
            'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
            "COPY files/ /files/\nRUN cat /files/* | wc -c > /size\n"
        )


def flow(context, builder, no_cache):
    return (
        "flow b {\n"
        f'  task image = docker.build {{ context: "{context}", builder: "{builder}", no_cache: {str(no_cache).lower()} }}\n'
        "}\n"
    )


def builders(kflow, work, runs):
    busybox_context(os.path.join(work, "quickstart"))
    with open(os.path.join(work, "quickstart", "index.html"), "w") as f:
        f.write("<h1>kflow</h1>\n")
    with open(os.path.join(work, "quickstart", "Dockerfile"), "a") as f:
        f.write("COPY index.html /site/index.html\n")
    fifty_files(os.path.join(work, "fifty"))
    rows = []
    for context in ["quickstart", "fifty"]:
        for cache in ["cold", "warm"]:
            times = {"buildkit": [], "classic": [], "cli": []}
            env = dict(os.environ, DOCKER_BUILDKIT="1")
            for rnd in range(runs + 1):
                for builder in times:
                    if builder == "cli":
                        cmd = [DEBIAN_DOCKER, "build", "-q"] + (["--no-cache"] if cache == "cold" else []) + ["."]
                        t, _ = timed(cmd, os.path.join(work, context), env)
                    else:
                        path = os.path.join(work, f"{builder}.kflow")
                        with open(path, "w") as f:
                            f.write(flow(context, builder, cache == "cold"))
                        t, _ = timed([kflow, "run", "--state", "state", path], work)
                    if rnd > 0:
                        times[builder].append(t)
            rows.append((context, cache, *(statistics.median(times[b]) for b in times)))
    print(
        "| context | cache | kflow, BuildKit | kflow, classic | BuildKit / classic | `docker build` (BuildKit) | kflow / docker |\n"
        "|---|---|---|---|---|---|---|"
    )
    for context, cache, bk, cl, cli in rows:
        name = "quickstart (busybox + a page)" if context == "quickstart" else "50 files of 16 KiB"
        print(
            f"| {name} | {cache} | {bk * 1000:.0f} ms | {cl * 1000:.0f} ms | {bk / cl:.2f} "
            f"| {cli * 1000:.0f} ms | {bk / cli:.2f} |"
        )


def two_platforms(kflow, work, runs):
    registry, port = start_registry(work)
    host = f"127.0.0.1:{port}"
    ctx = os.path.join(work, "multi")
    os.makedirs(ctx)
    shutil.copy(shutil.which("busybox"), os.path.join(ctx, "busybox-amd64"))
    shutil.copy(arm64_busybox(work), os.path.join(ctx, "busybox-arm64"))
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM scratch\nARG TARGETARCH\nCOPY busybox-${TARGETARCH} /bin/busybox\nCOPY round /round\n")
    env = dict(os.environ, DOCKER_BUILDKIT="1", DOCKER_CLI_EXPERIMENTAL="enabled")
    k_times, s_times = [], []
    try:
        for rnd in range(runs + 1):
            with open(os.path.join(ctx, "round"), "w") as f:
                f.write(f"kflow {rnd} {time.time()}\n")
            path = os.path.join(work, "multi.kflow")
            with open(path, "w") as f:
                f.write(
                    "flow m {\n"
                    '  task image = docker.build { context: "multi", platforms: ["linux/amd64", "linux/arm64"] }\n'
                    f'  task push = docker.push {{ image: image.image, to: ref("{host}/kflow/app:{rnd}") }}\n'
                    "}\n"
                )
            k, _ = timed([kflow, "run", "--state", "state", path], work)
            with open(os.path.join(ctx, "round"), "w") as f:
                f.write(f"script {rnd} {time.time()}\n")
            start = time.perf_counter()
            for arch in ["amd64", "arm64"]:
                tag = f"{host}/script/app:{rnd}-{arch}"
                timed([DEBIAN_DOCKER, "build", "-q", "--platform", f"linux/{arch}", "-t", tag, "."], ctx, env)
                timed([DEBIAN_DOCKER, "push", "-q", tag], ctx, env)
            index = f"{host}/script/app:{rnd}"
            timed(
                [DEBIAN_DOCKER, "manifest", "create", "--insecure", index]
                + [f"{host}/script/app:{rnd}-{a}" for a in ["amd64", "arm64"]],
                ctx,
                env,
            )
            timed([DEBIAN_DOCKER, "manifest", "push", "--insecure", "--purge", index], ctx, env)
            s = time.perf_counter() - start
            for arch in ["amd64", "arm64"]:
                subprocess.run([DEBIAN_DOCKER, "rmi", f"{host}/script/app:{rnd}-{arch}"], capture_output=True)
            if rnd > 0:
                k_times.append(k)
                s_times.append(s)
    finally:
        registry.kill()
    k, s = statistics.median(k_times), statistics.median(s_times)
    print("\n| two platforms: build, push, index | median |\n|---|---|")
    print(f"| `kflow run`: `docker.build {{ platforms }}` + `docker.push` | {k * 1000:.0f} ms |")
    print(f"| Debian's docker 20.10: `build --platform` ×2, `push` ×2, `manifest create` + `push` | {s * 1000:.0f} ms |")
    print(f"| ratio kflow / script | **{k / s:.2f}** |")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    kflow = build_kflow()
    work = tempfile.mkdtemp(prefix="kflow-bench-buildkit-")
    try:
        print(f"machine: {os.cpu_count()} cores; {args.runs} runs each after a warm-up, alternating; medians\n")
        builders(kflow, work, args.runs)
        two_platforms(kflow, work, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
