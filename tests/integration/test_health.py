"""Knowing before traffic does (SPEC 4.2.1): the address watch suspends a
source whose address goes and resumes it when it comes back, missing
addresses are found at start and by --check, a tentative IPv6 address is not
used until DAD ends, an upstream proxy is health-checked, and two hosts
follow a floating address between them. Namespace tests make their own
TEST-NET addresses; the upstream test stays on loopback."""

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from harness import (CMD_CONNECT, SOCKPOOL_BIN, NetnsCase, Netns, ProxyCase, RecordServer,
                     log_matcher, main, make_config, quick_connect, request, resumed, run,
                     suspended)

DEST4 = "192.0.2.200"
DEST6 = "2001:db8::200"
FAST = 0.1  # seconds: how soon sockpool must follow an address event


def source(name, address, *extra):
    return '[source "%s"]\naddress = %s\n%s\n' % (name, address, "".join(e + "\n" for e in extra))


def ip(ns, *args):
    """ip(8) in the namespace, straight (not through netns.sh): its ack comes
    after the kernel has sent the address event, so timing starts there."""
    run(["ip", "-n", ns.name, *args])


def requests(proxy, record, n):
    """n sequential CONNECTs: (non-zero reply codes, Counter of sources seen)."""
    req = request(CMD_CONNECT, *record.addr)
    start = len(record.peers)
    bad = []
    for _ in range(n):
        rep = quick_connect(proxy.addr, req).rep
        if rep:
            bad.append(rep)
    record.wait_connections(start + n - len(bad))
    return bad, record.counts(start)


class AddressWatch(NetnsCase):
    ADDRS = ("192.0.2.10", "192.0.2.11", DEST4)

    def proxy(self, *sources, pool="ip-1, ip-2", **server):
        return self.start_proxy(make_config(sections="".join(sources) +
                                            '[pool "main"]\nsource = %s\n' % pool, **server))

    def wait_within(self, proxy, match, limit, start):
        """The line matching `match` after `start`; it must come within `limit`."""
        t0 = time.monotonic()
        _, line = proxy.wait_log(match, 5, start)
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, limit, "took %.0f ms: %s" % (elapsed * 1000, line))
        return line

    def test_removed_address_suspends_at_once_without_a_request(self):
        proxy = self.proxy(source("ip-1", "192.0.2.10"),
                           source("ip-2", "192.0.2.11", "suspend_when_unplumbed.trigger = 3/1m",
                                  "suspend_when_unplumbed.duration = 7m"))
        record = self.start_server(RecordServer, DEST4)
        mark = proxy.mark()
        ip(self.ns, "addr", "del", "192.0.2.11/32", "dev", "lo")
        line = self.wait_within(proxy, suspended("ip-2"), FAST, mark)
        # the watch does not wait for the 3/1m window: the address is gone
        self.assertRegex(line, r"\breason=\"?unplumbed\b")
        self.assertRegex(line, r"\bduration=\"?7m\b")
        self.assertRegex(line, r"\baddress=\"?192\.0\.2\.11\b")
        self.assertEqual(record.connections, 0, "a request was sent to find out")
        bad, seen = requests(proxy, record, 10)
        self.assertEqual((bad, dict(seen)), ([], {"192.0.2.10": 10}))
        self.assertEqual(proxy.count_log(suspended("ip-2")), 1)

    def test_readded_address_resumes_at_once_with_resume_when_plumbed(self):
        proxy = self.proxy(source("ip-1", "192.0.2.10"),
                           source("ip-2", "192.0.2.11", "resume_when_plumbed = yes",
                                  "suspend_when_unplumbed.duration = 10m"))
        record = self.start_server(RecordServer, DEST4)
        mark = proxy.mark()
        ip(self.ns, "addr", "del", "192.0.2.11/32", "dev", "lo")
        self.wait_within(proxy, suspended("ip-2"), FAST, mark)
        mark = proxy.mark()
        ip(self.ns, "addr", "add", "192.0.2.11/32", "dev", "lo")
        line = self.wait_within(proxy, resumed("ip-2"), FAST, mark)
        self.assertRegex(line, r"\bby=\"?resume\b")
        bad, seen = requests(proxy, record, 10)
        self.assertEqual((bad, dict(seen)), ([], {"192.0.2.10": 5, "192.0.2.11": 5}))

    def test_readded_address_waits_for_the_duration_without_resume_when_plumbed(self):
        proxy = self.proxy(source("ip-1", "192.0.2.10"),
                           source("ip-2", "192.0.2.11", "resume_when_plumbed = no",
                                  "suspend_when_unplumbed.duration = 2s"))
        record = self.start_server(RecordServer, DEST4)
        mark = proxy.mark()
        t0 = time.monotonic()
        ip(self.ns, "addr", "del", "192.0.2.11/32", "dev", "lo")
        self.wait_within(proxy, suspended("ip-2"), FAST, mark)
        ip(self.ns, "addr", "add", "192.0.2.11/32", "dev", "lo")
        # the address is back, yet ip-2 sits out its 2s
        proxy.wait_log(log_matcher("INFO", ("address on the host",), {"source": "ip-2"}), 2, mark)
        bad, seen = requests(proxy, record, 4)
        self.assertEqual((bad, seen["192.0.2.11"]), ([], 0))
        _, line = proxy.wait_log(resumed("ip-2"), 5, mark)
        self.assertGreater(time.monotonic() - t0, 1.8, "resumed before its duration")
        self.assertRegex(line, r"\bby=\"?expiry\b")
        bad, seen = requests(proxy, record, 4)
        self.assertEqual((bad, seen["192.0.2.11"]), ([], 2))

    def test_missing_at_start_is_in_one_warn_and_never_tried(self):
        proxy = self.proxy(source("ip-1", "192.0.2.10"), source("ip-3", "192.0.2.12"),
                           source("ip-4", "192.0.2.13"), pool="ip-1, ip-3, ip-4",
                           log_level="debug")
        record = self.start_server(RecordServer, DEST4)
        start = [l for l in proxy.log() if l.startswith("WARN health: start:")]
        self.assertEqual(len(start), 1, proxy.tail())
        self.assertIn("count=2", start[0])
        self.assertIn("ip-3=192.0.2.12", start[0])
        self.assertIn("ip-4=192.0.2.13", start[0])
        self.assertNotIn("ip-1", start[0])
        mark = proxy.mark()
        bad, seen = requests(proxy, record, 9)
        self.assertEqual((bad, dict(seen)), ([], {"192.0.2.10": 9}))
        tried = log_matcher("DEBUG", ("source failure",))
        self.assertEqual(proxy.count_log(tried, mark), 0, "a missing source was tried")

    def test_reload_checks_the_addresses_again(self):
        proxy = self.proxy(source("ip-1", "192.0.2.10"), source("ip-2", "192.0.2.11"))
        with open(proxy.conf_path) as f:
            text = f.read()
        with open(proxy.conf_path, "w") as f:
            f.write(text.replace("source = ip-1, ip-2", "source = ip-1, ip-2, ip-5") +
                    "\n" + source("ip-5", "192.0.2.15"))
        mark = proxy.mark()
        proxy.send_signal(signal.SIGHUP)
        _, line = proxy.wait_log(lambda l: l.startswith("WARN health: reload:"), 5, mark)
        self.assertIn("ip-5=192.0.2.15", line)
        self.assertNotIn("ip-2", line)

    def test_check_lists_a_missing_address_as_a_warning(self):
        d = tempfile.mkdtemp(prefix="sockpool-it-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "c.ini")
        with open(path, "w") as f:
            f.write(make_config(sections=source("ip-1", "192.0.2.10") +
                                source("gone", "192.0.2.77") + '[pool "main"]\nsource = ip-1, gone\n'))
        p = subprocess.run([SOCKPOOL_BIN, "--check", "-c", path], capture_output=True, text=True,
                           timeout=10)
        self.assertEqual(p.returncode, 0, p.stderr)
        warn = [l for l in p.stderr.splitlines() if "warning" in l and "192.0.2.77" in l]
        self.assertEqual(len(warn), 1, p.stderr)
        self.assertIn('[source "gone"]', warn[0])
        self.assertIn("not on this host", warn[0])
        self.assertNotIn("192.0.2.10", p.stderr)
        p = subprocess.run([SOCKPOOL_BIN, "--check", "--strict", "-c", path], capture_output=True,
                           text=True, timeout=10)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("--strict", p.stderr)

    def test_lost_events_are_answered_by_a_dump(self):
        """sockpool is stopped (SIGSTOP) while thousands of address events
        overflow its netlink socket and ip-2's address goes: on SIGCONT it
        reads ENOBUFS, dumps the table and still suspends ip-2."""
        proxy = self.proxy(source("ip-1", "192.0.2.10"), source("ip-2", "192.0.2.11"))
        record = self.start_server(RecordServer, DEST4)
        batch = os.path.join(tempfile.mkdtemp(prefix="sockpool-it-"), "batch")
        self.addCleanup(shutil.rmtree, os.path.dirname(batch), True)
        with open(batch, "w") as f:
            for i in range(6000):  # 2001:db8:f::/112, far from every source
                f.write("addr add 2001:db8:f::%x/128 dev lo nodad\n" % (i + 1))
        mark = proxy.mark()
        proxy.send_signal(signal.SIGSTOP)
        try:
            run(["ip", "-n", self.ns.name, "-batch", batch], timeout=60)
            ip(self.ns, "addr", "del", "192.0.2.11/32", "dev", "lo")
        finally:
            proxy.send_signal(signal.SIGCONT)
        proxy.wait_log(log_matcher("WARN", ("ENOBUFS", "resynchronising")), 10, mark)
        _, line = proxy.wait_log(suspended("ip-2"), 10, mark)
        self.assertRegex(line, r"\breason=\"?unplumbed\b")
        self.assertEqual(record.connections, 0)
        bad, seen = requests(proxy, record, 6)
        self.assertEqual((bad, dict(seen)), ([], {"192.0.2.10": 6}))

    def status(self, proxy):
        """/status sources by name (the proxy runs with admin_listen = 127.0.0.1:0)."""
        admin = [l for l in proxy.log() if l.startswith("INFO admin: listening")][0]
        host, port = admin.split("addr=")[1].split()[0].rsplit(":", 1)
        s = socket.create_connection((host, int(port)), timeout=5)
        s.sendall(b"GET /status HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        doc = json.loads(data.split(b"\r\n\r\n", 1)[1])
        return {x["name"]: x for x in doc["sources"]}

    def test_missing_address_is_suspended_again_when_its_time_is_up(self):
        proxy = self.proxy(source("ip-1", "192.0.2.10"),
                           source("ip-3", "192.0.2.12", "suspend_when_unplumbed.duration = 1s"),
                           pool="ip-1, ip-3", admin_listen="127.0.0.1:0")
        record = self.start_server(RecordServer, DEST4)
        mark = proxy.mark()
        # No requests around the expiry itself: one that lands in the same
        # instant may still pick ip-3 (and be retried on ip-1).
        proxy.wait_log(suspended("ip-3"), 5, mark)
        _, line = proxy.wait_log(resumed("ip-3"), 1, mark)
        self.assertRegex(line, r"\bby=\"?expiry\b")
        proxy.wait_log(log_matcher("INFO", ("address still not on the host",),
                                   {"source": "ip-3"}), 1, mark)
        bad, seen = requests(proxy, record, 4)
        self.assertEqual((bad, dict(seen)), ([], {"192.0.2.10": 4}))
        src = self.status(proxy)
        self.assertEqual(src["ip-3"]["counters"]["selected"], 0, "a request tried ip-3")
        self.assertEqual(src["ip-3"]["state"], "suspended")

    def test_status_says_whether_the_address_is_present(self):
        proxy = self.proxy(source("ip-1", "192.0.2.10"), source("ip-2", "192.0.2.11"),
                           admin_listen="127.0.0.1:0")

        def status():
            return self.status(proxy)
        src = status()
        self.assertEqual((src["ip-1"]["present"], src["ip-2"]["present"]), (True, True))
        mark = proxy.mark()
        ip(self.ns, "addr", "del", "192.0.2.11/32", "dev", "lo")
        proxy.wait_log(suspended("ip-2"), 2, mark)
        src = status()
        self.assertFalse(src["ip-2"]["present"])
        self.assertEqual(src["ip-2"]["suspended_reason"], "unplumbed")
        self.assertEqual(src["ip-2"]["last_failure"]["kind"], "unplumbed")
        self.assertEqual(src["ip-2"]["last_failure"]["error"], "Cannot assign requested address")
        self.assertTrue(src["ip-1"]["present"])


class ConnectFromALeavingAddress(NetnsCase):
    """Policy routing sends what leaves from the floating address into a veth
    where nobody answers ARP, so a connect from it hangs (about 3 s, then
    EHOSTUNREACH); from the host's own address the destination is local.
    When the floating address goes, the hanging connect must move to the
    other source at once, not after the ARP timeout."""

    VIP = "192.0.2.100"
    ADDRS = ("192.0.2.10", VIP, DEST4)

    def test_a_hanging_connect_moves_when_its_address_goes(self):
        ns = self.ns
        ip(ns, "link", "add", "sp-v0", "type", "veth", "peer", "name", "sp-v1")
        ip(ns, "link", "set", "sp-v0", "up")
        ip(ns, "link", "set", "sp-v1", "up")
        ip(ns, "route", "add", DEST4 + "/32", "dev", "sp-v0", "table", "100")
        ip(ns, "rule", "add", "pref", "10", "from", self.VIP, "lookup", "100")
        ip(ns, "rule", "add", "pref", "20", "lookup", "local")
        ip(ns, "rule", "del", "pref", "0")
        proxy = self.start_proxy(make_config(sections=(
            source("vip", self.VIP) + source("own", "192.0.2.10") +
            '[pool "main"]\nstrategy = failover\nsource = vip priority=1\n'
            "source = own priority=2\n"), connect_timeout="10s", log_level="debug"))
        record = self.start_server(RecordServer, DEST4)
        c = socket.create_connection(proxy.addr, timeout=10)
        self.addCleanup(c.close)
        c.sendall(b"\x05\x01\x00" + request(CMD_CONNECT, *record.addr))
        self.assertEqual(c.recv(2), b"\x05\x00")
        # the CONNECT from vip hangs: no reply within half a second
        r, _, _ = select.select([c], [], [], 0.5)
        self.assertEqual(r, [], "the connect from vip did not hang")
        self.assertEqual(record.connections, 0)
        mark = proxy.mark()
        ip(ns, "addr", "del", self.VIP + "/32", "dev", "lo")
        t0 = time.monotonic()
        r, _, _ = select.select([c], [], [], 5)
        elapsed = time.monotonic() - t0
        self.assertEqual(r, [c], "no reply within 5s")
        self.assertEqual(c.recv(2), b"\x05\x00", "the request failed")
        self.assertLess(elapsed, FAST * 3, "the connect waited %.0f ms" % (elapsed * 1000))
        record.wait_connections(1)
        self.assertEqual(dict(record.counts()), {"192.0.2.10": 1})
        proxy.wait_log(log_matcher("INFO", ("connects from the address moved",),
                                   {"count": "1"}), 1, mark)


class TentativeAddress(NetnsCase):
    """An IPv6 address on a veth that runs DAD (about a second) is tentative:
    bind() refuses it, so sockpool must not pick it before DAD ends."""

    ADDRS = ("2001:db8::10", DEST6)

    def test_tentative_address_is_not_used_until_dad_finishes(self):
        ns = self.ns
        ip(ns, "link", "add", "sp-v0", "type", "veth", "peer", "name", "sp-v1")
        ip(ns, "link", "set", "sp-v1", "up")
        ns.sysctl("net.ipv6.conf.sp-v0.accept_dad", "1")
        ns.sysctl("net.ipv6.conf.sp-v0.dad_transmits", "1")
        ns.sysctl("net.ipv6.neigh.sp-v0.retrans_time_ms", "1500")
        ip(ns, "link", "set", "sp-v0", "up")
        ip(ns, "-6", "addr", "add", "2001:db8::20/128", "dev", "sp-v0")
        state = run(["ip", "-n", ns.name, "-6", "addr", "show", "dev", "sp-v0"]).stdout
        self.assertRegex(state, r"2001:db8::20/128 .*tentative",
                         "the address should still be in DAD:\n" + state)
        proxy = self.start_proxy(make_config(sections=(
            source("v6a", "2001:db8::20", "resume_when_plumbed = yes") +
            source("v6b", "2001:db8::10") + '[pool "main"]\nsource = v6a, v6b\n')))
        record = self.start_server(RecordServer, DEST6)
        start = [l for l in proxy.log() if l.startswith("WARN health: start:")]
        self.assertEqual(len(start), 1, proxy.tail())
        self.assertIn("v6a=2001:db8::20", start[0])
        def tentative():
            # this address only: the link-local one runs its own DAD
            out = run(["ip", "-n", ns.name, "-6", "addr", "show", "dev", "sp-v0"]).stdout
            return any("2001:db8::20/" in l and "tentative" in l for l in out.splitlines())
        checked = 0
        deadline = time.monotonic() + 5
        while tentative():
            self.assertLess(time.monotonic(), deadline, "DAD did not finish within 5s")
            bad, seen = requests(proxy, record, 2)
            self.assertEqual(bad, [])
            if tentative():  # still in DAD after the requests: none may have used it
                self.assertEqual(seen["2001:db8::20"], 0, "a tentative address was used")
                checked += 1
        self.assertGreater(checked, 0, "DAD finished before any request was tried")
        proxy.wait_log(resumed("v6a"), 2)
        bad, seen = requests(proxy, record, 10)
        self.assertEqual((bad, dict(seen)), ([], {"2001:db8::20": 5, "2001:db8::10": 5}))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class UpstreamHealth(ProxyCase):
    """A second sockpool (with a password) is the upstream of `far`."""

    def upstream(self, port):
        return self.start_proxy(make_config(
            listen=("127.0.0.1:%d" % port,), auth="password",
            sections=('[source "lo4"]\naddress = 127.0.0.1\n\n[pool "main"]\nsource = lo4\n\n'
                      '[user "relay"]\npassword = secret\npool = main\n')))

    def test_stopped_upstream_is_suspended_before_any_request_and_resumed(self):
        port = free_port()
        up = self.upstream(port)
        front = self.start_proxy(make_config(sections=(
            '[source "far"]\nsocks5_proxy_server = 127.0.0.1:%d\n'
            "socks5_proxy_username = relay\nsocks5_proxy_password = secret\n"
            "health_check = 200ms\nresume_when_healthy = yes\n"
            "suspend_when_proxy_unhealthy.trigger = 2/5s\n"
            "suspend_when_proxy_unhealthy.duration = 10m\n\n"
            '[source "lo4"]\naddress = 127.0.0.1\n\n'
            '[pool "main"]\nstrategy = failover\nsource = far priority=1\n'
            "source = lo4 priority=2\n" % port)))
        record = self.start_server(RecordServer)
        # checks pass: far carries the traffic, through the upstream
        bad, seen = requests(front, record, 2)
        self.assertEqual(bad, [])
        self.assertEqual(front.count_log(suspended("far")), 0, front.tail())
        # the upstream stops: two failed checks (2/5s) suspend far, no request needed
        mark = front.mark()
        up.stop()
        _, line = front.wait_log(suspended("far"), 3, mark)
        self.assertRegex(line, r"\breason=\"?proxy_unhealthy\b")
        self.assertEqual(front.count_log(log_matcher("INFO", ("upstream check failed",)), mark),
                         1, "one INFO for the change, not one per check")
        # back on the same port: the next passing check ends the 10m suspension
        mark = front.mark()
        self.upstream(port)
        _, line = front.wait_log(resumed("far"), 3, mark)
        self.assertRegex(line, r"\bby=\"?resume\b")
        front.wait_log(log_matcher("INFO", ("upstream check passes again",)), 1, mark)
        bad, seen = requests(front, record, 3)
        self.assertEqual(bad, [])

    def test_without_resume_when_healthy_the_suspension_runs_its_course(self):
        port = free_port()
        front = self.start_proxy(make_config(sections=(
            '[source "far"]\nsocks5_proxy_server = 127.0.0.1:%d\n'
            "socks5_proxy_username = relay\nsocks5_proxy_password = secret\n"
            "health_check = 200ms\n"
            "suspend_when_proxy_unhealthy.duration = 10m\n\n"
            '[source "lo4"]\naddress = 127.0.0.1\n\n'
            '[pool "main"]\nsource = far, lo4\n' % port)))
        # nothing listens: the first check (at start) fails and suspends
        front.wait_log(suspended("far"), 3)
        mark = front.mark()
        self.upstream(port)
        front.wait_log(log_matcher("INFO", ("upstream check passes again",)), 3, mark)
        self.assertEqual(front.count_log(resumed("far"), mark), 0)


class FloatingAddress(ProxyCase):
    """keepalived in miniature: two hosts (namespaces), each with its own
    address and a sockpool whose pool holds the floating address first
    (failover) and its own address second. The address moves from A to B;
    both follow within 100 ms and no client request fails on either."""

    VIP = "192.0.2.100"

    def host(self, own, vip):
        ns = Netns((own, DEST4) + ((self.VIP,) if vip else ()))
        self.addCleanup(ns.delete)
        ns.enter()
        try:
            proxy = self.start_proxy(make_config(sections=(
                source("vip", self.VIP, "resume_when_plumbed = yes",
                       "suspend_when_unplumbed.duration = 10m") +
                source("own", own) +
                '[pool "main"]\nstrategy = failover\nsource = vip priority=1\n'
                "source = own priority=2\n"),
                # A relay from the address that left cannot hear its peer any
                # more: do not wait 30s for it at the end.
                shutdown_timeout="1s"))
            record = RecordServer(DEST4)
            self.addCleanup(record.close)
        finally:
            ns.leave()
        return ns, proxy, record

    def client(self, ns, proxy, record, stop, out):
        """Requests in a loop from inside `ns` until `stop` is set."""
        ns.enter()
        try:
            req = request(CMD_CONNECT, *record.addr)
            while not stop.is_set() and out["n"] < 20000:
                t0 = time.monotonic()
                try:
                    rep = quick_connect(proxy.addr, req, timeout=5).rep
                except OSError as e:
                    rep = repr(e)
                out["n"] += 1
                if rep:
                    out["bad"].append((t0, time.monotonic(), rep))
        finally:
            ns.leave()

    def test_floating_address_moves_from_a_to_b(self):
        a, pa, ra = self.host("192.0.2.1", vip=True)
        b, pb, rb = self.host("192.0.2.2", vip=False)
        self.assertEqual(len([l for l in pb.log() if l.startswith("WARN health: start:")]), 1)
        stop = threading.Event()
        outs = {"a": {"n": 0, "bad": []}, "b": {"n": 0, "bad": []}}
        threads = [threading.Thread(target=self.client, args=(ns, p, r, stop, outs[k]),
                                    daemon=True)
                   for k, ns, p, r in (("a", a, pa, ra), ("b", b, pb, rb))]
        for t in threads:
            t.start()
        self.addCleanup(stop.set)
        wait = time.monotonic() + 5
        while min(outs["a"]["n"], outs["b"]["n"]) < 20 and time.monotonic() < wait:
            time.sleep(0.01)
        self.assertEqual(ra.counts().keys(), {self.VIP})
        self.assertEqual(rb.counts().keys(), {"192.0.2.2"})
        # keepalived moves the address: off A, onto B
        ma, mb = pa.mark(), pb.mark()
        ip(a, "addr", "del", self.VIP + "/32", "dev", "lo")
        t_del = time.monotonic()
        pa.wait_log(suspended("vip"), 5, ma)
        self.assertLess(time.monotonic() - t_del, FAST, "A took too long")
        ip(b, "addr", "add", self.VIP + "/32", "dev", "lo")
        t_add = time.monotonic()
        pb.wait_log(resumed("vip"), 5, mb)
        self.assertLess(time.monotonic() - t_add, FAST, "B took too long")
        na, nb = len(ra.peers), len(rb.peers)
        wait = time.monotonic() + 5
        while (len(ra.peers) < na + 20 or len(rb.peers) < nb + 20) and time.monotonic() < wait:
            time.sleep(0.01)
        stop.set()
        for t in threads:
            t.join(10)
        # No client request fails on either host, not even the one A may have
        # had connecting from the address when it left (it moves to A's own
        # address at once: ConnectFromALeavingAddress).
        self.assertEqual((outs["a"]["bad"], outs["b"]["bad"]), ([], []),
                         "client requests failed during the move")
        # after the move each host egresses as it should
        self.assertEqual(set(ra.counts(na + 5).keys()), {"192.0.2.1"})
        self.assertEqual(set(rb.counts(nb + 5).keys()), {self.VIP})


if __name__ == "__main__":
    main()
