"""Unplumbed sources in a namespace: suspension, retry before any byte is
relayed, WARN/INFO logs, thresholds, recovery, and a pool with no source."""

import socket
import threading
import time

from harness import (CMD_CONNECT, EXHAUSTED, NetnsCase, RecordServer, connect_to,
                     fetch_peer_line, log_matcher, main, make_config, negotiate, quick_connect,
                     read_reply, request, resumed, suspended)

DEST4 = "192.0.2.200"


def source(name, address, trigger=None, duration=None):
    text = '[source "%s"]\naddress = %s\n' % (name, address)
    if trigger:
        text += "suspend_when_unplumbed.trigger = %s\n" % trigger
    if duration:
        text += "suspend_when_unplumbed.duration = %s\n" % duration
    return text + "\n"


class Suspension(NetnsCase):
    ADDRS = ("192.0.2.10", "192.0.2.11", "192.0.2.12", DEST4)

    def requests(self, proxy, dest, n):
        """n sequential CONNECTs: (non-zero reply codes, Counter of peers seen)."""
        req = request(CMD_CONNECT, *dest)
        start = len(self.record.peers)
        bad = []
        for _ in range(n):
            rep = quick_connect(proxy.addr, req).rep
            if rep:
                bad.append(rep)
        self.record.wait_connections(start + n - len(bad))
        return bad, self.record.counts(start)

    def test_resume_when_plumbed_ends_the_suspension_when_the_address_is_back(self):
        proxy = self.start_proxy(make_config(sections=(
            "[defaults]\nsuspend_when_unplumbed.duration = 10m\n\n" +
            source("ip-1", "192.0.2.10") +
            source("ip-2", "192.0.2.11").rstrip("\n") + "\nresume_when_plumbed = yes\n\n" +
            source("ip-3", "192.0.2.12") + '[pool "main"]\nsource = ip-1, ip-2, ip-3\n')))
        self.record = self.start_server(RecordServer, DEST4)
        self.ns.remove("192.0.2.11")
        self.ns.remove("192.0.2.12")
        bad, seen = self.requests(proxy, self.record.addr, 6)
        self.assertEqual((bad, seen["192.0.2.11"], seen["192.0.2.12"]), ([], 0, 0))
        proxy.wait_log(suspended("ip-2"), 2)
        proxy.wait_log(suspended("ip-3"), 2)
        mark = proxy.mark()
        # Back on the host: ip-2 watches for it, ip-3 waits its 10 minutes.
        self.ns.add("192.0.2.11")
        self.ns.add("192.0.2.12")
        proxy.wait_log(resumed("ip-2"), 3, mark)
        bad, seen = self.requests(proxy, self.record.addr, 10)
        self.assertEqual(bad, [])
        self.assertEqual((seen["192.0.2.10"], seen["192.0.2.11"], seen["192.0.2.12"]), (5, 5, 0))
        self.assertEqual(proxy.count_log(resumed("ip-3"), mark), 0)

    def test_refuse_closes_the_pool_listener_until_a_source_returns(self):
        proxy = self.start_proxy(make_config(
            sections=source("only", "192.0.2.11", duration="2s") +
            '[pool "main"]\nsource = only\n',
            on_pool_exhausted="refuse", connect_timeout="1s"))
        self.record = self.start_server(RecordServer, DEST4)
        self.ns.remove("192.0.2.11")
        mark = proxy.mark()
        self.assertEqual(quick_connect(proxy.addr, request(CMD_CONNECT, *self.record.addr)).rep, 1)
        proxy.wait_log(log_matcher("WARN", ("exhausted", "closed")), 2, mark)
        with self.assertRaises(ConnectionRefusedError):
            connect_to(proxy.addr).close()
        # The source comes back: after its 2s the listener reopens on its port.
        self.ns.add("192.0.2.11")
        proxy.wait_log(log_matcher("INFO", ("listening", "again")), 5, mark)
        _, peer = fetch_peer_line(proxy.addr, self.record.addr)
        self.assertEqual(peer[0], "192.0.2.11")

    def test_address_removed_mid_run_immediate(self):
        proxy = self.start_proxy(make_config(sections=(
            "[defaults]\nsuspend_when_unplumbed.trigger = immediate\n"
            "suspend_when_unplumbed.duration = 2s\n\n" +
            source("ip-1", "192.0.2.10") + source("ip-2", "192.0.2.11") +
            source("ip-3", "192.0.2.12") + '[pool "main"]\nsource = ip-1, ip-2, ip-3\n')))
        self.record = self.start_server(RecordServer, DEST4)
        bad, seen = self.requests(proxy, self.record.addr, 30)
        self.assertEqual((bad, dict(seen)), ([], {"192.0.2.10": 10, "192.0.2.11": 10,
                                                  "192.0.2.12": 10}))

        # Unplumb ip-2: nobody notices; one WARN; the others share its load.
        mark = proxy.mark()
        self.ns.remove("192.0.2.11")
        bad, seen = self.requests(proxy, self.record.addr, 30)
        self.assertEqual(bad, [], "client-visible failures after unplumbing")
        self.assertEqual(seen["192.0.2.11"], 0)
        self.assertLessEqual(abs(seen["192.0.2.10"] - seen["192.0.2.12"]), 1, seen)
        _, line = proxy.wait_log(suspended("ip-2"), 2)
        self.assertRegex(line, r"\baddress=\"?192\.0\.2\.11\b")
        self.assertRegex(line, r"\breason=\"?unplumbed\b")
        self.assertEqual(proxy.count_log(suspended("ip-2")), 1)
        self.assertEqual(proxy.count_log(suspended("ip-1")) + proxy.count_log(suspended("ip-3")),
                         0)

        # Plumb it again; after the 2s it resumes and takes its share again.
        self.ns.add("192.0.2.11")
        deadline = time.monotonic() + 6
        while not proxy.err.wait(resumed("ip-2"), 0.05, mark):
            self.assertLess(time.monotonic(), deadline, "no INFO resumed for ip-2 within 6s")
            self.assertEqual(self.requests(proxy, self.record.addr, 1)[0], [])
        bad, seen = self.requests(proxy, self.record.addr, 30)
        self.assertEqual(bad, [])
        self.assertGreaterEqual(seen["192.0.2.11"], 9, seen)
        self.assertEqual(proxy.count_log(suspended("ip-2")), 1)

        # Unplumb it for good: suspended, resumed after 2s, suspended again.
        mark = proxy.mark()
        self.ns.remove("192.0.2.11")
        bad, seen = self.requests(proxy, self.record.addr, 6)
        self.assertEqual((bad, seen["192.0.2.11"]), ([], 0))
        proxy.wait_log(suspended("ip-2"), 2, mark)
        mark = proxy.mark()
        deadline = time.monotonic() + 6
        while proxy.count_log(suspended("ip-2"), mark) == 0:
            self.assertLess(time.monotonic(), deadline, "not suspended again within 6s")
            bad, seen = self.requests(proxy, self.record.addr, 3)
            self.assertEqual((bad, seen["192.0.2.11"]), ([], 0))
            time.sleep(0.05)
        self.assertGreaterEqual(proxy.count_log(resumed("ip-2")), 2,
                                "the second suspension must have been cleared (INFO) first")

    def failover_proxy(self, trigger):
        """ip-u in tier 1 is tried first by every request and fails each time.

        It is an upstream proxy on a port where nothing listens: a missing
        address no longer reaches a trigger window at all (the start check
        and the address watch suspend it at once, test_health.py), and the
        proxy_unhealthy rule runs on the same rolling window."""
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        self.closed_port = closed.getsockname()[1]
        closed.close()
        proxy = self.start_proxy(make_config(sections=(
            '[source "ip-u"]\nsocks5_proxy_server = 127.0.0.1:%d\n'
            "suspend_when_proxy_unhealthy.trigger = %s\n"
            "suspend_when_proxy_unhealthy.duration = 30s\n\n" % (self.closed_port, trigger) +
            source("ip-ok", "192.0.2.10", "immediate", "30s") +
            '[pool "main"]\nstrategy = failover\nsource = ip-u priority=1\n'
            'source = ip-ok priority=2\n')))
        self.record = self.start_server(RecordServer, DEST4)
        return proxy

    def assert_not_suspended_yet(self, proxy):
        # Absence can only be checked after a grace period: sockpool logs the
        # WARN before it retries, so it would already be on its way.
        time.sleep(0.3)
        self.assertEqual(proxy.count_log(suspended("ip-u")), 0, proxy.tail())

    def test_threshold_3_in_2s_third_failure_suspends(self):
        proxy = self.failover_proxy("3/2s")
        for i in range(2):
            bad, seen = self.requests(proxy, self.record.addr, 1)
            self.assertEqual((bad, dict(seen)), ([], {"192.0.2.10": 1}))
        self.assert_not_suspended_yet(proxy)
        bad, seen = self.requests(proxy, self.record.addr, 1)
        self.assertEqual((bad, dict(seen)), ([], {"192.0.2.10": 1}))
        _, line = proxy.wait_log(suspended("ip-u"), 2)
        self.assertIn("proxy_unhealthy", line)
        self.assertIn("127.0.0.1:%d" % self.closed_port, line)
        self.requests(proxy, self.record.addr, 3)
        self.assertEqual(proxy.count_log(suspended("ip-u")), 1)

    def test_threshold_3_in_2s_failures_spread_wider_do_not_suspend(self):
        proxy = self.failover_proxy("3/2s")
        t0 = time.monotonic()
        for i in range(2):
            self.assertEqual(self.requests(proxy, self.record.addr, 1)[0], [])
        # The first two failures leave the 2s window before the next two.
        time.sleep(max(0, 2.3 - (time.monotonic() - t0)))
        for i in range(2):
            self.assertEqual(self.requests(proxy, self.record.addr, 1)[0], [])
        self.assert_not_suspended_yet(proxy)
        # A third failure inside the window now trips it.
        self.assertEqual(self.requests(proxy, self.record.addr, 1)[0], [])
        proxy.wait_log(suspended("ip-u"), 2)

    def single_source_proxy(self, duration, connect_timeout):
        proxy = self.start_proxy(make_config(
            connect_timeout=connect_timeout,
            sections=source("only", "192.0.2.11", "immediate", duration) +
            '[pool "main"]\nsource = only\n'))
        self.record = self.start_server(RecordServer, DEST4)
        return proxy

    def test_every_source_suspended_request_waits_for_return(self):
        proxy = self.single_source_proxy("1s", "5s")
        self.ns.remove("192.0.2.11")
        result = {}

        def client():
            t0 = time.monotonic()
            try:
                result["reply"], result["peer"] = fetch_peer_line(proxy.addr, self.record.addr)
            except Exception as e:
                result["error"] = e
            result["elapsed"] = time.monotonic() - t0
        t = threading.Thread(target=client, daemon=True)
        t.start()
        proxy.wait_log(suspended("only"), 3)
        self.ns.add("192.0.2.11")
        t.join(10)
        self.assertFalse(t.is_alive(), "request still pending after 10s")
        self.assertNotIn("error", result, "request failed: %r" % result.get("error"))
        self.assertEqual(result["peer"][0], "192.0.2.11")
        self.assertEqual((result["reply"].host, result["reply"].port), result["peer"])
        self.assertGreater(result["elapsed"], 0.7, "answered before the suspension ended")
        self.assertLess(result["elapsed"], 5, "waited longer than connect_timeout")

    def test_every_source_suspended_replies_01_within_connect_timeout(self):
        proxy = self.single_source_proxy("1s", "3s")
        self.ns.remove("192.0.2.11")
        s = connect_to(proxy.addr)
        self.addCleanup(s.close)
        t0 = time.monotonic()
        self.assertEqual(negotiate(s, request(CMD_CONNECT, *self.record.addr)), b"\x05\x00")
        reply = read_reply(s)
        elapsed = time.monotonic() - t0
        self.assertEqual(reply.raw[:4], b"\x05\x01\x00\x01", repr(reply))
        self.assertLess(elapsed, 3 + 1.5, "took longer than connect_timeout")
        self.assertEqual(self.record.connections, 0)
        proxy.wait_log(EXHAUSTED, 2)

    def test_suspension_longer_than_connect_timeout_replies_01_at_once(self):
        proxy = self.single_source_proxy("30s", "3s")
        self.ns.remove("192.0.2.11")
        self.assertEqual(self.requests(proxy, self.record.addr, 1)[0], [1])
        proxy.wait_log(suspended("only"), 2)
        t0 = time.monotonic()
        self.assertEqual(self.requests(proxy, self.record.addr, 1)[0], [1])
        self.assertLess(time.monotonic() - t0, 1.0,
                        "expiry beyond connect_timeout: reply 0x01 without waiting")
        proxy.wait_log(log_matcher("WARN", ("exhausted", "main")), 2)
        self.assertEqual(self.record.connections, 0)


if __name__ == "__main__":
    main()
