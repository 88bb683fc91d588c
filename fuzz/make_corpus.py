#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/): a handful of real
inputs each, from the examples and the tests, laid out as each target's FuzzedDataProvider
reads them. The regression-* files beside them are inputs of fixed findings, kept as found. Run from the repository root after changing a target's input layout:
    python3 fuzz/make_corpus.py
"""
import base64
import hashlib
import os
import shutil
import struct
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


class Fdp:
    """Builds an input for LLVM's FuzzedDataProvider: strings and the remaining bytes are read
    from the front, integers and bools from the back (the last byte first)."""

    def __init__(self):
        self.front = b""
        self.back = []  # in consumption order

    def string(self, s):  # ConsumeRandomLengthString: '\\' doubled, "\\x" ends it
        self.front += s.replace(b"\\", b"\\\\") + b"\\x"

    def rest(self, s):  # ConsumeRemainingBytesAsString
        self.front += s

    def int(self, value, nbytes):  # ConsumeIntegral(InRange) of a range needing nbytes
        for i in range(nbytes):  # most significant byte consumed first
            self.back.append((value >> (8 * (nbytes - 1 - i))) & 0xFF)

    def bool(self, b):
        self.back.append(1 if b else 0)

    def bytes(self):
        return self.front + bytes(reversed(self.back))


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def protoc_encode(message, text):
    return subprocess.run(
        ["protoc", "-I", os.path.join(ROOT, "proto"), "--encode=" + message,
         "kiq/v1/membership.proto", "kiq/v1/query.proto"],
        input=text.encode(), capture_output=True, check=True).stdout


def record_decoder():
    # Sources in fuzz/record_topology.yaml order: events, customers, lines, blobs.
    seeds = [
        ("purchase", 0, b"u7", b'{"user": "u7", "item": "lamp", "amount": 120}'),
        ("every_field", 0, b"k1",
         b'{"amount": 3, "a": {"b": 2.5}, "position": {"lat": 1.5, "lon": -2}, "kind": "x",'
         b' "n": 4, "ok": true, "c": {"city": "Lisbon"}}'),
        ("customer", 1, b"u7", b'{"name": "Ana", "city": "Lisbon"}'),
        ("line", 2, b'"k1"', b"hello world"),
        ("blob", 3, b"\x00\xff", b"\x01\x02\x03"),
        ("deep", 0, b"k2", b"[" * 70 + b"]" * 70),
        ("not_utf8", 0, b"k3", b'{"kind": "\xff"}'),
        ("escapes", 0, b"k4", b'{"kind": "\\u00e9\\ud83d\\ude00", "amount": -9223372036854775808}'),
    ]
    for name, source, key, value in seeds:
        f = Fdp()
        f.int(source, 1)
        f.bool(True)  # has_key
        f.bool(True)  # has_value
        f.int(1_700_000_000_000 + (1 << 63), 8)  # ConsumeIntegral<int64_t>: offset from min
        f.string(key)
        f.rest(value)
        write("record_decoder_fuzzer", name, f.bytes())


def topology():
    for example in sorted(os.listdir(os.path.join(ROOT, "examples"))):
        path = os.path.join(ROOT, "examples", example, "topology.yaml")
        if os.path.exists(path):
            shutil.copy(path, os.path.join(CORPUS, "topology_fuzzer", example + ".yaml"))
    shutil.copy(os.path.join(ROOT, "fuzz", "record_topology.yaml"),
                os.path.join(CORPUS, "topology_fuzzer", "every_kind.yaml"))
    write("topology_fuzzer", "flow_style.yaml",
          b"application_id: a\nsources: [{topic: t, value_format: json}]\n"
          b"stores: [{name: s, source: t, sum: {field: x.y, type: double}}]\n")


def page_token():
    def token(store, after, frm, to):
        text = 'store: "%s" after_key: "%s"' % (store, after)
        if frm is not None:
            text += ' from: "=%s"' % frm
        if to is not None:
            text += ' to: "=%s"' % to
        raw = protoc_encode("kiq.v1.PageToken", text)
        return base64.urlsafe_b64encode(raw).rstrip(b"=")

    for name, store, frm, to, after in [
        ("all", "orders", None, None, "o-17"),
        ("range", "customers", "a", "m", "c3"),
        ("open_to", "counts", "", None, ""),
    ]:
        f = Fdp()
        f.string(store.encode())
        f.bool(frm is not None)
        if frm is not None:
            f.string(frm.encode())
        f.bool(to is not None)
        if to is not None:
            f.string(to.encode())
        f.string(after.encode())
        f.rest(token(store, after, frm, to))
        write("page_token_fuzzer", name, f.bytes())


def member_record():
    record = protoc_encode("kiq.v1.MemberRecord", """
        node_id: "n1" application_id: "orders" grpc_endpoint: "127.0.0.1:7070"
        http_endpoint: "127.0.0.1:7071" stores: "orders" stores: "counts"
        partitions { partition: 0 state: PARTITION_STATE_ACTIVE }
        partitions { partition: 3 state: PARTITION_STATE_RESTORING }
        generation: 4 lease_expiry_ms: 1800000000000 written_at_ms: 1700000000000""")
    for name, key, value in [("record", b"n1", record), ("tombstone", b"n1", None),
                             ("other_key", b"n2", record)]:
        f = Fdp()
        f.bool(True)
        f.string(key)
        f.bool(value is not None)
        f.rest(value or b"")
        write("member_record_fuzzer", name, f.bytes())


def http_request():
    for name, tmpl, target in [
        ("get", "/v1/{a=**}/x", "/v1/stores/orders/keys/o%2F1?min_position.offsets=3"),
        ("range", "/v1/*/y", "/v1/stores/orders/range?from=a&to=m+n&page_size=10&allow_partial=true"),
        ("entries", "/v1/{s}", "/v1/stores/orders/entries?page_token=abc_-&page_size=2"),
        ("windows", "/files/{path=**}/meta",
         "/v1/stores/views/windows/books?from_ms=0&to_ms=1700000000000"),
        ("subscribe", "/v1/x", "/v1/stores/orders/subscribe?from=FROM_SNAPSHOT&key=k1&key=k2"),
        ("metadata", "/v1/metadata", "/v1/metadata/stores/orders/keys/%E2%82%AC?key_bytes=AP8"),
    ]:
        f = Fdp()
        f.string(tmpl.encode())
        f.rest(target.encode())
        write("http_request_fuzzer", name, f.bytes())


def changelog_record():
    def window_key(user, start_ms):  # common/topology/window_key.cc: key + the start, sign flipped
        return user + struct.pack(">Q", (start_ms ^ (1 << 63)) % (1 << 64))

    kinds = {"bytes": 0, "string": 1, "json": 2, "int64": 3, "double": 4}
    for name, headers, kind, window, key, value in [
        ("batch_end", [(0, b"42"), (1, b""), (2, b"0:17,1:3")], "int64", 0, b"books",
         struct.pack(">q", 7)),
        ("json", [(0, b"9")], "json", 0, b"u7", b'{"name": "Ana", "tags": ["a", {"b": null}]}'),
        ("windowed", [(1, b"")], "double", 30000, window_key(b"books", 1_700_000_040_000),
         struct.pack(">d", 2.5)),
        ("other_header", [(3, b"x"), (0, b"-1")], "string", 0, b"\xff", b"text"),
    ]:
        f = Fdp()
        f.int(len(headers), 1)
        for choice, value_text in headers:
            f.int(choice, 1)
            if choice == 3:
                f.string(b"kiq.other")
            f.string(value_text)
        f.int(kinds[kind], 1)
        f.bool(window > 0)
        if window > 0:
            f.int(window - 1, 5)  # ConsumeIntegralInRange(1, 366 days): 5 bytes, plus the minimum
        f.string(key)
        f.rest(value)
        write("changelog_record_fuzzer", name, f.bytes())


if __name__ == "__main__":
    os.makedirs(os.path.join(CORPUS, "topology_fuzzer"), exist_ok=True)
    record_decoder()
    topology()
    page_token()
    member_record()
    http_request()
    changelog_record()
