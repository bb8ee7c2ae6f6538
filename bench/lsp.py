#!/usr/bin/env python3
"""Latency of `kflow lsp` as an editor sees it, on a ~5,000-line flow.

Builds kflow in release mode, starts `kflow lsp` and talks to it over stdio:

- didChange -> publishDiagnostics: one edit at a time (a character of a
  string literal changes), timed from sending the edit to receiving the
  diagnostics of that version; the server waits DEBOUNCE_MS of quiet before
  checking, so the figure that measures the server is the time minus that.
- completion: requests in three contexts (a property name in a task body, a
  value after `image: `, the outputs after `t3.`), timed to the response.

For reference, the same script times `kflow check` on the same file (whole
process, median of 9): the server's edit-to-diagnostics time past the
debounce should be about that. Prints p50/p95 of each. Usage: python3 bench/lsp.py [--edits N] [--completions N]
"""

import argparse
import json
import os
import queue
import statistics
import subprocess
import threading
import time

import generate
from common import ROOT, build_kflow

DEBOUNCE_MS = 100  # kflow_lsp::DEBOUNCE


class Server:
    def __init__(self, binary):
        self.p = subprocess.Popen([binary, "lsp"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.q = queue.Queue()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        f = self.p.stdout
        while True:
            length = None
            while True:
                line = f.readline()
                if not line:
                    return
                if not line.strip():
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            self.q.put((time.perf_counter(), json.loads(f.read(length))))

    def send(self, msg):
        body = json.dumps(msg).encode()
        self.p.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.p.stdin.flush()

    def notify(self, method, params):
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method, params):
        self.next_id += 1
        rid = self.next_id
        start = time.perf_counter()
        self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        while True:
            t, m = self.q.get(timeout=30)
            if m.get("id") == rid and "method" not in m:
                return t - start, m

    def wait_diagnostics(self, version):
        while True:
            t, m = self.q.get(timeout=30)
            p = m.get("params", {})
            if m.get("method") == "textDocument/publishDiagnostics" and p.get("version") == version:
                return t


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def position(text, offset):
    before = text[:offset]
    line = before.count("\n")
    col = len(before[before.rfind("\n") + 1:].encode("utf-16-le")) // 2
    return {"line": line, "character": col}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--edits", type=int, default=100)
    ap.add_argument("--completions", type=int, default=300)
    args = ap.parse_args()
    binary = build_kflow()
    text = generate.flow(1050)
    print(f"document: {text.count(chr(10))} lines, {len(text) / 1000:.0f} kB")

    s = Server(binary)
    s.request("initialize", {"processId": None, "rootUri": None, "capabilities": {}})
    s.notify("initialized", {})
    uri = "untitled:bench.kflow"
    s.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "kflow", "version": 1, "text": text}})
    s.wait_diagnostics(1)

    # Edits: change one character inside `"echo ` strings, spread over the file.
    sites = [i + 1 for i in range(len(text)) if text.startswith('"echo ', i)]
    version = 1
    change = []
    for k in range(args.edits):
        version += 1
        at = sites[(k * 37) % len(sites)]
        ch = "ab"[k % 2]
        pos = position(text, at)
        end = {"line": pos["line"], "character": pos["character"] + 1}
        text = text[:at] + ch + text[at + 1:]
        start = time.perf_counter()
        s.notify("textDocument/didChange", {
            "textDocument": {"uri": uri, "version": version},
            "contentChanges": [{"range": {"start": pos, "end": end}, "text": ch}],
        })
        change.append((s.wait_diagnostics(version) - start) * 1000)

    # Completions in three contexts.
    props = [i for i in range(len(text)) if text.startswith("\n    timeout: 5m", i)]
    values = [i + len("    image: ") for i in range(len(text)) if text.startswith("    image: t", i)]
    members = [text.index(".", v) + 1 for v in values]
    contexts = [("property", [p + 5 for p in props]), ("value", values), ("member", members)]
    completion = {name: [] for name, _ in contexts}
    counts = {}
    for k in range(args.completions):
        name, offs = contexts[k % 3]
        off = offs[(k * 13) % len(offs)]
        ms, r = s.request("textDocument/completion", {
            "textDocument": {"uri": uri},
            "position": position(text, off),
        })
        completion[name].append(ms * 1000)
        counts[name] = len(r["result"]["items"])
    s.request("shutdown", None)
    s.notify("exit", None)

    path = os.path.join(ROOT, "bench", "out", "lsp-bench.kflow")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    check = []
    for _ in range(9):
        start = time.perf_counter()
        subprocess.run([binary, "check", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        check.append((time.perf_counter() - start) * 1000)

    print(f"didChange -> publishDiagnostics ({args.edits} edits, debounce {DEBOUNCE_MS} ms):")
    print(f"  p50 {pct(change, 50):.1f} ms, p95 {pct(change, 95):.1f} ms"
          f"  (minus the debounce: p50 {pct(change, 50) - DEBOUNCE_MS:.1f} ms, p95 {pct(change, 95) - DEBOUNCE_MS:.1f} ms)")
    print(f"  kflow check on the same file: {statistics.median(check):.1f} ms (median of 9);"
          f" server p50 past the debounce / check = {(pct(change, 50) - DEBOUNCE_MS) / statistics.median(check):.2f}")
    every = [x for xs in completion.values() for x in xs]
    print(f"completion ({args.completions} requests): p50 {pct(every, 50):.2f} ms, p95 {pct(every, 95):.2f} ms")
    for name, xs in completion.items():
        print(f"  {name}: p50 {pct(xs, 50):.2f} ms, p95 {pct(xs, 95):.2f} ms, {counts[name]} items")


if __name__ == "__main__":
    main()
