#!/usr/bin/env python3
"""Prints the benchmark table from bench/results/*.csv (written by bench/run.sh) and writes
bench/results/summary.csv. Each line is a kiq figure, the baseline measured in the same run, the
ratio, and the issue's target for it (met / MISSED)."""
import csv
import os
import sys


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def main(results):
    out = []  # (what, kiq, baseline, ratio, target, met)

    def line(what, kiq, base, target=None, ok=None, fmt="{:,.0f}"):
        ratio = kiq / base if base else float("nan")
        met = "" if ok is None else ("met" if ok(kiq, ratio) else "MISSED")
        out.append((what, fmt.format(kiq), fmt.format(base) if base else "-",
                    f"{ratio:.2f}x" if base else "-", target or "", met))

    ingest = {r["label"]: r for r in rows(os.path.join(results, "ingest.csv"))}
    rw = float(next(csv.reader(open(os.path.join(results, "rocksdb_write.csv"))))[3])
    for kind, r in ingest.items():
        node, bare = float(r["node_rps"]), float(r["bare_consume_rps"])
        if kind == "count":
            line(f"ingest count ({r['records']} rec), rec/s vs RocksDB WriteBatch", node, rw,
                 ">= 0.85x", lambda k, x: x >= 0.85)
            line("ingest count, rec/s vs bare consume", node, bare, ">= 0.5x", lambda k, x: x >= 0.5)
        elif kind == "count_2threads":
            line("ingest count, 2 ingestion threads vs 1 (--ingest-threads), rec/s", node,
                 float(ingest["count"]["node_rps"]))
        elif kind == "count_noreplay":
            # The default subscribe replay window (open for 30 s after partitions are gained)
            # logs every write; the same ingestion without it is the baseline.
            line("ingest count, replay window open vs --subscribe-replay-window=0s",
                 float(ingest["count"]["node_rps"]), node)
        elif kind == "sum_avro":
            line(f"ingest sum from Avro ({r['records']} rec), rec/s vs bare consume", node, bare)
            if "sum" in ingest:
                # The same records and store; only the value format differs.
                line("ingest sum, Avro (registry wire format) vs JSON values, rec/s", node,
                     float(ingest["sum"]["node_rps"]))
        else:
            line(f"ingest {kind} ({r['records']} rec), rec/s vs bare consume", node, bare)

    get = {(r["label"], r["inflight"]): r for r in rows(os.path.join(results, "get.csv"))}
    for n in ("1", "16", "64"):
        bare, local, fwd = get[("bare", n)], get[("local", n)], get[("forwarded", n)]
        line(f"Get local, {n} in flight, QPS vs bare gRPC", float(local["qps"]), float(bare["qps"]),
             ">= 0.8x", lambda k, x: x >= 0.8)
        line(f"Get local, {n} in flight, p50 ms vs bare", float(local["p50_ms"]), float(bare["p50_ms"]),
             fmt="{:.3f}")
        line(f"Get local, {n} in flight, p99 ms vs bare", float(local["p99_ms"]), float(bare["p99_ms"]),
             "<= 2x", lambda k, x: x <= 2, fmt="{:.3f}")
        line(f"Get forwarded, {n} in flight, QPS vs local", float(fwd["qps"]), float(local["qps"]),
             ">= 0.45x", lambda k, x: x >= 0.45)
        line(f"Get forwarded, {n} in flight, p99 ms vs local", float(fwd["p99_ms"]), float(local["p99_ms"]),
             fmt="{:.3f}")
        for r in (bare, local, fwd):
            if int(r["errors"]) or int(r["not_found"]):
                out.append((f"  ! {r['label']} {n}: {r['errors']} errors, {r['not_found']} not found",
                            "", "", "", "", ""))

    # GetMany (issue 17): keys/s of 64-key batches against single Gets, same calls in flight.
    if os.path.exists(os.path.join(results, "getmany.csv")):
        gm = {(r["label"], r["inflight"]): r for r in rows(os.path.join(results, "getmany.csv"))}
        for n in ("16", "64"):
            if ("getmany", n) not in gm or ("single", n) not in gm:
                continue
            many, single = gm[("getmany", n)], gm[("single", n)]
            line(f"GetMany {many['keys_per_call']} keys/call, {n} in flight, keys/s vs single Gets",
                 float(many["keys_per_s"]), float(single["keys_per_s"]), ">= 5x",
                 lambda k, x: x >= 5)
            line(f"GetMany {many['keys_per_call']} keys/call, {n} in flight, p99 ms/call vs Get",
                 float(many["p99_ms"]), float(single["p99_ms"]), fmt="{:.3f}")
            for r in (single, many):
                if int(r["errors"]) or int(r["not_found"]):
                    out.append((f"  ! {r['label']} {n}: {r['errors']} errors, {r['not_found']} not found",
                                "", "", "", "", ""))

    ramp = rows(os.path.join(results, "ramp.csv"))

    def knee(label):
        best, past = 0.0, None
        for r in ramp:
            if r["label"] != label:
                continue
            if float(r["p99_ms"]) <= 50 and int(r["errors"]) == 0:
                best = max(best, float(r["qps"]))
            elif past is None:
                past = float(r["offered_qps"])
        return best, past

    def under5(label):
        return max([float(r["qps"]) for r in ramp
                    if r["label"] == label and float(r["p99_ms"]) < 5 and int(r["errors"]) == 0] or [0])

    k_kiq, past_kiq = knee("ramp")
    k_bare, _ = knee("ramp_bare")
    line("knee: highest QPS with p99 <= 50 ms, node-1 vs bare", k_kiq, k_bare)
    if past_kiq:
        out.append((f"  (p99 first exceeded 50 ms at {past_kiq:,.0f} offered QPS)", "", "", "", "", ""))
    line("Get QPS at p99 < 5 ms through one node (open loop)", under5("ramp"), under5("ramp_bare"),
         ">= 27,000 QPS", lambda k, x: k >= 27000)

    scan = {r["label"]: r for r in rows(os.path.join(results, "scan.csv"))}
    it = float(scan["rocksdb_iter"]["entries_per_s"])
    line("scan All via node-1 (3 nodes), entries/s vs RocksDB iterator", float(scan["all"]["entries_per_s"]), it,
         ">= 1M entries/s", lambda k, x: k >= 1e6)
    line("scan Range via node-1 (3 nodes), entries/s vs RocksDB iterator",
         float(scan["range"]["entries_per_s"]), it)
    if "stream" in scan:
        line("scan All as one Scan stream via node-1, entries/s vs RocksDB iterator",
             float(scan["stream"]["entries_per_s"]), it, ">= 1M entries/s", lambda k, x: k >= 1e6)

    rs = rows(os.path.join(results, "restore.csv"))[0]
    rrec, rsec = float(rs["restore_records"]), float(rs["restore_seconds"])
    line(f"restore {rs['restore_records']} changelog rec, rec/s vs bare consume",
         rrec / rsec if rsec > 0 else 0, float(rs["bare_consume_rps"]), ">= 0.8x", lambda k, x: x >= 0.8)
    out.append((f"  (failover: node killed -> its partitions active elsewhere in {float(rs['failover_wall_seconds']):.1f} s"
                ", including the 6 s session timeout)", "", "", "", "", ""))

    fresh_path = os.path.join(results, "fresh.csv")
    if os.path.exists(fresh_path):
        fr = rows(fresh_path)[0]
        line("freshness p50 ms: delivered -> seen by Get, vs bare consumer",
             float(fr["get_p50_ms"]), float(fr["consume_p50_ms"]), fmt="{:.2f}")
        line("freshness p99 ms: delivered -> seen by Get, vs bare consumer",
             float(fr["get_p99_ms"]), float(fr["consume_p99_ms"]), "<= 10 ms", lambda k, x: k <= 10,
             fmt="{:.2f}")
        out.append((f"  ({int(fr['records']):,} single records, one every {float(fr['interval_ms']):g} ms; max "
                    f"{float(fr['get_max_ms']):.1f} ms, bare consumer {float(fr['consume_max_ms']):.1f} ms; "
                    f"{int(fr['gets']):,} Gets)", "", "", "", "", ""))
        if int(fr["get_unseen"]) or int(fr["consume_unseen"]) or int(fr["get_errors"]):
            out.append((f"  ! freshness: {fr['get_unseen']} never seen by Get, {fr['consume_unseen']} never "
                        f"consumed, {fr['get_errors']} Get errors", "", "", "", "", ""))

    sb_path = os.path.join(results, "standby.csv")
    if os.path.exists(sb_path):
        sb = {r["standby"]: r for r in rows(sb_path)}
        none, one = sb["0"], sb["1"]
        line(f"ingest {one['records']} rec on 3 nodes, 1 standby vs none, rec/s",
             float(one["records"]) / float(one["ingest_seconds"]),
             float(none["records"]) / float(none["ingest_seconds"]))
        line("memory of 3 nodes (VmRSS MB), 1 standby vs none", float(one["rss_kb"]) / 1024,
             float(none["rss_kb"]) / 1024)
        line("disk of 3 nodes (data dirs MB), 1 standby vs none", float(one["disk_kb"]) / 1024,
             float(none["disk_kb"]) / 1024, fmt="{:.1f}")
        line("kill -9: partitions active elsewhere, s, 1 standby vs none",
             float(one["failover_wall_seconds"]), float(none["failover_wall_seconds"]), fmt="{:.2f}")
        line("handovers after it (gained -> ACTIVE, summed), s, 1 standby vs none",
             float(one["handover_seconds"]), float(none["handover_seconds"]), fmt="{:.3f}")
        out.append((f"  (warm handovers: {one['warm_handovers']} with a standby, "
                    f"{none['warm_handovers']} without)", "", "", "", "", ""))

    tls_path = os.path.join(results, "tls.csv")
    if os.path.exists(tls_path):
        tls = {(r["label"], r["inflight"]): r for r in rows(tls_path)}
        for n in ("16", "64"):
            if ("tls", n) in tls and ("plaintext", n) in tls:
                line(f"Get local, {n} in flight, QPS with TLS vs plaintext (one node)",
                     float(tls[("tls", n)]["qps"]), float(tls[("plaintext", n)]["qps"]))
                for r in (tls[("tls", n)], tls[("plaintext", n)]):
                    if int(r["errors"]) or int(r["not_found"]):
                        out.append((f"  ! {r['label']} {n}: {r['errors']} errors, {r['not_found']} not found",
                                    "", "", "", "", ""))

    mem = rows(os.path.join(results, "memory.csv"))[0]
    rss_mb = float(mem["vmrss_kb"]) / 1024
    line(f"node RSS MB with {int(mem['keys']):,} keys (VmHWM {float(mem['vmhwm_kb']) / 1024:.0f} MB)", rss_mb, 0,
         "<= 300 MB" if int(mem["keys"]) >= 1000000 else "(quick: fewer keys)",
         (lambda k, x: k <= 300) if int(mem["keys"]) >= 1000000 else None)

    write_summary(out, results, ("what", "kiq", "baseline", "ratio", "target", "met"),
                  ("what", "kiq", "baseline", "ratio", "target", ""))


def write_summary(out, directory, csv_header, header):
    """Writes `out` (rows of 6 strings) to directory/summary.csv under `csv_header` and prints it
    as a table under `header`. Also used by bench/peer/table.py."""
    with open(os.path.join(directory, "summary.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(csv_header)
        w.writerows(out)
    # Notes (rows with no figure) do not widen the first column.
    widths = [max(len(r[i]) for r in out + [header] if r[1] or i) for i in range(6)]
    for r in [header] + out:
        print("  ".join([r[0].ljust(widths[0])] + [c.rjust(widths[i]) for i, c in enumerate(r[1:5], 1)] + [r[5]]))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "results"))
