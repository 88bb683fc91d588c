#!/usr/bin/env python3
"""Timing probes of bench/run.sh --peer (bench/README.md, "Side by side with Kafka Streams").
Polls a process over HTTP on a keep-alive connection, every --interval seconds, and prints
wall-clock times (time.time(), the clock of `date +%s.%N`) when conditions first hold, so the
caller can subtract its own start time. Exits 1 naming what it waited for on timeout.

  probe.py ingest --get URL --value-path P --progress URL --progress-path P --records N
      prints "queryable,first,all": when URL first answered 200 with a value at P (the first
      record queryable), when the progress figure (a JSON field path, or a Prometheus metric name
      for a /metrics URL) first exceeded 0, and when it reached N.
  probe.py answer --get URL --value-path P --equals V [--timeout S]
      prints the time at which URL first answered 200 with the value at P equal to V.
"""
import argparse
import http.client
import json
import sys
import time
import urllib.parse


class Poller:
    """One keep-alive HTTP connection per host, reopened after any error (the process may not
    listen yet, or just restarted)."""

    def __init__(self):
        self.conns = {}

    def get(self, url):
        u = urllib.parse.urlsplit(url)
        path = u.path + ("?" + u.query if u.query else "")
        for _ in range(2):
            c = self.conns.get(u.netloc)
            if c is None:
                c = http.client.HTTPConnection(u.netloc, timeout=2)
                self.conns[u.netloc] = c
            try:
                c.request("GET", path)
                r = c.getresponse()
                return r.status, r.read().decode("utf-8", "replace")
            except (OSError, http.client.HTTPException):
                c.close()
                del self.conns[u.netloc]
        return None, ""


def field(body, path):
    """The number at a dotted JSON path, or None."""
    try:
        v = json.loads(body)
        for p in path.split("."):
            v = v[p]
        return float(v)
    except (ValueError, KeyError, TypeError):
        return None


def metric(body, name):
    """The sum of a Prometheus metric's samples, or None when absent."""
    total, seen = 0.0, False
    for line in body.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    return total if seen else None


def progress(poller, url, path):
    status, body = poller.get(url)
    if status != 200:
        return None
    return metric(body, path) if urllib.parse.urlsplit(url).path == "/metrics" else field(body, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["ingest", "answer"])
    ap.add_argument("--get", required=True)
    ap.add_argument("--progress")
    ap.add_argument("--progress-path")
    ap.add_argument("--records", type=float)
    ap.add_argument("--value-path")
    ap.add_argument("--equals", type=float)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--interval", type=float, default=0.005)
    a = ap.parse_args()
    poller = Poller()
    deadline = time.time() + a.timeout
    if a.mode == "ingest":
        queryable = first = None
        while time.time() < deadline:
            now = time.time()
            if queryable is None:
                status, body = poller.get(a.get)
                if status == 200 and field(body, a.value_path) is not None:
                    queryable = now
            n = progress(poller, a.progress, a.progress_path)
            if n is not None and n > 0 and first is None:
                first = now
            if n is not None and n >= a.records and queryable is not None:
                print(f"{queryable:.6f},{first:.6f},{time.time():.6f}")
                return 0
            time.sleep(a.interval)
        sys.exit(f"probe.py: timed out after {a.timeout:.0f} s waiting for {a.records:.0f} records at "
                 f"{a.progress} ({a.progress_path}) and a 200 from {a.get}")
    while time.time() < deadline:
        status, body = poller.get(a.get)
        if status == 200 and field(body, a.value_path) == a.equals:
            print(f"{time.time():.6f}")
            return 0
        time.sleep(a.interval)
    sys.exit(f"probe.py: timed out after {a.timeout:.0f} s waiting for {a.get} to answer "
             f"{a.value_path} = {a.equals:g}")


if __name__ == "__main__":
    sys.exit(main())
