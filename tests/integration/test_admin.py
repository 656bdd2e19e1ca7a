"""The admin HTTP endpoint (SPEC 6): /metrics in Prometheus text format,
/status JSON, /healthz, POST suspend/resume with the token and loopback
rules, and the HTTP errors around them."""

import datetime
import http.client
import json
import math
import re
import shutil
import signal
import socket
import subprocess
import time

from harness import (HTTPServer, NetnsCase, ProxyCase, http_body, main, make_config,
                     parse_hostport, read_until_close, socks_open, sockpool_only, wait_until)

ONE_SOURCE = """\
[source "lo4"]
address = 127.0.0.1

[pool "main"]
source = lo4
"""

TWO_SOURCES = """\
[source "lo4"]
address = 127.0.0.1

[source "lo6"]
address = ::1

[pool "main"]
source = lo4, lo6 weight=3
"""

# conf rejects `listen` and `admin_listen` on the same address even with
# port 0 (two different ephemeral ports), so the SOCKS listener goes to
# another loopback address. Back to 127.0.0.1:0 once conf skips port 0.
SOCKS_LISTEN = ("127.0.0.2:0",)

METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$")
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


def parse_labels(text):
    labels = {}
    pos = 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        if not m:
            raise AssertionError("bad labels at %r" % text[pos:])
        value = re.sub(r"\\(.)", lambda e: {"n": "\n"}.get(e.group(1), e.group(1)), m.group(2))
        if m.group(1) in labels:
            raise AssertionError("label %s twice in %r" % (m.group(1), text))
        labels[m.group(1)] = value
        pos = m.end()
    return labels


def parse_value(text):
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf"))
    if not re.fullmatch(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?", text):
        raise AssertionError("bad sample value %r" % text)
    return float(text)


def parse_prometheus(text):
    """Text format 0.0.4 -> {family: {"help", "type", "samples": [(name, labels, value)]}}.

    Checks what a scraper relies on: every sample belongs to a family that
    has HELP and TYPE before its first sample, a family's samples are
    contiguous, no series repeats, counters end in _total, and histogram
    buckets are cumulative, end with +Inf and agree with _count."""
    if not text.endswith("\n"):
        raise AssertionError("exposition does not end with a newline")
    families = {}
    order = []
    seen = set()
    for line in text.split("\n")[:-1]:
        if not line:
            continue
        if line.startswith("#"):
            m = re.match(r"^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$", line)
            if not m:
                raise AssertionError("bad comment line %r" % line)
            fam = families.setdefault(m.group(2), {"help": None, "type": None, "samples": []})
            if fam["samples"]:
                raise AssertionError("%s after samples of %s" % (m.group(1), m.group(2)))
            key = m.group(1).lower()
            if fam[key] is not None:
                raise AssertionError("%s twice for %s" % (m.group(1), m.group(2)))
            fam[key] = m.group(3)
            if key == "type" and m.group(3) not in ("counter", "gauge", "histogram", "summary",
                                                   "untyped"):
                raise AssertionError("bad TYPE %r" % line)
            if not order or order[-1] != m.group(2):
                if m.group(2) in order:
                    raise AssertionError("family %s split" % m.group(2))
                order.append(m.group(2))
            continue
        m = METRIC_LINE.match(line)
        if not m:
            raise AssertionError("bad sample line %r" % line)
        name, labels, value = m.group(1), parse_labels(m.group(3) or ""), parse_value(m.group(4))
        base = name
        if name not in families:
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if families.get(base, {}).get("type") != "histogram":
                raise AssertionError("sample %s has no HELP/TYPE" % name)
        fam = families[base]
        if fam["help"] is None or fam["type"] is None:
            raise AssertionError("family %s lacks HELP or TYPE" % base)
        if order[-1] != base:
            raise AssertionError("samples of %s are not contiguous" % base)
        series = (name, tuple(sorted(labels.items())))
        if series in seen:
            raise AssertionError("series twice: %r" % (series,))
        seen.add(series)
        fam["samples"].append((name, labels, value))
    for base, fam in families.items():
        if fam["type"] == "counter" and not base.endswith("_total"):
            raise AssertionError("counter %s does not end in _total" % base)
        if fam["type"] == "histogram":
            check_histogram(base, fam["samples"])
    return families


def check_histogram(base, samples):
    groups = {}
    for name, labels, value in samples:
        rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        g = groups.setdefault(rest, {"buckets": [], "sum": None, "count": None})
        if name == base + "_bucket":
            g["buckets"].append((parse_value(labels["le"]), value))
        elif name == base + "_sum":
            g["sum"] = value
        elif name == base + "_count":
            g["count"] = value
        else:
            raise AssertionError("%s in histogram %s" % (name, base))
    for rest, g in groups.items():
        les = [le for le, _ in g["buckets"]]
        if not les or les[-1] != math.inf:
            raise AssertionError("%s%r: buckets do not end with +Inf" % (base, rest))
        if les != sorted(les) or len(set(les)) != len(les):
            raise AssertionError("%s%r: le not increasing: %r" % (base, rest, les))
        counts = [c for _, c in g["buckets"]]
        if counts != sorted(counts):
            raise AssertionError("%s%r: buckets not cumulative: %r" % (base, rest, counts))
        if g["count"] is None or g["sum"] is None:
            raise AssertionError("%s%r: _sum or _count missing" % (base, rest))
        if counts[-1] != g["count"]:
            raise AssertionError("%s%r: +Inf %r != _count %r" % (base, rest, counts[-1],
                                                                g["count"]))


def sample(families, name, **labels):
    """The value of one series; a histogram's _count/_bucket by its full name."""
    base = name if name in families else re.sub(r"_(bucket|sum|count)$", "", name)
    for n, l, v in families[base]["samples"]:
        if n == name and all(l.get(k) == str(want) for k, want in labels.items()):
            return v
    raise AssertionError("no sample %s%r" % (name, labels))


def parse_rfc3339(text):
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", text)
    if not m:
        raise AssertionError("not RFC 3339 UTC: %r" % text)
    t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")
    t = t.replace(tzinfo=datetime.timezone.utc).timestamp()
    return t + float(m.group(2) or 0)


class Admin(ProxyCase):
    def start(self, sections=TWO_SOURCES, admin_listen="127.0.0.1:0", **server):
        proxy = self.start_proxy(make_config(listen=SOCKS_LISTEN, sections=sections,
                                             admin_listen=admin_listen, **server))
        hit = [l for l in proxy.log() if l.startswith("INFO admin: listening ")]
        self.assertEqual(len(hit), 1, "no single `INFO admin: listening` before ready\n" +
                         proxy.tail())
        m = re.search(r"\baddr=(\S+)", hit[0])
        self.admin = parse_hostport(m.group(1))
        self.assertNotEqual(self.admin[1], 0, "logged port 0, not the bound port")
        return proxy

    def http(self, method, path, headers=None, body=None, addr=None):
        """(status, headers dict with lowercase names, body text)."""
        host, port = addr or self.admin
        conn = http.client.HTTPConnection(host, port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read().decode()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            conn.close()

    def metrics(self):
        status, headers, body = self.http("GET", "/metrics")
        self.assertEqual(status, 200, body)
        self.assertRegex(headers.get("content-type", ""), r"^text/plain; version=0\.0\.4\b")
        return parse_prometheus(body)

    def status_json(self):
        status, headers, body = self.http("GET", "/status")
        self.assertEqual(status, 200, body)
        self.assertTrue(headers.get("content-type", "").startswith("application/json"))
        return json.loads(body)

    def source_of(self, doc, name):
        for s in doc["sources"]:
            if s["name"] == name:
                return s
        self.fail("no source %r in %r" % (name, doc["sources"]))


class Endpoints(Admin):
    @sockpool_only
    def test_metrics_is_prometheus_text(self):
        self.start()
        before = time.time()
        fam = self.metrics()
        types = {
            "sockpool_connections_active": "gauge",
            "sockpool_connections_relaying": "gauge",
            "sockpool_connections_total": "counter",
            "sockpool_bytes_total": "counter",
            "sockpool_source_selected_total": "counter",
            "sockpool_source_successes_total": "counter",
            "sockpool_source_failures_total": "counter",
            "sockpool_source_suspensions_total": "counter",
            "sockpool_source_state": "gauge",
            "sockpool_source_suspended_until_seconds": "gauge",
            "sockpool_source_active_connections": "gauge",
            "sockpool_handshake_duration_seconds": "histogram",
            "sockpool_connect_duration_seconds": "histogram",
            "sockpool_pool_eligible_sources": "gauge",
            "sockpool_build_info": "gauge",
            "sockpool_reloads_total": "counter",
            "sockpool_last_reload_success_timestamp_seconds": "gauge",
            "process_start_time_seconds": "gauge",
            "process_cpu_seconds_total": "counter",
            "process_open_fds": "gauge",
            "process_max_fds": "gauge",
            "process_resident_memory_bytes": "gauge",
            "process_virtual_memory_bytes": "gauge",
        }
        self.assertEqual({k: fam[k]["type"] for k in types if k in fam}, types)
        # ports exhausted is one kind of source_failures_total, not a family of its own
        self.assertNotIn("sockpool_source_ports_exhausted_total", fam)
        self.assertNotIn("sockpool_start_time_seconds", fam)  # process_start_time_seconds
        results = {l["result"] for _, l, _ in fam["sockpool_connections_total"]["samples"]}
        self.assertTrue({"ok", "refused", "handshake", "auth", "not_allowed", "destination",
                         "exhausted", "error"} <= results, results)
        self.assertEqual(sample(fam, "sockpool_source_selected_total", source="lo4",
                                address="127.0.0.1"), 0)
        self.assertEqual(sample(fam, "sockpool_source_selected_total", source="lo6",
                                address="::1"), 0)
        kinds = {(l["source"], l["kind"]) for _, l, _ in
                 fam["sockpool_source_failures_total"]["samples"]}
        self.assertEqual(kinds, {(s, k) for s in ("lo4", "lo6")
                                 for k in ("unplumbed", "proxy_unhealthy", "ports_exhausted")})
        for src in ("lo4", "lo6"):
            self.assertEqual(sample(fam, "sockpool_source_state", source=src, reason="none"), 1)
            self.assertEqual(sample(fam, "sockpool_source_suspended_until_seconds", source=src), 0)
        self.assertEqual(sample(fam, "sockpool_pool_eligible_sources", pool="main"), 2)
        self.assertEqual(sample(fam, "sockpool_connections_active"), 0)
        self.assertEqual(sample(fam, "sockpool_handshake_duration_seconds_count"), 0)
        self.assertEqual(len(fam["sockpool_build_info"]["samples"]), 1)
        self.assertRegex(fam["sockpool_build_info"]["samples"][0][1]["version"], r"^\d+\.\d+")
        start = sample(fam, "process_start_time_seconds")
        self.assertLessEqual(start, before + 1)
        self.assertGreater(start, before - 60, "process_start_time_seconds is not the start time")
        self.assertEqual(sample(fam, "sockpool_reloads_total", result="success"), 0)
        self.assertEqual(sample(fam, "sockpool_reloads_total", result="failure"), 0)
        self.assertAlmostEqual(sample(fam, "sockpool_last_reload_success_timestamp_seconds"),
                               start, delta=2)
        self.assertGreater(sample(fam, "process_open_fds"), 3)
        self.assertGreaterEqual(sample(fam, "process_max_fds"), sample(fam, "process_open_fds"))
        self.assertGreater(sample(fam, "process_resident_memory_bytes"), 1 << 20)
        self.assertGreaterEqual(sample(fam, "process_virtual_memory_bytes"),
                                sample(fam, "process_resident_memory_bytes"))
        self.assertGreaterEqual(sample(fam, "process_cpu_seconds_total"), 0)

    @sockpool_only
    def test_counters_move_after_a_proxied_fetch(self):
        proxy = self.start()
        web = self.start_http()
        s, _ = socks_open(proxy.addr, *web.addr)
        self.addCleanup(s.close)
        # While the relay is open the gauges count it.
        fam = self.metrics()
        self.assertEqual(sample(fam, "sockpool_connections_active"), 1)
        self.assertEqual(sample(fam, "sockpool_connections_relaying"), 1)
        self.assertEqual(sample(fam, "sockpool_source_active_connections", source="lo4"), 1)
        req = b"GET /data/5000 HTTP/1.0\r\nHost: test\r\n\r\n"
        s.sendall(req)
        data, how = read_until_close(s)
        s.close()
        self.assertEqual(how, "eof")
        self.assertTrue(data.endswith(http_body(5000)), "body did not come through")

        def finished():
            f = self.metrics()
            return f if sample(f, "sockpool_connections_total", result="ok") == 1 else None
        fam = wait_until(finished, 5, 0.05, "connections_total{result=ok} to reach 1")
        self.assertEqual(sample(fam, "sockpool_connections_active"), 0)
        self.assertEqual(sample(fam, "sockpool_connections_relaying"), 0)
        self.assertGreaterEqual(sample(fam, "sockpool_bytes_total", direction="up"), len(req))
        self.assertGreaterEqual(sample(fam, "sockpool_bytes_total", direction="down"), 5000)
        self.assertEqual(sample(fam, "sockpool_source_selected_total", source="lo4"), 1)
        self.assertEqual(sample(fam, "sockpool_source_selected_total", source="lo6"), 0)
        self.assertEqual(sample(fam, "sockpool_source_successes_total", source="lo4"), 1)
        self.assertEqual(sample(fam, "sockpool_source_active_connections", source="lo4"), 0)
        self.assertEqual(sample(fam, "sockpool_handshake_duration_seconds_count"), 1)
        self.assertEqual(sample(fam, "sockpool_connect_duration_seconds_count"), 1)
        self.assertEqual(sample(fam, "sockpool_connect_duration_seconds_bucket", le="+Inf"), 1)
        self.assertGreater(sample(fam, "sockpool_connect_duration_seconds_sum"), 0)

        doc = self.status_json()
        lo4 = self.source_of(doc, "lo4")
        self.assertEqual((lo4["counters"]["selected"], lo4["counters"]["successes"]), (1, 1))
        # the fetch is the source's last success, a few seconds ago at most
        self.assertLess(abs(parse_rfc3339(lo4["last_success"]) - time.time()), 5)
        self.assertIsNone(lo4["last_failure"])

    @sockpool_only
    def test_status_json(self):
        self.start()
        doc = self.status_json()
        self.assertRegex(doc["version"], r"^\d+\.\d+")
        self.assertIsInstance(doc["uptime_seconds"], int)
        self.assertGreaterEqual(doc["uptime_seconds"], 0)
        self.assertLess(doc["uptime_seconds"], 60)
        self.assertEqual(doc["connections"], {"active": 0, "relaying": 0})
        self.assertEqual(len(doc["pools"]), 1)
        pool = doc["pools"][0]
        self.assertEqual((pool["name"], pool["strategy"], pool["eligible"]),
                         ("main", "round-robin", 2))
        self.assertEqual(pool["sources"], [{"name": "lo4", "weight": 1, "priority": 0},
                                           {"name": "lo6", "weight": 3, "priority": 0}])
        self.assertEqual([s["name"] for s in doc["sources"]], ["lo4", "lo6"])
        lo6 = self.source_of(doc, "lo6")
        self.assertEqual((lo6["address"], lo6["state"], lo6["reason"], lo6["suspended_reason"],
                          lo6["suspended_until"], lo6["active"]),
                         ("::1", "eligible", None, None, None, 0))
        # ::1 is on the host; nothing has been tried yet
        self.assertEqual((lo6["present"], lo6["last_failure"], lo6["last_success"]),
                         (True, None, None))
        self.assertEqual(lo6["counters"], {
            "selected": 0, "successes": 0, "suspensions": 0,
            "failures": {"unplumbed": 0, "proxy_unhealthy": 0, "ports_exhausted": 0}})

    @sockpool_only
    def test_metrics_pass_promtool(self):
        """promtool (Debian package prometheus) lints names, types, HELP and
        suffixes: it must find nothing, also with a suspended source and
        traffic behind the counters."""
        promtool = shutil.which("promtool")
        self.assertIsNotNone(promtool, "promtool missing: install the prometheus package")
        proxy = self.start()
        web = self.start_http()
        s, _ = socks_open(proxy.addr, *web.addr)
        s.close()
        self.assertEqual(self.http("POST", "/sources/lo6/suspend?duration=1m")[0], 200)
        status, _, body = self.http("GET", "/metrics")
        self.assertEqual(status, 200)
        p = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                           text=True, timeout=30)
        self.assertEqual((p.returncode, p.stdout, p.stderr), (0, "", ""), body[:2000])

    @sockpool_only
    def test_reloads_are_counted(self):
        proxy = self.start()
        fam = self.metrics()
        boot = sample(fam, "sockpool_last_reload_success_timestamp_seconds")
        mark = proxy.mark()
        time.sleep(1.1)  # the timestamp has whole-second resolution
        proxy.send_signal(signal.SIGHUP)
        proxy.wait_log(lambda l: l.startswith("INFO server: reloaded"), 5, mark)
        fam = self.metrics()
        self.assertEqual(sample(fam, "sockpool_reloads_total", result="success"), 1)
        self.assertEqual(sample(fam, "sockpool_reloads_total", result="failure"), 0)
        after = sample(fam, "sockpool_last_reload_success_timestamp_seconds")
        self.assertGreater(after, boot)
        with open(proxy.conf_path, "a") as f:
            f.write("\n[nonsense]\n")
        mark = proxy.mark()
        proxy.send_signal(signal.SIGHUP)
        proxy.wait_log(lambda l: "reload rejected" in l, 5, mark)
        fam = self.metrics()
        self.assertEqual(sample(fam, "sockpool_reloads_total", result="success"), 1)
        self.assertEqual(sample(fam, "sockpool_reloads_total", result="failure"), 1)
        self.assertEqual(sample(fam, "sockpool_last_reload_success_timestamp_seconds"), after)

    @sockpool_only
    def test_healthz_follows_suspension_and_its_expiry(self):
        proxy = self.start(sections=ONE_SOURCE)
        self.assertEqual(self.http("GET", "/healthz")[::2], (200, "ok\n"))
        mark = proxy.mark()
        t0 = time.time()
        status, _, body = self.http("POST", "/sources/lo4/suspend?duration=1s")
        self.assertEqual(status, 200, body)
        doc = json.loads(body)
        self.assertEqual((doc["name"], doc["state"], doc["reason"]), ("lo4", "suspended", "manual"))
        until = parse_rfc3339(doc["suspended_until"])
        self.assertGreater(until, t0 + 0.5)
        self.assertLess(until, time.time() + 1.5)
        proxy.wait_log(lambda l: l.startswith("WARN ") and "suspended" in l and "lo4" in l,
                       2, mark)

        status, _, body = self.http("GET", "/healthz")
        self.assertEqual((status, body), (503, "no eligible source in pool main\n"))
        fam = self.metrics()
        self.assertEqual(sample(fam, "sockpool_source_state", source="lo4", reason="manual"), 0)
        self.assertAlmostEqual(
            sample(fam, "sockpool_source_suspended_until_seconds", source="lo4"), until, delta=0.01)
        self.assertEqual(sample(fam, "sockpool_source_suspensions_total", source="lo4"), 1)
        self.assertEqual(sample(fam, "sockpool_pool_eligible_sources", pool="main"), 0)
        self.assertEqual(self.source_of(self.status_json(), "lo4")["state"], "suspended")

        wait_until(lambda: self.http("GET", "/healthz")[0] == 200, 5, 0.05,
                   "/healthz to return 200 after the 1s suspension")
        self.assertGreaterEqual(time.time(), until - 0.05, "healthy before the suspension ended")
        lo4 = self.source_of(self.status_json(), "lo4")
        self.assertEqual((lo4["state"], lo4["suspended_until"]), ("eligible", None))

    @sockpool_only
    def test_resume_then_resume_again_conflicts(self):
        proxy = self.start(sections=ONE_SOURCE)
        self.assertEqual(self.http("POST", "/sources/lo4/suspend?duration=5m")[0], 200)
        self.assertEqual(self.http("GET", "/healthz")[0], 503)
        mark = proxy.mark()
        status, _, body = self.http("POST", "/sources/lo4/resume")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["state"], "eligible")
        proxy.wait_log(lambda l: l.startswith("INFO ") and "resumed" in l and "lo4" in l, 2, mark)
        self.assertEqual(self.http("GET", "/healthz")[0], 200)
        status, _, body = self.http("POST", "/sources/lo4/resume")
        self.assertEqual(status, 409, body)
        self.assertIn("not suspended", json.loads(body)["error"])
        # Suspending twice just moves the end; it counts one suspension.
        self.assertEqual(self.http("POST", "/sources/lo4/suspend?duration=5m")[0], 200)
        status, _, body = self.http("POST", "/sources/lo4/suspend?duration=10m")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["counters"]["suspensions"], 2)

    @sockpool_only
    def test_suspend_rejects_bad_requests(self):
        proxy = self.start()
        for query, why in (("", "missing"), ("?duration=", "empty"), ("?duration=0", "zero"),
                           ("?duration=0s", "zero"), ("?duration=5x", "bad unit"),
                           ("?duration=-5m", "negative"), ("?other=5m", "missing")):
            status, headers, body = self.http("POST", "/sources/lo4/suspend" + query)
            self.assertEqual(status, 400, "%s (%s): %s" % (query, why, body))
            self.assertIn("duration", json.loads(body)["error"])
        status, _, body = self.http("POST", "/sources/nosuch/suspend?duration=5m")
        self.assertEqual(status, 404, body)
        self.assertEqual(self.http("POST", "/sources/nosuch/resume")[0], 404)
        # A decoded %0A in the path must not start a forged log line.
        self.assertEqual(self.http("POST", "/sources/x%0AWARN%20forged/resume")[0], 404)
        wait_until(lambda: any("/resume" in l and "x?WARN" in l for l in proxy.log()), 5,
                   what="the request log line")
        self.assertFalse([l for l in proxy.log() if l.startswith("WARN forged")])
        self.assertEqual(self.status_json()["pools"][0]["eligible"], 2, "a bad request changed state")

    @sockpool_only
    def test_unknown_paths_and_methods(self):
        self.start()
        for path in ("/", "/nope", "/metrics/", "/sources/lo4", "/sources//suspend",
                     "/sources/lo4/explode", "/sources/lo4/suspend/now"):
            self.assertEqual(self.http("GET", path)[0], 404, path)
        for method in ("POST", "PUT", "DELETE"):
            for path in ("/metrics", "/status", "/healthz"):
                status, headers, _ = self.http(method, path)
                self.assertEqual(status, 405, "%s %s" % (method, path))
                self.assertIn("GET", headers.get("allow", ""))
        for method in ("GET", "PUT"):
            status, headers, _ = self.http(method, "/sources/lo4/resume")
            self.assertEqual(status, 405, method)
            self.assertEqual(headers.get("allow"), "POST")
        status, headers, body = self.http("HEAD", "/healthz")
        self.assertEqual((status, body), (200, ""))

    @sockpool_only
    def test_request_bodies_are_ignored(self):
        self.start(sections=ONE_SOURCE)
        status, _, body = self.http("POST", "/sources/lo4/suspend?duration=5m",
                                    body=b"x" * (1 << 20),
                                    headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(status, 200, body)
        self.assertEqual(self.http("GET", "/healthz")[0], 503)

    @sockpool_only
    def test_token_required_when_set(self):
        token = "s3cret-T0ken"
        proxy = self.start(sections=ONE_SOURCE, admin_token=token)
        path = "/sources/lo4/suspend?duration=5m"
        status, headers, body = self.http("POST", path)
        self.assertEqual(status, 401, body)
        self.assertTrue(headers.get("www-authenticate", "").startswith("Bearer"))
        for bad in ("Bearer wrong", "Bearer " + token[:-1], "Bearer " + token + "x",
                    "Basic " + token, token, "Bearer"):
            self.assertEqual(self.http("POST", path, {"Authorization": bad})[0], 401, bad)
        self.assertEqual(self.http("GET", "/healthz")[0], 200, "a refused POST changed state")
        status, _, body = self.http("POST", path, {"Authorization": "Bearer " + token})
        self.assertEqual(status, 200, body)
        self.assertEqual(self.http("GET", "/healthz")[0], 503)
        self.assertEqual(self.http("POST", "/sources/lo4/resume",
                                   {"Authorization": "bearer  %s " % token})[0], 200)
        # GETs need no token.
        self.assertEqual(self.http("GET", "/metrics")[0], 200)
        self.assertEqual(self.http("GET", "/status")[0], 200)
        self.assertFalse([l for l in proxy.log() if token in l], "the token was logged")

    @sockpool_only
    def test_stop_with_an_admin_connection_open(self):
        proxy = self.start()
        idle = socket.create_connection(self.admin, timeout=5)
        self.addCleanup(idle.close)
        busy = socket.create_connection(self.admin, timeout=5)
        self.addCleanup(busy.close)
        busy.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        self.assertEqual(self.http("GET", "/healthz")[0], 200)
        mark = proxy.mark()
        proxy.stop()  # exit 0 means the loop closed with every handle gone
        self.assertTrue(any(l.startswith("INFO admin: stopped") for l in proxy.log()[mark:]))


class NotLoopback(NetnsCase):
    """Without admin_token, POSTs from an address that is not loopback are refused."""

    ADDRS = ("192.0.2.10",)

    def test_post_refused_off_loopback_without_token(self):
        proxy = self.start_proxy(make_config(listen=SOCKS_LISTEN, sections=ONE_SOURCE,
                                             admin_listen="0.0.0.0:0"))
        line = [l for l in proxy.log() if l.startswith("INFO admin: listening ")][0]
        port = parse_hostport(re.search(r"\baddr=(\S+)", line).group(1))[1]

        def post(source, path):
            s = socket.socket()
            s.settimeout(10)
            try:
                s.bind((source, 0))
                s.connect((source, port))
                s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                          b"Connection: close\r\n\r\n" % path.encode())
                data, _ = read_until_close(s, 10)
            finally:
                s.close()
            return int(data.split(b" ", 2)[1])

        self.assertEqual(post("192.0.2.10", "/sources/lo4/suspend?duration=5m"), 403)
        self.assertEqual(post("192.0.2.10", "/sources/nosuch/suspend?duration=5m"), 403,
                         "an unauthorised caller learns whether a source exists")
        self.assertEqual(post("127.0.0.1", "/sources/lo4/suspend?duration=5m"), 200)
        proxy.wait_log(lambda l: l.startswith("WARN admin:") and "403" in l)


if __name__ == "__main__":
    main()
