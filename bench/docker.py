#!/usr/bin/env python3
"""The Docker/registry benchmark: one command, figures for docs/performance.md.

    python3 bench/docker.py [--runs N]

Needs the Docker engine, Debian's docker-registry, skopeo and busybox-static.

1. Build + push + promote (same registry) of a small image FROM scratch with
   busybox: `kflow run` on a flow, against the shell script a team would write
   (`docker build`, `docker push`, `skopeo copy`), alternating, same run. Both
   label the image with something new each run (kflow labels every image with
   its execution), so both rebuild the label step and push a new config.
2. The bytes a same-registry `registry.copy` moves, counted by a TCP proxy in
   front of the registry (expected: manifests, a few KiB — blobs are mounted).
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from common import build_kflow, busybox_context


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_registry(work):
    port = free_port()
    config = os.path.join(work, "registry.yml")
    with open(config, "w") as f:
        f.write(
            f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {work}/registry\n"
            f"http:\n  addr: 127.0.0.1:{port}\n"
        )
    proc = subprocess.Popen(["docker-registry", "serve", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, port
        except OSError:
            time.sleep(0.02)
    sys.exit("docker-registry did not start")


class CountingProxy:
    """Forwards 127.0.0.1:port to the registry, counting bytes both ways."""

    def __init__(self, target_port):
        self.target = target_port
        self.bytes = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            client, _ = self.sock.accept()
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pump, args=(a, b), daemon=True).start()

    def pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self.lock:
                    self.bytes += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass


def timed(cmd, cwd, env=None):
    start = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    if p.returncode != 0:
        sys.exit(f"{cmd} failed: {p.stdout.decode()[-600:]}{p.stderr.decode()[-600:]}")
    return time.perf_counter() - start, p.stdout.decode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    for tool in ("docker", "docker-registry", "skopeo", "busybox"):
        if not shutil.which(tool):
            sys.exit(f"`{tool}` is needed (Debian: docker-registry, skopeo, busybox-static)")
    kflow = build_kflow()
    work = tempfile.mkdtemp(prefix="kflow-bench-docker-")
    registry, port = start_registry(work)
    try:
        ctx = os.path.join(work, "img")
        busybox_context(ctx)
        reg = f"127.0.0.1:{port}"
        with open(os.path.join(work, "ship.kflow"), "w") as f:
            f.write(
                "flow ship {\n  input tag: string\n"
                '  task image = docker.build { context: "img" }\n'
                f'  task push = docker.push {{ image: image.image, to: ref("{reg}/team/app:${{tag}}") }}\n'
                f'  task promote = registry.copy {{ from: push.pinned, to: ref("{reg}/prod/app:${{tag}}") }}\n'
                "}\n"
            )
        with open(os.path.join(work, "ship.sh"), "w") as f:
            f.write(
                "set -eu\ntag=$1\n"
                f"docker build -q --label run=$tag -t {reg}/team/app:$tag img >/dev/null\n"
                f"docker push -q {reg}/team/app:$tag >/dev/null\n"
                f"skopeo copy -q --src-tls-verify=false --dest-tls-verify=false docker://{reg}/team/app:$tag docker://{reg}/prod/app:$tag\n"
            )
        k_times, s_times = [], []
        for i in range(args.runs + 1):
            k, _ = timed([kflow, "run", "--state", "state", "ship.kflow", "-i", f"tag=k{i}"], work)
            s, _ = timed(["sh", "ship.sh", f"s{i}"], work)
            if i > 0:  # the first round warms the build cache
                k_times.append(k)
                s_times.append(s)
        k, s = statistics.median(k_times), statistics.median(s_times)
        print(f"machine: {os.cpu_count()} cores; {args.runs} runs each, alternating; medians\n")
        print("build + push + promote (same registry), small image:")
        print(f"  kflow run                              {k * 1000:7.0f} ms")
        print(f"  docker build + docker push + skopeo copy {s * 1000:7.0f} ms")
        print(f"  kflow / script = {k / s:.2f}")

        # Bytes moved by a same-registry copy, through the counting proxy.
        proxy = CountingProxy(port)
        preg = f"127.0.0.1:{proxy.port}"
        _, out = timed(
            [kflow, "run", "--state", "state", "ship.kflow", "-i", "tag=measure"], work
        )
        with open(os.path.join(work, "copy.kflow"), "w") as f:
            f.write(
                "flow copy {\n  input from: pinned\n"
                f'  task promote = registry.copy {{ from: from, to: "{preg}/release/app:1" }}\n'
                "  output digest = promote.digest\n}\n"
            )
        digest = subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}", f"docker://{reg}/team/app:measure"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        blob_bytes = sum(
            l["size"]
            for l in __import__("json").loads(
                subprocess.run(
                    ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{reg}/team/app:measure"],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )["layers"]
        )
        proxy.bytes = 0
        timed([kflow, "run", "--state", "state", "copy.kflow", "-i", f"from={preg}/team/app@{digest}"], work)
        time.sleep(0.2)
        print(
            f"\nsame-registry registry.copy: {proxy.bytes} bytes over the wire (requests and answers), "
            f"for an image of {blob_bytes} bytes of layers"
        )
    finally:
        registry.terminate()
        registry.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
