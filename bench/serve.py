#!/usr/bin/env python3
"""`kflow serve` under load, against the brief's numbers.

Builds kflow in release mode, starts `kflow serve` on a free loopback port
with a GitHub-webhook flow, and measures:

- latency: a signed delivery sent -> the first task started (its recorded
  `started_at`), p50/p95 over --deliveries sequential deliveries; the peer
  is `kflow run --trigger` of the same delivery (a process start, compile,
  bind and run), process start -> first task started;
- throughput: --rate deliveries a second for --duration seconds, each with
  its own delivery id, plus repeats of some; then nothing lost (every new id
  accepted and one execution each) and nothing doubled (repeats start
  nothing);
- the executions API with --executions executions in the history (written
  straight into SQLite first): a first page, a filtered page, a deep page by
  cursor, p50/p95; the peer is the same query in Python's sqlite3;
- the web UI's executions page over the same history (signed in through
  its form): first page, filtered, deep by cursor;
- resident memory, idle after start and after the load.

Usage: python3 bench/serve.py [--deliveries 200] [--rate 200] [--duration 60] [--executions 100000] [--binary PATH]
"""

import argparse
import hashlib
import hmac
import http.client
import json
import os
import random
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
from datetime import datetime

from common import build_kflow

SECRET = "bench-secret"

FLOW = """flow release {
  secret hook_key = env("RELEASE_HOOK_SECRET")
  on webhook "release" {
    provider: github
    secret: hook_key
    events: ["push"]
    when: trigger.ref_type == "tag"
    inputs: { version: trigger.tag }
  }
  input version: string
  task first = log { message: "release ${version}" }
}
"""


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def ts(s):
    return datetime.fromisoformat(s).timestamp()


class Server:
    def __init__(self, binary, work):
        self.work = work
        env = dict(os.environ, RELEASE_HOOK_SECRET=SECRET)
        # A second server on the same history finds the user there.
        subprocess.run([binary, "user", "add", "bench", "--role", "admin", "--no-password", "--state", "st"],
                       cwd=work, check=False, capture_output=True)
        out = subprocess.run([binary, "token", "create", "bench", "--state", "st"], cwd=work, check=True,
                             capture_output=True, text=True)
        self.token = out.stdout.strip().splitlines()[-1]
        self.p = subprocess.Popen([binary, "serve", "flow.kflow", "--listen", "127.0.0.1:0", "--state", "st"],
                                  cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.p.stdout.readline()
        host, port = line.strip().rsplit("http://", 1)[1].split(":")
        self.host, self.port = host, int(port)

    def request(self, method, path, body=b"", headers=None):
        c = http.client.HTTPConnection(self.host, self.port, timeout=30)
        h = {"Authorization": f"Bearer {self.token}"}
        h.update(headers or {})
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    def deliver(self, delivery, tag):
        body = json.dumps({"ref": f"refs/tags/{tag}", "after": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
                           "repository": {"full_name": "o/r"}, "sender": {"login": "o"}}).encode()
        sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        return self.request("POST", "/hooks/release/release", body, {
            "X-GitHub-Event": "push", "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": sig,
            "Content-Type": "application/json"})

    def first_task_started(self, execution):
        while True:
            status, data = self.request("GET", f"/api/v1/executions/{execution}")
            e = json.loads(data)
            started = [t["started_at"] for t in e.get("tasks", []) if t.get("started_at")]
            if started:
                return ts(min(started))
            time.sleep(0.002)

    def stop(self):
        self.p.terminate()
        self.p.wait(timeout=60)


def latency(server, n):
    out = []
    for i in range(n):
        sent = time.time()
        status, data = server.deliver(f"lat-{i}", f"v{i}")
        assert status == 202, (status, data)
        started = server.first_task_started(json.loads(data)["execution"])
        out.append((started - sent) * 1000)
    return out


def peer_latency(binary, work, n):
    """`kflow run --trigger` of the same delivery: process start -> first task."""
    payload = os.path.join(work, "push.json")
    with open(payload, "w") as f:
        json.dump({"ref": "refs/tags/v1", "after": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
                   "repository": {"full_name": "o/r"}, "sender": {"login": "o"}}, f)
    out = []
    for _ in range(n):
        start = time.time()
        subprocess.run([binary, "run", "flow.kflow", "--trigger", "release", "--payload", payload,
                        "--header", "X-GitHub-Event=push", "--state", "peer"],
                       cwd=work, capture_output=True, check=True)
        shown = subprocess.run([binary, "executions", "show", "latest", "--json", "--state", "peer"],
                               cwd=work, capture_output=True, text=True, check=True)
        started = json.loads(shown.stdout)["tasks"][0]["started_at"]
        out.append((ts(started) - start) * 1000)
    return out


def throughput(server, rate, duration):
    total = rate * duration
    results = []
    lock = threading.Lock()
    repeats = set(random.sample(range(total), max(1, total // 100)))

    def send(i):
        status, data = server.deliver(f"load-{i}", f"v{i}")
        again = server.deliver(f"load-{i}", f"v{i}") if i in repeats else None
        with lock:
            results.append((i, status, json.loads(data) if data else {}, again))

    threads = []
    start = time.time()
    for i in range(total):
        due = start + i / rate
        now = time.time()
        if due > now:
            time.sleep(due - now)
        t = threading.Thread(target=send, args=(i,))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    elapsed = time.time() - start
    accepted = [r for r in results if r[1] == 202]
    executions = {r[2]["execution"] for r in accepted}
    doubled = [r for r in results if r[3] is not None and json.loads(r[3][1]).get("execution") != r[2].get("execution")]
    return total, elapsed, len(accepted), len(executions), len(repeats), doubled


def seed(work, n):
    """Writes n finished executions straight into the history."""
    db = sqlite3.connect(os.path.join(work, "st", "history.db"))
    rows = []
    base = 1_700_000_000
    for i in range(n):
        stamp = datetime.fromtimestamp(base + i).strftime("%Y-%m-%dT%H:%M:%S.000+00:00")
        eid = datetime.fromtimestamp(base + i).strftime("%Y%m%d-%H%M%S000") + f"-{i:016x}"
        flow = "release" if i % 2 else "nightly"
        rows.append((eid, flow, "flow.kflow", "{}", "succeeded", stamp, stamp, 0, "[]", "{}",
                     json.dumps({"name": "release", "kind": "webhook"}), "server"))
    db.executemany("INSERT INTO executions (id, flow, file, inputs, state, started_at, ended_at, pid, failures, "
                   "outputs, trigger, origin) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    db.commit()
    db.close()


def api(server, work, requests):
    first, filtered, deep, peer = [], [], [], []
    status, data = server.request("GET", "/api/v1/executions?limit=50")
    cursor = json.loads(data)["executions"][-1]["id"]
    # A cursor 90% of the way down.
    db = sqlite3.connect(os.path.join(work, "st", "history.db"))
    count = db.execute("SELECT count(*) FROM executions").fetchone()[0]
    deep_cursor = db.execute("SELECT id FROM executions ORDER BY started_at DESC, id DESC LIMIT 1 OFFSET ?",
                             (count * 9 // 10,)).fetchone()[0]
    for _ in range(requests):
        for path, into in [("/api/v1/executions?limit=50", first),
                           ("/api/v1/executions?limit=50&flow=nightly&state=succeeded", filtered),
                           (f"/api/v1/executions?limit=50&cursor={deep_cursor}", deep)]:
            t = time.perf_counter()
            status, _ = server.request("GET", path)
            into.append((time.perf_counter() - t) * 1000)
            assert status == 200
        t = time.perf_counter()
        db.execute("SELECT * FROM executions ORDER BY started_at DESC, id DESC LIMIT 51").fetchall()
        peer.append((time.perf_counter() - t) * 1000)
    db.close()
    return first, filtered, deep, peer, count


def ui_session(server, binary):
    """A browser's session cookie, signed in through the UI's form."""
    subprocess.run([binary, "user", "add", "reader", "--role", "viewer", "--state", "st"], cwd=server.work,
                   env=dict(os.environ, KFLOW_PASSWORD="bench-password"), check=False, capture_output=True)
    c = http.client.HTTPConnection(server.host, server.port, timeout=30)
    c.request("GET", "/login")
    r = c.getresponse()
    page = r.read().decode()
    nonce = [v.split(";")[0] for k, v in r.getheaders() if k.lower() == "set-cookie" and v.startswith("kflow_login=")][0]
    csrf = page.split('name="csrf" value="')[1].split('"')[0]
    body = f"csrf={csrf}&username=reader&password=bench-password&next=%2Fexecutions"
    c.request("POST", "/login", body=body, headers={"Cookie": nonce, "Content-Type": "application/x-www-form-urlencoded"})
    r = c.getresponse()
    r.read()
    c.close()
    return [v.split(";")[0] for k, v in r.getheaders() if k.lower() == "set-cookie" and v.startswith("kflow_session=")][0]


def ui(server, binary, work, requests):
    """The executions page of the web UI: first page, filtered, deep."""
    cookie = ui_session(server, binary)
    db = sqlite3.connect(os.path.join(work, "st", "history.db"))
    count = db.execute("SELECT count(*) FROM executions").fetchone()[0]
    deep_cursor = db.execute("SELECT id FROM executions ORDER BY started_at DESC, id DESC LIMIT 1 OFFSET ?",
                             (count * 9 // 10,)).fetchone()[0]
    db.close()
    first, filtered, deep = [], [], []
    for _ in range(requests):
        for path, into in [("/executions", first), ("/executions?flow=nightly&state=succeeded", filtered),
                           (f"/executions?cursor={deep_cursor}", deep)]:
            t = time.perf_counter()
            status, page = server.request("GET", path, headers={"Cookie": cookie})
            into.append((time.perf_counter() - t) * 1000)
            assert status == 200 and b"<table" in page, (status, page[:200])
    return first, filtered, deep


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--deliveries", type=int, default=200)
    ap.add_argument("--rate", type=int, default=200)
    ap.add_argument("--duration", type=int, default=60)
    ap.add_argument("--executions", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--binary", help="a kflow to measure instead of a fresh release build")
    args = ap.parse_args()
    binary = args.binary or build_kflow()
    with tempfile.TemporaryDirectory() as work:
        with open(os.path.join(work, "flow.kflow"), "w") as f:
            f.write(FLOW)
        s = Server(binary, work)
        time.sleep(1)
        print(f"idle RSS after start: {rss_kib(s.p.pid) / 1024:.1f} MiB")

        lat = latency(s, args.deliveries)
        peer = peer_latency(binary, work, min(50, args.deliveries))
        print(f"delivery -> first task started: p50 {pct(lat, 50):.1f} ms, p95 {pct(lat, 95):.1f} ms "
              f"(peer, kflow run --trigger to first task: p50 {pct(peer, 50):.1f} ms)")

        total, elapsed, accepted, executions, repeats, doubled = throughput(s, args.rate, args.duration)
        print(f"{total} deliveries in {elapsed:.1f} s ({total / elapsed:.0f}/s): {accepted} accepted, "
              f"{executions} executions, {repeats} repeats, {len(doubled)} doubled")
        time.sleep(2)
        print(f"RSS after the load: {rss_kib(s.p.pid) / 1024:.1f} MiB")
        s.stop()

        seed(os.path.join(work), args.executions)
        s = Server(binary, work)
        first, filtered, deep, peer, count = api(s, work, args.requests)
        print(f"GET /api/v1/executions over {count} executions: first page p50 {pct(first, 50):.2f} ms "
              f"p95 {pct(first, 95):.2f} ms; filtered p95 {pct(filtered, 95):.2f} ms; "
              f"90% down by cursor p95 {pct(deep, 95):.2f} ms "
              f"(peer, the same page in sqlite3: p50 {statistics.median(peer):.2f} ms)")
        first, filtered, deep = ui(s, binary, work, args.requests)
        print(f"the UI's /executions page over {count} executions: first page p50 {pct(first, 50):.2f} ms "
              f"p95 {pct(first, 95):.2f} ms; filtered p95 {pct(filtered, 95):.2f} ms; "
              f"90% down by cursor p95 {pct(deep, 95):.2f} ms")
        s.stop()


if __name__ == "__main__":
    main()
