#!/usr/bin/env python3
"""CI check of kiq's deployment files (deploy/).

    /usr/bin/python3 deploy/check_deploy.py [--repo DIR] [--metrics FILE] [--strict]

1. Kubernetes: renders deploy/k8s with `kubectl kustomize` and checks that the resources fit
   together: the StatefulSet's serviceName is a headless Service that selects its pods (and
   publishes not-ready ones) and is the one spelled in --advertised-host; every Service and the
   PodDisruptionBudget select the pods; Service targetPorts, probe ports and the prometheus.io
   annotations name container ports, probes and scrapes on the admin port where there is one;
   /readyz is the readiness probe and never the liveness probe; volumeMounts refer to pod volumes or volumeClaimTemplates; ConfigMap references (volumes,
   env, envFrom) resolve to the generated, hash-suffixed ConfigMaps and their keys; $(VAR)s in
   args are defined; --config is a mounted ConfigMap key, --data-dir is on the persistent
   volume; the grace period covers preStop + shutdown; no namespace is hard-coded; Secret
   references (volumes, env) resolve; every node and router has --auth-token-file on a
   mounted Secret without subPath (updated in place), holding sha256 digests only, and its
   cluster secret (>= 16 bytes) from one and the same Secret key.
2. Metrics: every kiq_* metric (and its labels, and label values with a documented set) used by
   the Grafana dashboard's queries and the alert rules exists: in deploy/METRICS.md, or with
   --metrics FILE (an exposition scraped from a running kiq-node), in FILE. A metric that is
   documented but has no series in FILE yet (prometheus-cpp exposes a family after its first
   sample, e.g. kiq_forwarded_calls_total on a single node) is only noted, unless --strict.
   With FILE, every kiq_* family in it must also be documented in METRICS.md with the same type,
   labels and label values, and FILE must pass `promtool check metrics`.
3. Grafana: the dashboard JSON parses, panel ids are unique, every query uses the datasource
   variable, and every query is valid PromQL (promtool, Grafana variables substituted).
4. Prometheus: the alert rules pass `promtool check rules` and their unit tests
   (`promtool test rules deploy/prometheus/*.test.yaml`); every alert has a severity and a summary.
5. Docker: deploy/Dockerfile copies every CMake subdirectory the build needs, builds without
   tests, EXPOSEs the container ports and runs as the StatefulSet's runAsUser.

Exit 0 when everything holds; 1 with one line per problem on stdout. Notes go to stderr.
Needs kubectl (Debian: kubernetes-client), promtool (Debian: prometheus) and python3-yaml.
"""

import argparse
import base64
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:  # pragma: no cover
    print("check_deploy: python3-yaml is missing (Debian: apt-get install python3-yaml)")
    sys.exit(1)

GRPC_CODES = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
    "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
}
# Labels Prometheus adds at scrape time (job, instance) or that usual Kubernetes relabelings add.
TARGET_LABELS = {
    "job", "instance", "namespace", "pod", "container", "service", "endpoint", "node",
    "kubernetes_namespace", "kubernetes_pod_name", "pod_name",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
METRIC_RE = re.compile(r"\bkiq_[A-Za-z0-9_]+")
MATCHER_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')')
GROUPING_RE = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


class Problems:
    def __init__(self):
        self.lines = []

    def add(self, where, message):
        self.lines.append(f"{where}: {message}")


def note(message):
    print(f"check_deploy: note: {message}", file=sys.stderr)


def run(cmd, cwd=None, stdin=None):
    proc = subprocess.run(cmd, cwd=cwd, input=stdin, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True)
    return proc.returncode, proc.stdout, proc.stderr


def one_line(text, limit=400):
    lines = [l.strip() for l in text.splitlines() if l.strip() and not l.startswith("Checking ")]
    joined = " | ".join(lines)
    return joined if len(joined) <= limit else joined[:limit] + " ..."


# ------------------------------------------------------------------------------------------
# deploy/METRICS.md


def parse_metrics_md(path, problems, where):
    """name -> {"type", "labels": set, "values": {label: set}}"""
    metrics = {}
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as e:
        problems.add(where, f"cannot read: {e.strerror}")
        return metrics
    for line in text.splitlines():
        if not line.strip().startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or cells[0] in ("name", "") or set(cells[0]) <= set("-: "):
            continue
        name = cells[0].strip("`")
        mtype = cells[1].strip("`").lower()
        labels = {l.strip().strip("`") for l in cells[2].split(",") if l.strip()}
        meaning = cells[3] if len(cells) > 3 else ""
        if not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", name):
            problems.add(where, f"bad metric name {name!r} in the table")
            continue
        if mtype not in ("counter", "gauge", "histogram", "summary", "untyped"):
            problems.add(where, f"{name}: unknown type {mtype!r}")
        metrics[name] = {"type": mtype, "labels": labels, "values": documented_values(labels, meaning)}
    if not metrics:
        problems.add(where, "no metrics table found (| name | type | labels | meaning |)")
    return metrics


def documented_values(labels, meaning):
    """Label value sets the meaning column spells out: `method Get/Range/All/Count`,
    `by state: active, restoring, failed`, `assign / revoke events` (single label),
    `code = gRPC code name`."""
    values = {}
    for label, listing in re.findall(r"\b(\w+)\s+(\w+(?:/\w+)+)", meaning):
        if label in labels:
            values[label] = set(listing.split("/"))
    for label, listing in re.findall(r"\bby (\w+):\s*(\w+(?:,\s*\w+)+)", meaning):
        if label in labels:
            values[label] = {v.strip() for v in listing.split(",")}
    if len(labels) == 1 and not values:
        m = re.match(r"\s*(\w+(?:\s*/\s*\w+)+)", meaning)
        if m:
            values[next(iter(labels))] = {v.strip() for v in m.group(1).split("/")}
    if "code" in labels and re.search(r"gRPC code", meaning):
        values["code"] = set(GRPC_CODES)
    return values


# ------------------------------------------------------------------------------------------
# Prometheus exposition (--metrics FILE)


def parse_exposition(path, problems, where):
    """family -> {"type", "labels": set, "values": {label: set}, "samples": int}"""
    families = {}
    types = {}
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as e:
        problems.add(where, f"cannot read: {e.strerror}")
        return None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            m = re.match(r"#\s*TYPE\s+(\S+)\s+(\S+)", line)
            if m:
                types[m.group(1)] = m.group(2)
                families.setdefault(m.group(1), {"type": m.group(2), "labels": set(),
                                                 "values": {}, "samples": 0})
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+\S+(\s+\S+)?\s*$", line)
        if not m:
            problems.add(where, f"line {n}: not a sample: {line[:80]!r}")
            continue
        name = m.group(1)
        family = name
        for suffix in HISTOGRAM_SUFFIXES + ("_total", "_created"):
            base = name[: -len(suffix)]
            if name.endswith(suffix) and types.get(base) in ("histogram", "summary"):
                family = base
                break
        info = families.setdefault(family, {"type": types.get(family, "untyped"), "labels": set(),
                                            "values": {}, "samples": 0})
        info["samples"] += 1
        for label, value in re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""):
            if label in ("le", "quantile"):
                continue
            info["labels"].add(label)
            info["values"].setdefault(label, set()).add(value)
    return families


def check_exposition_against_doc(families, documented, problems, where):
    kiq = {k: v for k, v in families.items() if k.startswith("kiq_")}
    if not kiq:
        problems.add(where, "no kiq_* metric in the file (is it a scrape of kiq-node's /metrics?)")
    for name, info in sorted(kiq.items()):
        doc = documented.get(name)
        if doc is None:
            problems.add(where, f"{name} ({info['type']}) is exported but not documented in deploy/METRICS.md")
            continue
        if info["type"] != doc["type"]:
            problems.add(where, f"{name} is a {info['type']} but deploy/METRICS.md says {doc['type']}")
        extra = info["labels"] - doc["labels"]
        if extra:
            problems.add(where, f"{name} has label(s) {', '.join(sorted(extra))} that deploy/METRICS.md does not list")
        for label, values in info["values"].items():
            allowed = doc["values"].get(label)
            if allowed is not None and values - allowed:
                problems.add(where, f"{name}{{{label}}} has value(s) {', '.join(sorted(values - allowed))} "
                                    f"outside deploy/METRICS.md's {'/'.join(sorted(allowed))}")


# ------------------------------------------------------------------------------------------
# PromQL references


class MetricCatalog:
    """What queries may use: METRICS.md, and with --metrics what FILE exports."""

    def __init__(self, documented, exported, strict):
        self.documented = documented
        self.exported = exported  # None without --metrics
        self.strict = strict
        self.not_scraped = set()

    def info(self, name):
        if name in self.documented:
            return self.documented[name]
        if self.exported is not None and name in self.exported:
            return self.exported[name]
        return None

    def resolve(self, token):
        """(base name, info, suffix) or (None, None, reason)."""
        info = self.info(token)
        if info is not None:
            return token, info, ""
        for suffix in HISTOGRAM_SUFFIXES:
            if token.endswith(suffix):
                base = token[: -len(suffix)]
                binfo = self.info(base)
                if binfo is None:
                    continue
                if binfo["type"] == "histogram" or (binfo["type"] == "summary" and suffix != "_bucket"):
                    return base, binfo, suffix
                return None, None, f"{token}: {base} is a {binfo['type']}, it has no {suffix} series"
        source = "deploy/METRICS.md" if self.exported is None else "the scraped file nor deploy/METRICS.md"
        return None, None, f"unknown metric {token} (not in {source})"


def strip_strings(expr):
    return STRING_RE.sub(lambda m: " " * len(m.group(0)), expr)


def check_expr(expr, where, catalog, problems):
    """Checks the kiq_* metrics of one PromQL (or Grafana label_values) expression."""
    blank = strip_strings(expr)
    used = {}  # token -> (base, info, suffix)
    for m in METRIC_RE.finditer(blank):
        token = m.group(0)
        base, info, extra = catalog.resolve(token)
        if base is None:
            problems.add(where, extra)
            continue
        used[token] = (base, info, extra)
        if catalog.exported is not None and base not in catalog.exported:
            if catalog.strict:
                problems.add(where, f"{base} is not in the scraped file")
            else:
                catalog.not_scraped.add(base)
        # Selector labels and values.
        rest = expr[m.end():]
        sel = re.match(r"\s*\{([^}]*)\}", rest)
        if sel:
            for label, op, quoted in MATCHER_RE.findall(sel.group(1)):
                check_matcher(token, base, info, extra, label, op, quoted[1:-1], where, problems)
        # rate() of a gauge, deriv() of a counter.
        before = blank[: m.start()]
        fn = re.search(r"\b(rate|irate|increase|deriv|delta|idelta)\s*\(\s*$", before)
        if fn:
            f = fn.group(1)
            if f in ("rate", "irate", "increase") and info["type"] == "gauge" and not extra:
                problems.add(where, f"{f}() of {token}, which is a gauge (use deriv/delta)")
            if f in ("deriv", "delta", "idelta") and (info["type"] == "counter" or extra in ("_bucket", "_count", "_sum")):
                problems.add(where, f"{f}() of {token}, which is a counter (use rate/increase)")
    if re.search(r"\bhistogram_quantile\s*\(", blank) and not any(s == "_bucket" for _, _, s in used.values()):
        problems.add(where, "histogram_quantile() without a *_bucket series")
    # Grouping labels must exist on some metric of the expression.
    available = set(TARGET_LABELS)
    for _, info, suffix in used.values():
        available |= info["labels"]
        if suffix == "_bucket":
            available.add("le")
    if used:
        for kw, listing in GROUPING_RE.findall(blank):
            for label in [l.strip() for l in listing.split(",") if l.strip()]:
                if label not in available:
                    problems.add(where, f"{kw} ({label}): no metric of the expression has label {label!r}")
    lv = re.match(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*$", expr)
    if lv and used and lv.group(2) not in available:
        problems.add(where, f"label_values(..., {lv.group(2)}): no such label on the metric")


def check_matcher(token, base, info, suffix, label, op, value, where, problems):
    allowed_labels = info["labels"] | TARGET_LABELS | {"__name__"}
    if suffix == "_bucket":
        allowed_labels.add("le")
    if label not in allowed_labels:
        problems.add(where, f"{token}{{{label}{op}...}}: {base} has no label {label!r} "
                            f"(labels: {', '.join(sorted(info['labels'])) or 'none'})")
        return
    allowed = info.get("values", {}).get(label)
    if not allowed or "$" in value or "[[" in value:
        return
    if op in ("=", "!="):
        candidates = [value]
    elif re.fullmatch(r"[\w|]+", value):
        candidates = value.split("|")
    else:
        return
    for v in candidates:
        if v and v not in allowed:
            problems.add(where, f"{token}{{{label}{op}\"{value}\"}}: {label} is one of "
                                f"{'/'.join(sorted(allowed))}, never {v!r}")


# ------------------------------------------------------------------------------------------
# Grafana dashboard


def grafana_to_promql(expr):
    """Replaces Grafana's variables so promtool can parse the query."""
    e = re.sub(r"\[\s*\$\{?\w+\}?\s*\]", "[5m]", expr)
    e = re.sub(r"\$\{?__range_s\}?|\$\{?__interval_ms\}?|\$\{?__range_ms\}?", "300", e)
    e = re.sub(r"\$\{?__(rate_interval|interval|range)\}?", "5m", e)
    e = re.sub(r"\$\{(\w+)(:\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", ".*", e)
    return e


def walk_panels(panels):
    for p in panels or []:
        yield p
        yield from walk_panels(p.get("panels"))


def check_dashboard(path, rel, catalog, problems, promtool):
    try:
        dash = json.load(open(path, encoding="utf-8"))
    except OSError as e:
        problems.add(rel, f"cannot read: {e.strerror}")
        return
    except ValueError as e:
        problems.add(rel, f"not valid JSON: {e}")
        return
    if not isinstance(dash.get("schemaVersion"), int):
        problems.add(rel, "no schemaVersion")
    for key in ("title", "uid"):
        if not dash.get(key):
            problems.add(rel, f"no {key}")
    variables = {v.get("name"): v for v in (dash.get("templating") or {}).get("list", [])}
    ds_vars = {n for n, v in variables.items() if v.get("type") == "datasource"}
    inputs = {i.get("name") for i in dash.get("__inputs", []) if i.get("type") == "datasource"}

    def check_ds(ds, where):
        if ds is None:
            problems.add(where, "no datasource (set it to the datasource variable)")
            return
        uid = ds.get("uid") if isinstance(ds, dict) else ds
        m = re.fullmatch(r"\$\{?(\w+)\}?", str(uid or ""))
        if not m:
            problems.add(where, f"datasource {uid!r} is hard-coded; use the datasource variable (${{{next(iter(ds_vars), 'datasource')}}})")
        elif m.group(1) not in ds_vars and m.group(1) not in inputs:
            problems.add(where, f"datasource ${{{m.group(1)}}} is neither a datasource variable nor an __input")

    if not ds_vars and not inputs:
        problems.add(rel, "no datasource variable (templating type=datasource) nor __inputs")
    queries = []  # (where, expr)
    for name, v in variables.items():
        if v.get("type") == "query":
            where = f"{rel}: variable ${name}"
            check_ds(v.get("datasource"), where)
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            if q:
                check_expr(q, where, catalog, problems)
    ids = {}
    for p in walk_panels(dash.get("panels")):
        title = p.get("title", "?")
        where = f"{rel}: panel {title!r}"
        pid = p.get("id")
        if pid in ids:
            problems.add(where, f"id {pid} is also panel {ids[pid]!r}")
        ids[pid] = title
        g = p.get("gridPos") or {}
        if not all(isinstance(g.get(k), int) for k in ("x", "y", "w", "h")) or g.get("x", 0) + g.get("w", 0) > 24:
            problems.add(where, f"bad gridPos {g}")
        if p.get("type") == "row":
            continue
        targets = p.get("targets") or []
        if not targets:
            problems.add(where, "no queries")
        check_ds(p.get("datasource"), where)
        refs = set()
        for t in targets:
            ref = t.get("refId")
            if ref in refs:
                problems.add(where, f"refId {ref} twice")
            refs.add(ref)
            if "datasource" in t:
                check_ds(t["datasource"], f"{where} {ref}")
            expr = (t.get("expr") or "").strip()
            if not expr:
                problems.add(f"{where} {ref}", "empty expr")
                continue
            check_expr(expr, f"{where} {ref}", catalog, problems)
            queries.append((f"{where} {ref}", expr))
    if promtool and queries:
        check_promql(queries, problems, promtool)


def check_promql(queries, problems, promtool):
    """All dashboard queries through promtool's parser, as recording rules."""
    def rules_file(items):
        rules = [{"record": f"kiq_dashboard:q{i}", "expr": grafana_to_promql(e)} for i, (_, e) in enumerate(items)]
        f = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
        f.close()
        return f.name

    name = rules_file(queries)
    try:
        code, out, err = run([promtool, "check", "rules", name])
    finally:
        os.unlink(name)
    if code == 0:
        return
    for where, expr in queries:  # find the bad ones
        name = rules_file([(where, expr)])
        try:
            code, out, err = run([promtool, "check", "rules", name])
        finally:
            os.unlink(name)
        if code != 0:
            msg = re.sub(r"^.*?could not parse expression:\s*", "", one_line(err + out))
            problems.add(where, f"promtool cannot parse the query: {msg}")


# ------------------------------------------------------------------------------------------
# Prometheus rules


def check_alerts(path, rel, repo, catalog, problems, promtool):
    try:
        doc = yaml.safe_load(open(path, encoding="utf-8"))
    except OSError as e:
        problems.add(rel, f"cannot read: {e.strerror}")
        return
    except yaml.YAMLError as e:
        problems.add(rel, f"not valid YAML: {one_line(str(e))}")
        return
    if promtool:
        code, out, err = run([promtool, "check", "rules", path])
        if code != 0:
            problems.add(rel, f"promtool check rules: {one_line(out + err)}")
    groups = (doc or {}).get("groups") or []
    if not groups:
        problems.add(rel, "no rule groups")
    names = set()
    for g in groups:
        for r in g.get("rules") or []:
            name = r.get("alert") or r.get("record") or "?"
            where = f"{rel}: {name}"
            if r.get("alert"):
                if name in names:
                    problems.add(where, "alert name used twice")
                names.add(name)
                if (r.get("labels") or {}).get("severity") not in ("critical", "warning", "info"):
                    problems.add(where, "labels.severity must be critical, warning or info")
                if not (r.get("annotations") or {}).get("summary"):
                    problems.add(where, "no annotations.summary")
            if isinstance(r.get("expr"), str):
                check_expr(r["expr"], where, catalog, problems)
    tests = sorted(glob.glob(os.path.join(os.path.dirname(path), "*.test.yaml")))
    if promtool:
        for t in tests:
            code, out, err = run([promtool, "test", "rules", os.path.basename(t)], cwd=os.path.dirname(t))
            if code != 0:
                problems.add(os.path.relpath(t, repo), f"promtool test rules: {one_line(out + err, 1500)}")


# ------------------------------------------------------------------------------------------
# Kubernetes


def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def kustomization_generated(k8s_dir, problems, rel):
    """Names of the kustomization's configMapGenerator entries."""
    path = os.path.join(k8s_dir, "kustomization.yaml")
    try:
        kz = yaml.safe_load(open(path, encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        problems.add(f"{rel}/kustomization.yaml", f"cannot read: {one_line(str(e))}")
        return set()
    if kz.get("namespace"):
        problems.add(f"{rel}/kustomization.yaml", f"sets namespace {kz['namespace']!r}; the base must stay namespace-agnostic (use an overlay or -n)")
    return {g.get("name") for g in kz.get("configMapGenerator") or []}


TLS_FILE_FLAGS = ("tls-cert-file", "tls-key-file", "tls-client-ca-file", "tls-ca-file")


def certificate_manifest(repo):
    """deploy/k8s/certificate.yaml (cert-manager, applied on its own), or None."""
    path = os.path.join(repo, "deploy", "k8s", "certificate.yaml")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    return next((d for d in docs if d.get("kind") == "Certificate"), None)


def check_tls_flags(repo, w, cwhere, flags, mounts, mount_of, volumes, problems):
    """The --tls-* flags of a kiq container: consistent (as the binaries require), each file on a
    whole-Secret mount (the kubelet updates those in place on a rotation; subPath mounts never
    change), the Secret key present, and the Secret the one certificate.yaml issues, whose
    names cover the advertised host."""
    given = {f: flags[f] for f in TLS_FILE_FLAGS if f in flags}
    if not given:
        return
    if ("tls-cert-file" in given) != ("tls-key-file" in given):
        problems.add(cwhere, "--tls-cert-file and --tls-key-file go together")
    if "tls-client-ca-file" in given and "tls-cert-file" not in given:
        problems.add(cwhere, "--tls-client-ca-file needs --tls-cert-file")
    if w["kind"] == "StatefulSet" and ("tls-cert-file" in given) != ("tls-ca-file" in given):
        problems.add(cwhere, "a node serving TLS needs --tls-ca-file (and the reverse): peers dial each other as they are served")
    cert = certificate_manifest(repo)
    for flag, path in given.items():
        found = mount_of(path)
        if not found:
            problems.add(cwhere, f"--{flag}={path} is not on a mounted volume")
            continue
        mp, vm = found
        if vm.get("subPath"):
            problems.add(cwhere, f"--{flag}={path} is mounted with subPath: a rotated Secret would never reach the pod")
        secret = (volumes.get(vm["name"]) or {}).get("secret")
        if not secret:
            problems.add(cwhere, f"--{flag}={path} is not on a Secret volume")
            continue
        key = os.path.relpath(path, mp)
        items = {i.get("path"): i.get("key") for i in secret.get("items") or []}
        if items and key not in items:
            problems.add(cwhere, f"--{flag}={path}: Secret volume {vm['name']!r} has no item {key!r}")
        if key not in ("tls.crt", "tls.key", "ca.crt") and not items:
            problems.add(cwhere, f"--{flag}={path}: {key!r} is not a key of a cert-manager Secret (tls.crt, tls.key, ca.crt)")
        if cert is not None and secret.get("secretName") != (cert.get("spec") or {}).get("secretName"):
            problems.add(cwhere, f"--{flag}: Secret {secret.get('secretName')!r} is not the one certificate.yaml issues ({(cert.get('spec') or {}).get('secretName')!r})")
    if cert is not None and w["kind"] == "StatefulSet" and "advertised-host" in flags and "tls-cert-file" in given:
        # $(POD_NAME) is any pod: a wildcard name; the namespace is certificate.yaml's placeholder.
        host = flags["advertised-host"].replace("$(POD_NAME)", "*").replace("$(POD_NAMESPACE)", "NAMESPACE")
        names = (cert.get("spec") or {}).get("dnsNames") or []
        if host not in names:
            problems.add(cwhere, f"--advertised-host={flags['advertised-host']}: certificate.yaml's dnsNames {names} lack {host!r} (peers check the host their certificate names)")
    if cert is not None:
        usages = (cert.get("spec") or {}).get("usages") or []
        if "client auth" not in usages or "server auth" not in usages:
            problems.add("deploy/k8s/certificate.yaml", "usages must include server auth and client auth (nodes present it to their peers)")


def check_k8s(repo, kubectl, problems):
    k8s_dir = os.path.join(repo, "deploy", "k8s")
    rel = "deploy/k8s"
    code, out, err = run([kubectl, "kustomize", k8s_dir])
    if code != 0:
        err = "\n".join(l for l in err.splitlines() if not l.startswith("# Warning"))
        problems.add(rel, f"kubectl kustomize failed: {one_line(err)}")
        return None
    try:
        docs = [d for d in yaml.safe_load_all(out) if d]
    except yaml.YAMLError as e:
        problems.add(rel, f"kustomize output is not YAML: {one_line(str(e))}")
        return None
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d.get("kind"), {})[d["metadata"]["name"]] = d
        md = d.get("metadata") or {}
        if md.get("namespace"):
            problems.add(rel, f"{d['kind']}/{md['name']}: hard-codes namespace {md['namespace']!r}")
        if (md.get("labels") or {}).get("app.kubernetes.io/name") != "kiq":
            problems.add(rel, f"{d['kind']}/{md['name']}: no label app.kubernetes.io/name=kiq (commonLabels)")
    configmaps = by_kind.get("ConfigMap", {})
    secrets = by_kind.get("Secret", {})
    services = by_kind.get("Service", {})
    cluster_secret_refs = set()  # (Secret, key) every workload's cluster secret comes from
    generated = kustomization_generated(k8s_dir, problems, rel)
    for gname in generated:
        matches = [n for n in configmaps if n == gname or re.fullmatch(re.escape(gname) + r"-[a-z0-9]{10}", n)]
        if not matches:
            problems.add(rel, f"configMapGenerator {gname!r} produced no ConfigMap")
        elif matches[0] == gname:
            problems.add(rel, f"ConfigMap {gname} has no content-hash suffix (disableNameSuffixHash): "
                              "a changed topology or bootstrap list would not roll the pods")

    workloads = []
    for kind in ("StatefulSet", "Deployment"):
        for name, w in by_kind.get(kind, {}).items():
            workloads.append(w)
    if not by_kind.get("StatefulSet"):
        problems.add(rel, "no StatefulSet")

    def cm_ref(where, name, key=None, optional=False):
        if name in configmaps:
            if key is not None and key not in (configmaps[name].get("data") or {}) \
                    and key not in (configmaps[name].get("binaryData") or {}):
                problems.add(where, f"ConfigMap {name} has no key {key!r}")
            generated_names = {g for g in generated if name == g or re.fullmatch(re.escape(g) + r"-[a-z0-9]{10}", name)}
            if not generated_names:
                problems.add(where, f"ConfigMap {name} is not one of the kustomization's configMapGenerator")
            return
        if optional:
            return
        hashed = [n for n in configmaps if re.fullmatch(re.escape(name) + r"-[a-z0-9]{10}", n)]
        if hashed:
            problems.add(where, f"refers to ConfigMap {name!r} but kustomize generated {hashed[0]!r} (reference not rewritten)")
        else:
            problems.add(where, f"refers to ConfigMap {name!r}, which the kustomization does not generate "
                                f"(generated: {', '.join(sorted(configmaps)) or 'none'})")

    # The TLS Secret is issued by cert-manager from certificate.yaml (applied on its own), not
    # generated by the kustomization; check_tls checks its references.
    certificate = certificate_manifest(repo)
    issued = {((certificate or {}).get("spec") or {}).get("secretName")} - {None}

    def secret_ref(where, name, key=None, optional=False):
        if name in issued:
            return None
        if name not in secrets:
            if not optional:
                problems.add(where, f"refers to Secret {name!r}, which the kustomization does not generate "
                                    f"(generated: {', '.join(sorted(secrets)) or 'none'})")
            return None
        if key is not None and key not in (secrets[name].get("data") or {}) \
                and key not in (secrets[name].get("stringData") or {}):
            problems.add(where, f"Secret {name} has no key {key!r}")
            return None
        return secrets[name]

    for w in workloads:
        wname = f"{w['kind']}/{w['metadata']['name']}"
        where = f"{rel}: {wname}"
        spec = w.get("spec") or {}
        tmpl = spec.get("template") or {}
        pod_labels = (tmpl.get("metadata") or {}).get("labels") or {}
        annotations = (tmpl.get("metadata") or {}).get("annotations") or {}
        pod = tmpl.get("spec") or {}
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        if not labels_match(selector, pod_labels):
            problems.add(where, f"selector {selector} does not match the pod template labels {pod_labels}")
        replicas = spec.get("replicas", 1)
        containers = pod.get("containers") or []
        if not containers:
            problems.add(where, "no containers")
            continue
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        claims = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates") or []}
        for clash in set(volumes) & claims:
            problems.add(where, f"volume {clash!r} is both a pod volume and a volumeClaimTemplate")
        for vname, v in volumes.items():
            if "configMap" in v:
                cm = v["configMap"]
                cm_ref(f"{where} volume {vname}", cm.get("name"), optional=cm.get("optional", False))
                for item in cm.get("items") or []:
                    cm_ref(f"{where} volume {vname}", cm.get("name"), item.get("key"), cm.get("optional", False))
            if "secret" in v:
                sv = v["secret"]
                secret_ref(f"{where} volume {vname}", sv.get("secretName"), optional=sv.get("optional", False))
                for item in sv.get("items") or []:
                    secret_ref(f"{where} volume {vname}", sv.get("secretName"), item.get("key"), sv.get("optional", False))
            for src in (v.get("projected") or {}).get("sources") or []:
                if "configMap" in src:
                    cm_ref(f"{where} volume {vname}", src["configMap"].get("name"), optional=src["configMap"].get("optional", False))

        all_ports = {}
        for c in containers:
            cwhere = f"{where} container {c.get('name')}"
            ports = {}
            for p in c.get("ports") or []:
                if p.get("name"):
                    if p["name"] in ports:
                        problems.add(cwhere, f"port name {p['name']!r} used twice")
                    ports[p["name"]] = p.get("containerPort")
            all_ports.update(ports)
            numbers = set(ports.values()) | {p.get("containerPort") for p in c.get("ports") or []}

            def port_ok(port, what):
                if isinstance(port, str) and not port.isdigit():
                    if port not in ports:
                        problems.add(cwhere, f"{what} port {port!r} is not a container port name ({', '.join(sorted(ports)) or 'none'})")
                        return None
                    return ports[port]
                if int(port) not in numbers:
                    problems.add(cwhere, f"{what} port {port} is not a container port ({', '.join(str(n) for n in sorted(numbers))})")
                    return None
                return int(port)

            paths = {}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                pr = c.get(probe)
                if not pr:
                    continue
                for kind in ("httpGet", "tcpSocket", "grpc"):
                    if kind in pr and "port" in pr[kind]:
                        number = port_ok(pr[kind]["port"], probe)
                        # The HTTP port's clients (idle keep-alive connections, open streams)
                        # can keep a probe waiting there; the admin port is the probes' own.
                        if kind == "httpGet" and number is not None and "admin" in ports \
                                and number != ports["admin"]:
                            problems.add(cwhere, f"{probe} on port {pr[kind]['port']}: probe the admin port ({ports['admin']}), which the HTTP port's clients cannot starve")
                if "httpGet" in pr:
                    paths[probe] = pr["httpGet"].get("path")
            if c.get("name") == "kiq-node" or "kiq-node" in str(c.get("command", "")) or c is containers[0]:
                if paths.get("readinessProbe") != "/readyz":
                    problems.add(cwhere, f"readinessProbe must be GET /readyz (ready = group joined, every owned partition ACTIVE), not {paths.get('readinessProbe')!r}")
                if paths.get("livenessProbe") == "/readyz" or paths.get("startupProbe") == "/readyz":
                    problems.add(cwhere, "liveness/startup probe on /readyz: a node restoring partitions would be restarted; use /healthz")
                if not c.get("livenessProbe"):
                    problems.add(cwhere, "no livenessProbe")

            env = {}
            for e in c.get("env") or []:
                env[e["name"]] = e
                ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
                if ref:
                    cm_ref(f"{cwhere} env {e['name']}", ref.get("name"), ref.get("key"), ref.get("optional", False))
                sref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if sref:
                    secret_ref(f"{cwhere} env {e['name']}", sref.get("name"), sref.get("key"), sref.get("optional", False))
            for ef in c.get("envFrom") or []:
                ref = ef.get("configMapRef")
                if ref:
                    cm_ref(f"{cwhere} envFrom", ref.get("name"), optional=ref.get("optional", False))
                    for k in (configmaps.get(ref.get("name")) or {}).get("data") or {}:
                        env.setdefault(ef.get("prefix", "") + k, {"name": k})
                elif ef.get("secretRef"):
                    env["*secret*"] = True  # unknown keys
            args = [str(a) for a in (c.get("command") or []) + (c.get("args") or [])]
            for a in args:
                for var in re.findall(r"(?<!\$)\$\((\w+)\)", a):
                    if var not in env and "*secret*" not in env:
                        problems.add(cwhere, f"argument {a!r} uses $({var}), which is not in the container's env")

            mounts = {}
            for vm in c.get("volumeMounts") or []:
                if vm["name"] not in volumes and vm["name"] not in claims:
                    problems.add(cwhere, f"volumeMount {vm['name']!r} is neither a pod volume nor a volumeClaimTemplate "
                                         f"(volumes: {', '.join(sorted(set(volumes) | claims))})")
                mounts[vm["mountPath"].rstrip("/") or "/"] = vm

            def mount_of(path):
                best = None
                for mp, vm in mounts.items():
                    if path == mp or path.startswith(mp + "/") or mp == "/":
                        if best is None or len(mp) > len(best[0]):
                            best = (mp, vm)
                return best

            flags = {}
            for a in args:
                m = re.match(r"--([\w-]+)=(.*)", a)
                if m:
                    flags[m.group(1).replace("_", "-")] = m.group(2)
            if "config" in flags:
                found = mount_of(flags["config"])
                if not found:
                    problems.add(cwhere, f"--config={flags['config']} is not on a mounted volume")
                else:
                    mp, vm = found
                    vol = volumes.get(vm["name"]) or {}
                    cm = vol.get("configMap")
                    if cm and cm.get("name") in configmaps:
                        key = vm.get("subPath") if flags["config"] == mp and vm.get("subPath") else os.path.relpath(flags["config"], mp)
                        items = {i.get("path"): i.get("key") for i in cm.get("items") or []}
                        key = items.get(key, key) if items else key
                        if key not in (configmaps[cm["name"]].get("data") or {}):
                            problems.add(cwhere, f"--config={flags['config']}: ConfigMap {cm['name']} mounted at {mp} has no key {key!r}")
            if "data-dir" in flags:
                found = mount_of(flags["data-dir"])
                if not found or found[1]["name"] not in claims:
                    problems.add(cwhere, f"--data-dir={flags['data-dir']} is not on a volumeClaimTemplate volume (state would be lost, or the root filesystem is read-only)")
            check_security(cwhere, flags, env, mounts, mount_of, volumes, secrets, cluster_secret_refs, problems)
            for flag, pname in (("grpc-port", "grpc"), ("http-port", "http"), ("admin-port", "admin")):
                if flag in flags and pname in ports and str(ports[pname]) != flags[flag]:
                    problems.add(cwhere, f"--{flag}={flags[flag]} but container port {pname!r} is {ports[pname]}")
            check_tls_flags(repo, w, cwhere, flags, mounts, mount_of, volumes, problems)
            if w["kind"] == "StatefulSet" and "advertised-host" in flags:
                svc = spec.get("serviceName")
                if f".{svc}." not in flags["advertised-host"] and not flags["advertised-host"].endswith(f".{svc}"):
                    problems.add(cwhere, f"--advertised-host={flags['advertised-host']} does not use the governing Service {svc!r} (peers could not resolve it)")
            sc = dict(pod.get("securityContext") or {})
            sc.update(c.get("securityContext") or {})
            if sc.get("readOnlyRootFilesystem") and "/tmp" not in mounts:
                note(f"{cwhere}: read-only root filesystem without a /tmp volume")

            # Graceful shutdown: preStop + 5 s of in-flight queries + commit/tombstone/close.
            pre = (c.get("lifecycle") or {}).get("preStop") or {}
            sleep = 0
            cmd = (pre.get("exec") or {}).get("command") or []
            if cmd and os.path.basename(str(cmd[0])) == "sleep" and len(cmd) > 1 and str(cmd[1]).isdigit():
                sleep = int(cmd[1])
            elif "sleep" in pre and isinstance(pre["sleep"], dict):
                sleep = int(pre["sleep"].get("seconds", 0))
            grace = pod.get("terminationGracePeriodSeconds", 30)
            if grace < sleep + 10:
                problems.add(cwhere, f"terminationGracePeriodSeconds {grace} < preStop {sleep}s + 10s for the node's shutdown (5s in-flight queries, commit, tombstone)")

        sc = pod.get("securityContext") or {}
        if not sc.get("runAsNonRoot") or not sc.get("runAsUser"):
            problems.add(where, "pod securityContext must set runAsNonRoot and a non-zero runAsUser")

        if annotations.get("prometheus.io/scrape") == "true":
            port = annotations.get("prometheus.io/port")
            if port is None or not str(port).isdigit():
                problems.add(where, f"prometheus.io/port {port!r} is not a port number")
            elif all_ports.get("admin", all_ports.get("http")) != int(port):
                scrape = "admin" if "admin" in all_ports else "http"
                problems.add(where, f"prometheus.io/port {port} is not the {scrape} container port ({all_ports.get(scrape)})")
            if annotations.get("prometheus.io/path", "/metrics") != "/metrics":
                problems.add(where, f"prometheus.io/path {annotations['prometheus.io/path']!r}: the node serves /metrics")
        else:
            problems.add(where, "pod template lacks the annotation prometheus.io/scrape: \"true\"")

        if w["kind"] == "StatefulSet":
            svc_name = spec.get("serviceName")
            svc = services.get(svc_name)
            if svc is None:
                problems.add(where, f"serviceName {svc_name!r} is not a Service of the kustomization ({', '.join(sorted(services))})")
            else:
                s = svc.get("spec") or {}
                if s.get("clusterIP") != "None":
                    problems.add(where, f"serviceName {svc_name!r} is not headless (clusterIP: None)")
                if not labels_match(s.get("selector") or {}, pod_labels):
                    problems.add(where, f"serviceName {svc_name!r} does not select the pods")
                if not s.get("publishNotReadyAddresses"):
                    problems.add(where, f"headless Service {svc_name!r} must publishNotReadyAddresses (peers resolve restoring nodes)")
        w["_pod_labels"] = pod_labels
        w["_ports"] = all_ports
        w["_numbers"] = {p.get("containerPort") for c in containers for p in c.get("ports") or []}
        w["_replicas"] = replicas

    for name, svc in services.items():
        where = f"{rel}: Service/{name}"
        s = svc.get("spec") or {}
        sel = s.get("selector") or {}
        if not sel:
            problems.add(where, "no selector")
            continue
        matched = [w for w in workloads if labels_match(sel, w.get("_pod_labels", {}))]
        if not matched:
            problems.add(where, f"selector {sel} matches no pod template")
            continue
        for p in s.get("ports") or []:
            target = p.get("targetPort", p.get("port"))
            for w in matched:
                if isinstance(target, str) and not target.isdigit():
                    if target not in w["_ports"]:
                        problems.add(where, f"port {p.get('name') or p.get('port')}: targetPort {target!r} is not a container port name of {w['kind']}/{w['metadata']['name']} ({', '.join(sorted(w['_ports']))})")
                elif int(target) not in w["_numbers"]:
                    problems.add(where, f"port {p.get('name') or p.get('port')}: targetPort {target} is not a container port of {w['kind']}/{w['metadata']['name']}")

    if len(cluster_secret_refs) > 1:
        problems.add(rel, f"the workloads take their cluster secret from different Secrets {sorted(cluster_secret_refs)}: "
                          "nodes and routers with different secrets ignore each other's members records and peer calls")
    pdbs = by_kind.get("PodDisruptionBudget", {})
    if not pdbs:
        problems.add(rel, "no PodDisruptionBudget")
    for name, pdb in pdbs.items():
        where = f"{rel}: PodDisruptionBudget/{name}"
        s = pdb.get("spec") or {}
        sel = (s.get("selector") or {}).get("matchLabels") or {}
        matched = [w for w in workloads if labels_match(sel, w.get("_pod_labels", {}))]
        if not matched:
            problems.add(where, f"selector {sel} matches no pod template")
        if s.get("maxUnavailable") in (0, "0", "0%"):
            problems.add(where, "maxUnavailable 0 blocks every drain")
        if isinstance(s.get("minAvailable"), int) and any(s["minAvailable"] >= w["_replicas"] for w in matched):
            problems.add(where, "minAvailable >= replicas blocks every drain")
    return by_kind


def check_security(cwhere, flags, env, mounts, mount_of, volumes, secrets, cluster_secret_refs, problems):
    """README "Security": every node and router has a token file on a mounted Secret (a
    directory mount, so that the kubelet updates it in place), holding digests only, and the
    cluster secret from a Secret."""
    path = flags.get("auth-token-file")
    if path is None:
        problems.add(cwhere, "no --auth-token-file: the API would be open to anyone who reaches the pod")
    else:
        found = mount_of(path)
        vol = volumes.get(found[1]["name"]) if found else None
        if not found or not vol or "secret" not in vol:
            problems.add(cwhere, f"--auth-token-file={path} is not on a mounted Secret volume")
        elif found[1].get("subPath"):
            problems.add(cwhere, f"--auth-token-file={path} is mounted with subPath: the kubelet never updates such a file, so token changes would need a restart")
        else:
            mp, _ = found
            name = vol["secret"].get("secretName")
            key = os.path.relpath(path, mp)
            items = {i.get("path"): i.get("key") for i in vol["secret"].get("items") or []}
            key = items.get(key, key) if items else key
            data = (secrets.get(name) or {}).get("data") or {}
            if name in secrets and key not in data:
                problems.add(cwhere, f"--auth-token-file={path}: Secret {name} mounted at {mp} has no key {key!r}")
            elif key in data:
                try:
                    doc = yaml.safe_load(base64.b64decode(data[key]).decode("utf-8")) or {}
                except (ValueError, yaml.YAMLError) as e:
                    problems.add(cwhere, f"--auth-token-file={path}: not YAML: {one_line(str(e))}")
                    doc = {}
                tokens = doc.get("tokens") if isinstance(doc, dict) else None
                if not isinstance(tokens, list) or not tokens:
                    problems.add(cwhere, f"--auth-token-file={path}: no tokens list")
                for i, t in enumerate(tokens or []):
                    if not isinstance(t, dict) or not t.get("name") or not t.get("stores"):
                        problems.add(cwhere, f"--auth-token-file={path}: tokens[{i}] needs name and stores")
                    elif "token" in t:
                        problems.add(cwhere, f"--auth-token-file={path}: tokens[{i}] holds a token in clear; use sha256")
                    elif not re.fullmatch(r"[0-9a-fA-F]{64}", str(t.get("sha256", ""))):
                        problems.add(cwhere, f"--auth-token-file={path}: tokens[{i}].sha256 is not 64 hex digits")
    if "cluster-secret-file" in flags:
        found = mount_of(flags["cluster-secret-file"])
        vol = volumes.get(found[1]["name"]) if found else None
        if not vol or "secret" not in vol:
            problems.add(cwhere, f"--cluster-secret-file={flags['cluster-secret-file']} is not on a mounted Secret volume")
        else:
            cluster_secret_refs.add((vol["secret"].get("secretName"), os.path.relpath(flags["cluster-secret-file"], found[0])))
        return
    ref = ((env.get("KIQ_CLUSTER_SECRET") or {}).get("valueFrom") or {}).get("secretKeyRef")
    if not ref:
        problems.add(cwhere, "no cluster secret (--cluster-secret-file or env KIQ_CLUSTER_SECRET from a secretKeyRef): "
                             "members records and peer calls would be unauthenticated, and --auth-token-file refuses to start without it")
        return
    cluster_secret_refs.add((ref.get("name"), ref.get("key")))
    value = ((secrets.get(ref.get("name")) or {}).get("data") or {}).get(ref.get("key"))
    if value is not None:
        secret = base64.b64decode(value).strip()
        if len(secret) < 16:
            problems.add(cwhere, f"the cluster secret in Secret {ref.get('name')} is {len(secret)} bytes; kiq needs at least 16")
        elif secret.startswith(b"REPLACE-ME"):
            note(f"{cwhere}: the cluster secret is the base's placeholder; replace it in your overlay")


# ------------------------------------------------------------------------------------------
# Dockerfile and topology


def check_dockerfile(repo, by_kind, problems):
    rel = "deploy/Dockerfile"
    try:
        text = open(os.path.join(repo, rel), encoding="utf-8").read()
    except OSError as e:
        problems.add(rel, f"cannot read: {e.strerror}")
        return
    lines = []
    for raw in re.sub(r"\\\n", " ", text).splitlines():
        s = raw.strip()
        if s and not s.startswith("#"):
            lines.append(s)
    instr = [(l.split(None, 1)[0].upper(), l.split(None, 1)[1] if " " in l else "") for l in lines]
    copies = [a for i, a in instr if i == "COPY" and "--from" not in a]
    copied = set()
    for a in copies:
        parts = [p for p in a.split() if not p.startswith("--")]
        for src in parts[:-1]:
            copied.add(src.strip("./") if src not in (".", "./") else ".")
    try:
        cmake = open(os.path.join(repo, "CMakeLists.txt"), encoding="utf-8").read()
    except OSError:
        cmake = ""
    for sub in re.findall(r"add_subdirectory\(\s*([\w./-]+)", cmake):
        # tests, bench: built only with BUILD_TESTING, which the image turns off; fuzz: only with
        # KIQ_FUZZ (clang), which it never sets.
        if sub in ("tests", "bench", "fuzz"):
            continue
        if sub not in copied and "." not in copied:
            problems.add(rel, f"does not COPY {sub}/, which CMakeLists.txt adds (add_subdirectory)")
    if cmake and "CMakeLists.txt" not in copied and "." not in copied:
        problems.add(rel, "does not COPY the top-level CMakeLists.txt")
    if "-DBUILD_TESTING=OFF" not in text:
        problems.add(rel, "the build must pass -DBUILD_TESTING=OFF (no GoogleTest in the image build)")
    arg_defaults = dict(re.findall(r"^(\w+)=(\S+)", "\n".join(a for i, a in instr if i == "ARG"), re.M))
    stages = {a.split()[-1] for i, a in instr if i == "FROM" and re.search(r"\s+as\s+", a, re.I)}
    for img in [a.split()[0] for i, a in instr if i == "FROM" and a.split()]:
        resolved = re.sub(r"\$\{?(\w+)\}?", lambda m: arg_defaults.get(m.group(1), m.group(0)), img)
        if resolved not in stages and "bookworm" not in resolved:
            problems.add(rel, f"FROM {img} ({resolved}): kiq builds on Debian bookworm packages")
    entry = [a for i, a in instr if i == "ENTRYPOINT"]
    if not entry or "kiq-node" not in entry[-1]:
        problems.add(rel, "ENTRYPOINT must run kiq-node")
    exposed = set()
    for i, a in instr:
        if i == "EXPOSE":
            exposed |= {int(p.split("/")[0]) for p in a.split() if p.split("/")[0].isdigit()}
    users = [a for i, a in instr if i == "USER"]
    uid = users[-1].split(":")[0] if users else ""
    if not uid.isdigit() or uid == "0":
        problems.add(rel, f"USER must be a numeric non-root uid (Kubernetes runAsNonRoot), not {uid!r}")
    for sts in (by_kind or {}).get("StatefulSet", {}).values():
        pod = sts["spec"]["template"]["spec"]
        for c in pod.get("containers") or []:
            for p in c.get("ports") or []:
                if p.get("containerPort") not in exposed:
                    problems.add(rel, f"does not EXPOSE {p.get('containerPort')} (container port {p.get('name')})")
        run_as = (pod.get("securityContext") or {}).get("runAsUser")
        if uid.isdigit() and run_as is not None and int(uid) != int(run_as):
            problems.add(rel, f"USER {uid} but the StatefulSet runs as {run_as}")


def check_topology(repo, problems):
    rel = "deploy/k8s/topology.yaml"
    try:
        topo = yaml.safe_load(open(os.path.join(repo, rel), encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        problems.add(rel, f"cannot read: {one_line(str(e))}")
        return
    if not re.fullmatch(r"[A-Za-z0-9._-]+", str(topo.get("application_id", ""))):
        problems.add(rel, "application_id missing or not letters, digits, '.', '_', '-'")
    topics = {s.get("topic") for s in topo.get("sources") or []}
    if not topics:
        problems.add(rel, "no sources")
    for i, s in enumerate(topo.get("stores") or []):
        if s.get("source") not in topics:
            problems.add(rel, f"stores[{i}].source: unknown topic {s.get('source')!r} (declared sources: {', '.join(sorted(t for t in topics if t))})")
    example = os.path.join(repo, "examples", "orders", "topology.yaml")
    try:
        if open(example, encoding="utf-8").read() != open(os.path.join(repo, rel), encoding="utf-8").read():
            note(f"{rel} differs from examples/orders/topology.yaml (fine if you deploy your own topology)")
    except OSError:
        pass


# ------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        help="repository root (default: the parent of this script's directory)")
    parser.add_argument("--metrics", metavar="FILE",
                        help="a Prometheus exposition scraped from a running kiq-node's /metrics")
    parser.add_argument("--strict", action="store_true",
                        help="with --metrics: every metric the dashboard and alerts use must have a series in FILE")
    args = parser.parse_args()
    repo = os.path.abspath(args.repo)
    problems = Problems()

    kubectl = shutil.which("kubectl")
    promtool = shutil.which("promtool")
    if not kubectl:
        problems.add("check_deploy", "kubectl not found on PATH (Debian: apt-get install kubernetes-client); cannot render deploy/k8s")
    if not promtool:
        problems.add("check_deploy", "promtool not found on PATH (Debian: apt-get install prometheus); cannot check the rules and queries")

    documented = parse_metrics_md(os.path.join(repo, "deploy", "METRICS.md"), problems, "deploy/METRICS.md")
    exported = None
    if args.metrics:
        exported = parse_exposition(args.metrics, problems, args.metrics)
        if exported is not None:
            check_exposition_against_doc(exported, documented, problems, args.metrics)
            if promtool:
                code, out, err = run([promtool, "check", "metrics"], stdin=open(args.metrics, encoding="utf-8").read())
                if code != 0:
                    problems.add(args.metrics, f"promtool check metrics: {one_line(out + err)}")
            exported = {k: v for k, v in exported.items() if v["samples"] > 0 or k in documented}
    catalog = MetricCatalog(documented, exported, args.strict)

    by_kind = check_k8s(repo, kubectl, problems) if kubectl else None
    check_dockerfile(repo, by_kind, problems)
    check_topology(repo, problems)
    check_dashboard(os.path.join(repo, "deploy", "grafana", "kiq-dashboard.json"),
                    "deploy/grafana/kiq-dashboard.json", catalog, problems, promtool)
    check_alerts(os.path.join(repo, "deploy", "prometheus", "kiq-alerts.yaml"),
                 "deploy/prometheus/kiq-alerts.yaml", repo, catalog, problems, promtool)

    if catalog.not_scraped:
        note("documented but without series in the scrape (exposed after their first sample): "
             + ", ".join(sorted(catalog.not_scraped)))
    seen = set()
    for line in problems.lines:
        if line not in seen:
            seen.add(line)
            print(line)
    if problems.lines:
        print(f"check_deploy: {len(seen)} problem(s)", file=sys.stderr)
        return 1
    print("check_deploy: OK (kustomize, Dockerfile, dashboard, alerts, metrics "
          + (f"against {args.metrics}" if args.metrics else "against deploy/METRICS.md") + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
