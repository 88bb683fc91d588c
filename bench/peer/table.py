#!/usr/bin/env python3
"""Prints the side-by-side table of bench/run.sh --peer from its CSVs (bench/results/peer/) and
writes summary.csv there. Each line is a kiq figure, the Kafka Streams peer's figure with 1 or 2
stream threads (ks1, ks2) measured in the same run on the same topic, the ratio kiq/KS, and issue
17's target for it (met / MISSED). A target against "KS's best variant" must hold against both."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from table import rows, write_summary  # noqa: E402  (bench/table.py)


def main(d):
    out = []  # (what, kiq, ks, ratio, target, met)

    def line(what, kiq, ks, target=None, ok=None, fmt="{:,.0f}"):
        ratio = kiq / ks if ks else float("nan")
        met = "" if ok is None else ("met" if ok(ratio) else "MISSED")
        out.append((what, fmt.format(kiq), fmt.format(ks), f"{ratio:.2f}x" if ks else "-",
                    target or "", met))

    def note(text):
        out.append((text, "", "", "", "", ""))

    variants = (("ks1", "KS 1 thread"), ("ks2", "KS 2 threads"))
    http = {(r["system"], r["connections"]): r for r in rows(os.path.join(d, "http_get.csv"))}
    grpc_rows = rows(os.path.join(d, "grpc_get.csv"))
    grpc = {r["inflight"]: r for r in grpc_rows if r["label"] == "kiq_grpc"}
    bare = {r["inflight"]: r for r in grpc_rows if r["label"] == "bare_grpc"}  # runs before 12-03: none
    for c in ("1", "16", "64"):
        k = http[("kiq", c)]
        for sys_, name in variants:
            s = http[(sys_, c)]
            line(f"HTTP Get {c} conn, req/s, kiq vs {name}", float(k["qps"]), float(s["qps"]),
                 ">= 1.0x", lambda x: x >= 1.0)
            line(f"HTTP Get {c} conn, p99 ms, kiq vs {name}", float(k["p99_ms"]), float(s["p99_ms"]),
                 "<= 1.0x", lambda x: x <= 1.0, fmt="{:.3f}")
        g = grpc[c]
        for sys_, name in variants:
            s = http[(sys_, c)]
            line(f"gRPC Get {c} in flight, QPS, kiq vs {name} HTTP {c} conn", float(g["qps"]),
                 float(s["qps"]), ">= 1.5x", lambda x: x >= 1.5)
        if c in bare:
            # What bounds the gRPC line: the transport alone, same client, a hash map behind it.
            line(f"bare gRPC server {c} in flight, QPS, vs KS 1 thread HTTP {c} conn",
                 float(bare[c]["qps"]), float(http[("ks1", c)]["qps"]))
            line(f"gRPC Get {c} in flight, kiq vs the bare gRPC server", float(g["qps"]),
                 float(bare[c]["qps"]))
        note(f"  (p50 ms: kiq HTTP {float(k['p50_ms']):.3f}, KS 1 thread {float(http[('ks1', c)]['p50_ms']):.3f}, "
             f"KS 2 threads {float(http[('ks2', c)]['p50_ms']):.3f}; kiq gRPC p50 {float(g['p50_ms']):.3f}, "
             f"p99 {float(g['p99_ms']):.3f})")
        for r in [k] + [http[(s, c)] for s, _ in variants]:
            if int(r["errors"]):
                note(f"  ! {r['system']} HTTP {c} conn: {r['errors']} errors of {r['requests']}")
        if int(g["errors"]) or int(g["not_found"]):
            note(f"  ! kiq gRPC {c}: {g['errors']} errors, {g['not_found']} not found")

    ing = {r["system"]: r for r in rows(os.path.join(d, "ingest.csv"))}
    mem = {r["system"]: r for r in rows(os.path.join(d, "memory.csv"))}
    rst = {r["system"]: r for r in rows(os.path.join(d, "restart.csv"))}
    k = ing["kiq"]
    n = float(k["records"])
    for sys_, name in variants:
        s = ing[sys_]
        line(f"ingest {int(n):,} rec, first record -> all, rec/s, kiq vs {name}",
             n / float(k["first_to_all_s"]), n / float(s["first_to_all_s"]), ">= 2x", lambda x: x >= 2)
    k2 = ing.get("kiq2")  # runs before 12-04: none
    if k2:
        for sys_, name in variants:
            s = ing[sys_]
            line(f"ingest, first record -> all, rec/s, kiq 2 ingestion threads vs {name}",
                 n / float(k2["first_to_all_s"]), n / float(s["first_to_all_s"]), ">= 2x",
                 lambda x: x >= 2)
        line("ingest, first record -> all, rec/s, kiq 2 ingestion threads vs 1",
             n / float(k2["first_to_all_s"]), n / float(k["first_to_all_s"]))
        line("ingest, CPU s start -> all, kiq 2 ingestion threads vs 1", float(k2["cpu_s"]),
             float(k["cpu_s"]), fmt="{:.2f}")
    for sys_, name in variants:
        s = ing[sys_]
        line(f"ingest, process start -> all materialized, s, kiq vs {name}",
             float(k["start_to_all_s"]), float(s["start_to_all_s"]), fmt="{:.2f}")
    for sys_, name in variants:
        s = ing[sys_]
        line(f"ingest, CPU s (user+sys) start -> all, kiq vs {name}", float(k["cpu_s"]), float(s["cpu_s"]),
             fmt="{:.2f}")
    for sys_, name in variants:
        line(f"peak RSS MB (VmHWM, ingest + Gets), kiq vs {name}", float(mem["kiq"]["vmhwm_kb"]) / 1024,
             float(mem[sys_]["vmhwm_kb"]) / 1024, "<= 0.5x", lambda x: x <= 0.5)
    for sys_, name in variants:
        line(f"process start -> first record queryable, s, kiq vs {name}",
             float(k["start_to_queryable_s"]), float(ing[sys_]["start_to_queryable_s"]), fmt="{:.2f}")
    for sys_, name in variants:
        line(f"restart on own state -> first right answer, s, kiq vs {name}",
             float(rst["kiq"]["restart_to_answer_s"]), float(rst[sys_]["restart_to_answer_s"]), fmt="{:.2f}")

    write_summary(out, d, ("what", "kiq", "ks", "ratio", "target", "met"),
                  ("what", "kiq", "KS", "kiq/KS", "target", ""))


if __name__ == "__main__":
    main(sys.argv[1])
