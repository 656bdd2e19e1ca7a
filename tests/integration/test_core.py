"""The proxy core in a namespace: pool changes as events (admin resume
reopens a `refuse` listener at once), the prefix route probe off the loop,
prefix_pick = hash on the pool's hash_key, the BIND pool rule, a source that
vanishes between bind and connect, and stall_timeout."""

import http.client
import re
import select
import signal
import socket
import threading
import time

from harness import (CMD_CONNECT, EchoServer, NetnsCase, RecordServer, SocksError, TCPServer,
                     connect_to, fetch_peer_line, log_matcher, main, make_config,
                     parse_hostport, quick_connect, request, run, socks_open, suspended)

DEST4 = "192.0.2.200"
DEST6 = "2001:db8::200"
DEST6_OTHER = "2001:db8::201"


def source(name, address, duration=None):
    text = '[source "%s"]\naddress = %s\n' % (name, address)
    if duration:
        text += "suspend_when_unplumbed.duration = %s\n" % duration
    return text + "\n"


class NoReadServer(TCPServer):
    """Accepts and never reads, until the test ends."""

    def handle(self, conn, peer):
        self._stop.wait(60)


def admin_addr(proxy):
    line = [l for l in proxy.log() if l.startswith("INFO admin: listening ")][0]
    return parse_hostport(re.search(r"\baddr=(\S+)", line).group(1))


def admin_post(addr, path):
    conn = http.client.HTTPConnection(*addr, timeout=10)
    try:
        conn.request("POST", path)
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


class Core(NetnsCase):
    ADDRS = ("192.0.2.10", "192.0.2.11", "192.0.2.12", DEST4, DEST6, DEST6_OTHER)

    def test_admin_resume_reopens_a_refuse_listener_at_once(self):
        proxy = self.start_proxy(make_config(
            sections=source("only", "192.0.2.11", duration="1h") +
            '[pool "main"]\nsource = only\n',
            on_pool_exhausted="refuse", connect_timeout="1s", admin_listen="127.0.0.1:0"))
        record = self.start_server(RecordServer, DEST4)
        self.ns.remove("192.0.2.11")
        mark = proxy.mark()
        self.assertEqual(quick_connect(proxy.addr, request(CMD_CONNECT, *record.addr)).rep, 1)
        proxy.wait_log(log_matcher("WARN", ("exhausted", "closed")), 2, mark)
        with self.assertRaises(ConnectionRefusedError):
            connect_to(proxy.addr).close()
        self.ns.add("192.0.2.11")
        status, body = admin_post(admin_addr(proxy), "/sources/only/resume")
        self.assertEqual(status, 200, body)
        t0 = time.monotonic()
        while True:
            try:
                connect_to(proxy.addr).close()
                break
            except ConnectionRefusedError:
                self.assertLess(time.monotonic() - t0, 1.0, "listener still closed")
                time.sleep(0.002)
        self.assertLess(time.monotonic() - t0, 0.1, "listener reopened too late")
        _, peer = fetch_peer_line(proxy.addr, record.addr)
        self.assertEqual(peer[0], "192.0.2.11")

    def test_sighup_prefix_probe_does_not_delay_a_running_relay(self):
        # A route that is not `local`: SYNs from the prefix go nowhere, so the
        # probe's connect waits its full second.
        run(["ip", "-n", self.ns.name, "-6", "route", "add", "2001:db8:7::/64", "dev", "lo"])
        proxy = self.start_proxy(make_config(sections=(
            '[source "lo4"]\naddress = 127.0.0.1\n\n'
            '[source "slow"]\nprefix = 2001:db8:7::/64\n\n'
            '[pool "main"]\nsource = lo4\nsource = slow weight=0\n')))
        unrouted = log_matcher("WARN", ("not", "routed"), {"source": "slow"})
        proxy.wait_log(unrouted, 5)
        echo = self.start_server(EchoServer, "127.0.0.1")
        s, _ = self.open(proxy.addr, *echo.addr)
        self.assertEcho(s)
        mark = proxy.mark()
        t_sig = time.monotonic()
        proxy.send_signal(signal.SIGHUP)
        worst, t_warn = 0.0, None
        while time.monotonic() - t_sig < 1.6 or t_warn is None:
            self.assertLess(time.monotonic() - t_sig, 10, "no probe result after SIGHUP")
            t = time.monotonic()
            self.assertEcho(s, b"ping %f\n" % t)
            worst = max(worst, time.monotonic() - t)
            if t_warn is None and proxy.count_log(unrouted, mark):
                t_warn = time.monotonic()
            time.sleep(0.005)
        self.assertGreater(t_warn - t_sig, 0.8, "the probe did not block: the test proves nothing")
        self.assertLess(worst, 0.05, "an echo took %.0f ms during the reload" % (worst * 1000))

    def test_prefix_hash_on_destination_ignores_the_port(self):
        run(["ip", "-n", self.ns.name, "-6", "route", "add", "local", "2001:db8:1::/64",
             "dev", "lo"])
        proxy = self.start_proxy(make_config(sections=(
            '[source "net"]\nprefix = 2001:db8:1::/64\nprefix_pick = hash\n\n'
            '[pool "main"]\nstrategy = hash\nhash_key = destination\nsource = net\n')))
        proxy.wait_log(log_matcher("INFO", ("routed", "locally"), {"source": "net"}), 5)
        seen = set()
        for _ in range(3):
            rec = self.start_server(RecordServer, DEST6)
            for _ in range(2):
                _, peer = fetch_peer_line(proxy.addr, rec.addr)
                seen.add(peer[0])
        self.assertEqual(len(seen), 1, "one destination address, several sources: %r" % seen)
        self.assertTrue(seen.copy().pop().startswith("2001:db8:1:0:"), seen)
        other = self.start_server(RecordServer, DEST6_OTHER)
        _, peer = fetch_peer_line(proxy.addr, other.addr)
        self.assertNotIn(peer[0], seen, "another destination should hash elsewhere")

    def test_user_without_pool_binds_only_the_pool_that_applies(self):
        proxy = self.start_proxy(make_config(
            listen=("127.0.0.1:0 pool=pa", "127.0.0.1:0"), auth="password", default_pool="pb",
            sections=(source("a", "192.0.2.10") + source("b", "192.0.2.11") +
                      '[pool "pa"]\nsource = a\n\n[pool "pb"]\nsource = b\n\n'
                      '[user "dave"]\npassword = dave-pw\n')))
        record = self.start_server(RecordServer, DEST4)
        listener_pa, listener_default = proxy.listeners
        for addr, mine, other in ((listener_pa, "192.0.2.10", "192.0.2.11"),
                                  (listener_default, "192.0.2.11", "192.0.2.10")):
            _, peer = fetch_peer_line(addr, record.addr, user="dave", password="dave-pw",
                                      bind=(mine, 0))
            self.assertEqual(peer[0], mine)
            with self.assertRaises(SocksError) as cm:
                socks_open(addr, *record.addr, user="dave", password="dave-pw",
                           bind=(other, 0))[0].close()
            self.assertEqual(cm.exception.reply.rep, 2, "BIND outside the pool must be 0x02")

    def test_flapping_sources_cause_no_client_visible_failure(self):
        proxy = self.start_proxy(make_config(sections=(
            source("ip-1", "192.0.2.10") + source("ip-2", "192.0.2.11", "100ms") +
            source("ip-3", "192.0.2.12", "100ms") +
            '[pool "main"]\nsource = ip-1, ip-2, ip-3\n')))
        record = self.start_server(RecordServer, DEST4)
        done = threading.Event()
        errors = []

        def flap():
            try:
                for _ in range(40):
                    self.ns.remove("192.0.2.11", "192.0.2.12")
                    time.sleep(0.025)
                    self.ns.add("192.0.2.11", "192.0.2.12")
                    time.sleep(0.025)
            except Exception as e:
                errors.append(repr(e))
            finally:
                done.set()

        t = threading.Thread(target=flap, daemon=True)
        req = request(CMD_CONNECT, *record.addr)
        bad, n = [], 0
        t.start()
        self.addCleanup(t.join, 30)
        while not done.is_set() and n < 20000:
            rep = quick_connect(proxy.addr, req).rep
            n += 1
            if rep:
                bad.append(rep)
        self.assertEqual(errors, [])
        self.assertEqual(bad, [], "%d of %d requests failed" % (len(bad), n))
        self.assertGreater(proxy.count_log(suspended("ip-2")) +
                           proxy.count_log(suspended("ip-3")), 0, "no source ever failed")

    def test_stalled_destination_is_reset_after_stall_timeout(self):
        proxy = self.start_proxy(make_config(stall_timeout="1s"))
        sink = self.start_server(NoReadServer, "127.0.0.1")
        s, _ = self.open(proxy.addr, *sink.addr)
        s.setblocking(False)
        chunk, sent, last = b"x" * 65536, 0, time.monotonic()
        while sent < (256 << 20):
            try:
                sent += s.send(chunk)
                last = time.monotonic()
            except BlockingIOError:
                _, w, _ = select.select([], [s], [], 0.3)
                if not w:
                    break
        self.assertLess(sent, 256 << 20, "the destination never pushed back")
        s.settimeout(5)
        with self.assertRaises(ConnectionResetError):
            while s.recv(65536):
                pass
        elapsed = time.monotonic() - last
        self.assertGreater(elapsed, 0.5)
        self.assertLess(elapsed, 4.0)
        proxy.wait_log(log_matcher("INFO", ("stalled",)), 2)


if __name__ == "__main__":
    main()
