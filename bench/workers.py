#!/usr/bin/env python3
"""`kflow serve` on a shared PostgreSQL history with 1, 2 and 4 `kflow
worker`s, against single-process `kflow run` on SQLite.

Builds kflow in release mode, starts a PostgreSQL of its own (Debian's
binaries, a temporary data folder, as the `postgres` user when root), then
for each worker count:

- 1,000 no-op tasks in one execution (a `for` over 1,000 items, `log`
  tasks): the execution's duration and throughput (tasks a second), claim
  latency (queued -> claimed, p50/p95) and each task's end-to-end latency
  (queued -> reported, p50/p95), read from the queue's own times;
- a 10-task flow (a chain of 10 `log` tasks) started at --rate executions a
  minute for --duration seconds: each execution's duration (recorded start
  -> end), p50/p95, and whether all ended.

The peer, in the same run: `kflow run` of the same two flows on SQLite, in
one process (the 10-task chain --runs times, sequentially).

Usage: python3 bench/workers.py [--rate 200] [--duration 30] [--runs 10] [--binary PATH]
"""

import argparse
import http.client
import json
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from datetime import datetime

from common import build_kflow

MANY = """flow many {
  input items: list<string>
  for i in items {
    task noop = log { message: "item ${i}" }
  }
}
"""

CHAIN = "flow chain {\n" + "".join(
    f'  task t{i} = log {{ message: "step {i}"{", after: [t%d]" % (i - 1) if i else ""} }}\n' for i in range(10)
) + "}\n"

PASSWORD = "bench-pg-password"


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ts(s):
    return datetime.fromisoformat(s).timestamp()


class Postgres:
    def __init__(self, work):
        versions = sorted(os.listdir("/usr/lib/postgresql"), key=int)
        self.bin = f"/usr/lib/postgresql/{versions[-1]}/bin"
        self.data = os.path.join(work, "pg")
        os.makedirs(self.data)
        os.chmod(work, 0o755)
        pw = os.path.join(work, "pw")
        with open(pw, "w") as f:
            f.write(PASSWORD)
        os.chmod(pw, 0o644)
        self.user = None
        if os.geteuid() == 0:
            self.user = pwd.getpwnam("postgres")
            os.chown(self.data, self.user.pw_uid, self.user.pw_gid)
        self.port = free_port()
        self.run([f"{self.bin}/initdb", "-U", "kflow", "-A", "scram-sha-256", "--no-sync", "-E", "UTF8",
                  "--locale", "C", f"--pwfile={pw}", "-D", self.data], check=True, capture_output=True)
        self.proc = self.popen([f"{self.bin}/postgres", "-D", self.data, "-p", str(self.port),
                                "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                                "-c", "max_connections=200"])
        while subprocess.run([f"{self.bin}/pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)]).returncode:
            time.sleep(0.05)
        self.url = f"postgres://kflow:{PASSWORD}@127.0.0.1:{self.port}/postgres"

    def _demote(self):
        if self.user:
            os.setgid(self.user.pw_gid)
            os.setuid(self.user.pw_uid)

    def run(self, args, **kw):
        return subprocess.run(args, preexec_fn=self._demote, **kw)

    def popen(self, args):
        return subprocess.Popen(args, preexec_fn=self._demote, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def sql(self, q):
        out = subprocess.run([f"{self.bin}/psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "kflow",
                              "-d", "postgres", "-At", "-c", q], env=dict(os.environ, PGPASSWORD=PASSWORD),
                             check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Deployment:
    """A server and `workers` workers on a fresh database."""

    def __init__(self, binary, work, workers):
        self.pg = Postgres(os.path.join(work, "db"))
        self.env = dict(os.environ, KFLOW_STORE=self.pg.url, NO_COLOR="1")
        flows = os.path.join(work, "flows")
        os.makedirs(flows)
        for name, text in [("many.kflow", MANY), ("chain.kflow", CHAIN)]:
            with open(os.path.join(flows, name), "w") as f:
                f.write(text)
        subprocess.run([binary, "user", "add", "bench", "--role", "admin", "--no-password"],
                       env=self.env, check=True, capture_output=True, cwd=work)
        out = subprocess.run([binary, "token", "create", "bench"], env=self.env, check=True,
                             capture_output=True, text=True, cwd=work)
        self.token = out.stdout.strip().splitlines()[-1]
        self.server = subprocess.Popen([binary, "serve", flows, "--listen", "127.0.0.1:0", "--jobs", "64",
                                        "--state", os.path.join(work, "st")],
                                       env=self.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                       cwd=work)
        self.addr = self.server.stdout.readline().strip().split("://")[1]
        self.workers = [
            subprocess.Popen([binary, "worker", "--name", f"w{i}", "--jobs", "16", "--state",
                              os.path.join(work, f"w{i}")], env=self.env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, cwd=work)
            for i in range(workers)
        ]

    def call(self, method, path, body=None):
        host, port = self.addr.split(":")
        c = http.client.HTTPConnection(host, int(port), timeout=60)
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, json.loads(data) if data else None

    def start(self, flow, inputs):
        status, body = self.call("POST", f"/api/v1/flows/{flow}/executions", {"inputs": inputs})
        assert status == 201, body
        return body["execution"]

    def wait(self, ident, limit=600):
        deadline = time.time() + limit
        while time.time() < deadline:
            _, e = self.call("GET", f"/api/v1/executions/{ident}")
            if e["state"] not in ("running", "queued"):
                return e
            time.sleep(0.05)
        raise RuntimeError(f"{ident} did not end")

    def stop(self):
        for p in self.workers + [self.server]:
            p.terminate()
        for p in self.workers + [self.server]:
            p.wait()
        self.pg.stop()


def many(d):
    items = [f"i{i}" for i in range(1000)]
    e = d.wait(d.start("many", {"items": items}))
    assert e["state"] == "succeeded", e["state"]
    took = ts(e["ended_at"]) - ts(e["started_at"])
    rows = d.pg.sql(f"""SELECT extract(epoch FROM claimed_at - enqueued_at), extract(epoch FROM ended_at - enqueued_at)
                        FROM task_queue WHERE execution_id = '{e["id"]}' AND state = 'succeeded'""")
    claim, e2e = zip(*[tuple(map(float, r.split("|"))) for r in rows.splitlines()])
    assert len(claim) == 1000, len(claim)
    return took, claim, e2e


def chain_at_rate(d, rate, duration):
    gap = 60.0 / rate
    ids = []
    t0 = time.time()
    while time.time() - t0 < duration:
        ids.append(d.start("chain", {}))
        next_at = t0 + len(ids) * gap
        time.sleep(max(0.0, next_at - time.time()))
    durations = []
    for i in ids:
        e = d.wait(i)
        assert e["state"] == "succeeded", e["state"]
        durations.append(ts(e["ended_at"]) - ts(e["started_at"]))
    return durations


def peer(binary, work, runs):
    """`kflow run` on SQLite, one process per run."""
    os.makedirs(work)
    for name, text in [("many.kflow", MANY), ("chain.kflow", CHAIN)]:
        with open(os.path.join(work, name), "w") as f:
            f.write(text)
    env = dict(os.environ, NO_COLOR="1")
    env.pop("KFLOW_STORE", None)
    items = ",".join(f"i{i}" for i in range(1000))

    def recorded(args):
        subprocess.run([binary, "run", *args, "--json", "--jobs", "64", "--state", "st"], cwd=work, env=env,
                       check=True, capture_output=True)
        out = subprocess.run([binary, "executions", "show", "latest", "--json", "--state", "st"], cwd=work, env=env,
                             check=True, capture_output=True, text=True)
        e = json.loads(out.stdout)
        return ts(e["ended_at"]) - ts(e["started_at"])

    took_many = recorded(["many.kflow", "-i", f"items={items}"])
    chain = [recorded(["chain.kflow"]) for _ in range(runs)]
    return took_many, chain


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=200)
    ap.add_argument("--duration", type=int, default=30)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--binary")
    a = ap.parse_args()
    binary = a.binary or build_kflow()
    work = tempfile.mkdtemp(prefix="kflow-bench-workers-")
    # PostgreSQL runs as its own user, which must reach its data folder.
    os.chmod(work, 0o755)
    try:
        took_many, chain = peer(binary, os.path.join(work, "peer"), a.runs)
        print(f"peer kflow run (SQLite): 1,000 tasks {took_many:.2f} s ({1000 / took_many:.0f} tasks/s); "
              f"10-task chain p50 {statistics.median(chain) * 1000:.0f} ms, p95 {pct(chain, 95) * 1000:.0f} ms")
        for n in (1, 2, 4):
            d = Deployment(binary, os.path.join(work, f"w{n}"), n)
            try:
                time.sleep(0.5)
                took, claim, e2e = many(d)
                print(f"{n} worker(s): 1,000 tasks {took:.2f} s ({1000 / took:.0f} tasks/s, "
                      f"{took / took_many:.2f}x kflow run); claim p50 {pct(claim, 50) * 1000:.1f} ms "
                      f"p95 {pct(claim, 95) * 1000:.1f} ms; task end-to-end p50 {pct(e2e, 50) * 1000:.1f} ms "
                      f"p95 {pct(e2e, 95) * 1000:.1f} ms")
                durations = chain_at_rate(d, a.rate, a.duration)
                print(f"{n} worker(s): 10-task chain at {a.rate}/min, {len(durations)} executions: "
                      f"p50 {statistics.median(durations) * 1000:.0f} ms, p95 {pct(durations, 95) * 1000:.0f} ms "
                      f"(kflow run p50 {statistics.median(chain) * 1000:.0f} ms)")
            finally:
                d.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
