"""Limits: max_connections, max_connections_per_client, idle_timeout, the
per-source max_connections and rate caps, and connect_timeout against a
destination that never answers (a veth in a namespace, a true timeout)."""

import hashlib
import os
import resource
import signal
import socket
import time

from harness import (ATYP_V4, CMD_CONNECT, EXHAUSTED, NetnsCase, SinkServer,
                     TCPServer, connect_to, greeting, log_matcher, main, make_config,
                     read_reply, read_until_close, recv_exact, request, run, socks_open,
                     wait_until)
from test_hostile import HostileCase

TWO_SOURCES = """\
[source "a"]
address = 127.0.0.2
%s

[source "b"]
address = 127.0.0.3

[pool "main"]
strategy = %s
%s
"""

FAILOVER = "source = a priority=1\nsource = b priority=2\n"
ROUND_ROBIN = "source = a, b\n"
NOT_DEBUG = log_matcher(regex=r"^(WARN|ERROR) ")


def refused(addr, source=None, within=3.0):
    """True when the proxy closes a new connection without a method reply."""
    try:
        s = connect_to(addr, source)
    except OSError:
        return True
    try:
        try:
            s.sendall(greeting())
        except OSError:
            return True
        data, how = read_until_close(s, within, limit=2)
        if how == "timeout":
            return False
        return data == b""
    finally:
        s.close()


class Trickler(TCPServer):
    """Sends one byte every `period` seconds, `count` times, then waits for EOF."""

    def __init__(self, period, count, **kw):
        self.period, self.count = period, count
        super().__init__(**kw)

    def handle(self, conn, peer):
        for _ in range(self.count):
            conn.sendall(b".")
            time.sleep(self.period)
        self.add_result("done")
        while conn.recv(4096):
            pass


class MaxConnections(HostileCase):
    SERVER = {"max_connections": "50", "log_level": "info"}

    def open_relayed(self, n):
        out = []
        for _ in range(n):
            s, reply = socks_open(self.proxy.addr, *self.echo.addr)
            self.addCleanup(s.close)
            out.append(s)
        return out

    def test_51st_refused_then_accepted_after_some_close(self):
        held = self.open_relayed(50)
        for s in held[::10]:
            self.assertEcho(s)
        mark = self.proxy.mark()
        self.assertTrue(refused(self.proxy.addr), "51st concurrent client was served")
        self.proxy.wait_log(log_matcher("WARN", ("max_connections=50",)), start=mark)
        for s in held[:5]:
            s.close()
        # The five closes free five places, once the proxy has seen them.
        deadline = time.monotonic() + 5
        fresh = []
        while len(fresh) < 5 and time.monotonic() < deadline:
            try:
                s, _ = socks_open(self.proxy.addr, *self.echo.addr, timeout=3)
            except (OSError, EOFError, AssertionError):
                time.sleep(0.05)
                continue
            self.addCleanup(s.close)
            fresh.append(s)
        self.assertEqual(len(fresh), 5, "places freed by closed clients not reused")
        for s in fresh:
            self.assertEcho(s)
        self.assertTrue(refused(self.proxy.addr), "a 51st client was served after the reuse")
        for s in held[5:] + fresh:
            s.close()


class PerClient(HostileCase):
    SERVER = {"max_connections_per_client": "5", "log_level": "info", "access_log": "off"}

    def open_from(self, source, n):
        out = []
        for _ in range(n):
            s, _ = socks_open(self.proxy.addr, *self.echo.addr, source=source)
            self.addCleanup(s.close)
            out.append(s)
        return out

    def test_sixth_from_one_address_refused_other_address_served(self):
        first = self.open_from("127.0.0.1", 5)
        mark = self.proxy.mark()
        self.assertTrue(refused(self.proxy.addr, "127.0.0.1"), "6th from 127.0.0.1 served")
        self.proxy.wait_log(log_matcher("WARN", ("max_connections_per_client=5",),
                                        regex=r"client=127\.0\.0\.1:"),
                            start=mark)
        other = self.open_from("127.0.0.2", 5)
        for s in other:
            self.assertEcho(s)
        self.assertTrue(refused(self.proxy.addr, "127.0.0.2"), "6th from 127.0.0.2 served")
        first[0].close()
        deadline = time.monotonic() + 5
        while True:
            try:
                s, _ = socks_open(self.proxy.addr, *self.echo.addr, source="127.0.0.1", timeout=3)
                self.addCleanup(s.close)
                break
            except (OSError, EOFError, AssertionError):
                self.assertLess(time.monotonic(), deadline, "place of 127.0.0.1 not freed")
                time.sleep(0.05)
        self.assertEcho(s)
        self.assertTrue(refused(self.proxy.addr, "127.0.0.1"), "6th from 127.0.0.1 served")

    def test_churn_of_3000_client_addresses_keeps_the_count_exact(self):
        # Grows and tombstones the per-client table many times over.
        for i in range(3000):
            src = "127.%d.%d.%d" % (10 + i // 60000, (i // 250) % 250 + 1, i % 250 + 1)
            s = connect_to(self.proxy.addr, src)
            try:
                s.sendall(greeting() + request(CMD_CONNECT, *self.echo.addr))
                self.assertEqual(recv_exact(s, 2), b"\x05\x00", src)
                self.assertEqual(read_reply(s).rep, 0, src)
            finally:
                s.close()
        self.assert_drained()
        held = self.open_from("127.0.0.1", 5)
        self.assertTrue(refused(self.proxy.addr, "127.0.0.1"), "6th from 127.0.0.1 served")
        # Every churned address starts from zero again.
        more = self.open_from("127.0.1.1", 5)
        self.assertTrue(refused(self.proxy.addr, "127.0.1.1"))
        for s in held + more:
            s.close()


class IdleTimeout(HostileCase):
    SERVER = {"idle_timeout": "1s", "log_level": "info"}

    def test_idle_relayed_connection_closed(self):
        s, _ = self.open(self.proxy.addr, *self.echo.addr)
        self.assertEcho(s)
        t0 = time.monotonic()
        data, how = read_until_close(s, 6)
        took = time.monotonic() - t0
        self.assertIn(how, ("eof", "reset"), "idle relayed connection still open after 6s")
        self.assertEqual(data, b"")
        self.assertGreater(took, 0.9)
        self.assertLess(took, 3.0, "closed %.1fs after the last byte; idle_timeout is 1s" % took)

    def test_half_closed_silent_connection_closed(self):
        # The client sends its FIN, the destination never answers nor closes.
        holder = socket.socket()
        self.addCleanup(holder.close)
        holder.bind(("127.0.0.1", 0))
        holder.listen(4)
        s, _ = self.open(self.proxy.addr, *holder.getsockname())
        holder.settimeout(5)
        conn, _ = holder.accept()
        self.addCleanup(conn.close)
        s.shutdown(socket.SHUT_WR)
        conn.settimeout(5)
        self.assertEqual(conn.recv(10), b"", "the FIN must reach the destination")
        t0 = time.monotonic()
        data, how = read_until_close(s, 6)
        self.assertIn(how, ("eof", "reset"), "half-closed idle connection still open after 6s")
        self.assertLess(time.monotonic() - t0, 3.0)

    def test_trickle_both_ways_stays_open_past_3s(self):
        s, _ = self.open(self.proxy.addr, *self.echo.addr)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.5:
            self.assertEcho(s, b"t")
            time.sleep(0.3)
        self.assertEcho(s, b"still open")
        data, how = read_until_close(s, 6)
        self.assertIn(how, ("eof", "reset"))

    def test_trickle_client_to_destination_only_stays_open(self):
        sink = self.start_server(SinkServer)
        s, _ = self.open(self.proxy.addr, *sink.addr)
        n = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.5:
            s.sendall(b"u")
            n += 1
            time.sleep(0.3)
        s.shutdown(socket.SHUT_WR)
        data, how = read_until_close(s, 5)
        self.assertEqual(data, b"%d %s\n" % (n, hashlib.sha256(b"u" * n).hexdigest().encode()),
                         "one-way traffic up must count as activity")

    def test_trickle_destination_to_client_only_stays_open(self):
        src = self.start_server(Trickler, 0.3, 12)
        s, _ = self.open(self.proxy.addr, *src.addr)
        got = recv_exact(s, 12)
        self.assertEqual(got, b"." * 12, "one-way traffic down must count as activity")
        self.assertEqual(src.wait_results(1), ["done"])


class FdExhaustion(HostileCase):
    SERVER = {"log_level": "info", "access_log": "off", "handshake_timeout": "2s"}

    def cpu_seconds(self, pid):
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def test_out_of_file_descriptors_recovers_without_spinning(self):
        pid = self.proxy.proc.pid
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        used = len(os.listdir("/proc/%d/fd" % pid))
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (used + 20, hard))
        self.addCleanup(resource.prlimit, pid, resource.RLIMIT_NOFILE, (soft, hard))
        mark = self.proxy.mark()
        held, failed = [], 0
        for _ in range(40):
            try:
                s, _ = socks_open(self.proxy.addr, *self.echo.addr, timeout=3)
                held.append(s)
            except (OSError, EOFError, AssertionError):
                failed += 1
        self.assertGreater(len(held), 3, "nothing served under the limit")
        self.assertGreater(failed, 0, "the fd limit was never reached")
        # At the limit, with clients knocking, the loop must not spin.
        knock = []
        for _ in range(10):
            k = socket.socket()
            k.setblocking(False)
            k.connect_ex(self.proxy.addr)
            knock.append(k)
        cpu0 = self.cpu_seconds(pid)
        time.sleep(1.0)
        burnt = self.cpu_seconds(pid) - cpu0
        for k in knock:
            k.close()
        self.assertLess(burnt, 0.5, "%.2fs of CPU in 1s at the fd limit" % burnt)
        for s in held:
            self.assertEcho(s)
            s.close()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        wait_until(lambda: self.try_serve(), 5, 0.1, "service after the fd limit was lifted")
        lines = self.proxy.count_log(log_matcher(regex=r"^(WARN|ERROR) "), mark)
        self.assertLess(lines, 200, "log flood at the fd limit: %d lines" % lines)

    def try_serve(self):
        try:
            self.assert_serves()
            return True
        except (OSError, EOFError, AssertionError):
            return False


class SourceCaps(HostileCase):
    """Sources a (127.0.0.2) and b (127.0.0.3) on loopback; the echo server
    sees which one a request left from."""

    A, B = "127.0.0.2", "127.0.0.3"
    SERVER = {"log_level": "info", "access_log": "off", "connect_timeout": "5s"}
    A_POLICY = "max_connections = 2"
    STRATEGY, ENTRIES = "failover", FAILOVER

    def sections(self):
        return TWO_SOURCES % (self.A_POLICY, self.STRATEGY, self.ENTRIES)

    def hold(self):
        """A relayed connection kept open; returns (socket, source ip)."""
        n = self.echo.connections
        s, reply = socks_open(self.proxy.addr, *self.echo.addr)
        self.addCleanup(s.close)
        self.assertEqual(reply.rep, 0)
        self.echo.wait_connections(n + 1)
        src = reply.host
        self.assertIn(src, (self.A, self.B))
        return s, src

    def assert_quiet(self, mark):
        loud = [l for l in self.proxy.log()[mark:] if NOT_DEBUG(l)]
        self.assertEqual(loud, [], "a capped source must log nothing above DEBUG")


class SourceMaxConnections(SourceCaps):

    def test_capped_source_is_skipped_not_suspended(self):
        mark = self.proxy.mark()
        a1, src1 = self.hold()
        a2, src2 = self.hold()
        self.assertEqual((src1, src2), (self.A, self.A))
        others = [self.hold() for _ in range(10)]
        self.assertEqual([src for _, src in others], [self.B] * 10,
                         "source a at max_connections=2 must be skipped")
        a1.close()
        deadline = time.monotonic() + 3
        while True:
            s, src = self.hold()
            if src == self.A:
                break
            self.assertLess(time.monotonic(), deadline, "a never came back after a close")
            time.sleep(0.05)
        self.assertEqual(self.proxy.count_log(EXHAUSTED, mark), 0)
        self.assert_quiet(mark)


    def test_cap_and_count_survive_reload(self):
        held = [self.hold() for _ in range(2)]
        self.assertEqual([src for _, src in held], [self.A, self.A])
        mark = self.proxy.mark()
        with open(self.proxy.conf_path, "a") as f:
            f.write("\n; reloaded\n")
        self.proxy.send_signal(signal.SIGHUP)
        self.proxy.wait_log(log_matcher("INFO", ("reloaded",)), start=mark)
        # Still two live connections on a: the new generation knows it.
        self.assertEqual([self.hold()[1] for _ in range(3)], [self.B] * 3)
        for s, _ in held:
            s.close()
        # Their release counts in the new generation too: a is free again.
        deadline = time.monotonic() + 3
        got = []
        while len(got) < 2:
            s, src = self.hold()
            if src == self.A:
                got.append(s)
            self.assertLess(time.monotonic(), deadline, "a never came back after the reload")
        self.assertEqual(self.hold()[1], self.B, "a over its cap after the reload")


class SourceMaxConnectionsRoundRobin(SourceCaps):
    STRATEGY, ENTRIES = "round-robin", ROUND_ROBIN

    def test_capped_source_is_skipped(self):
        mark = self.proxy.mark()
        held = [self.hold() for _ in range(4)]
        self.assertEqual(sorted(src for _, src in held), [self.A, self.A, self.B, self.B])
        more = [self.hold() for _ in range(10)]
        self.assertEqual([src for _, src in more], [self.B] * 10)
        self.assert_quiet(mark)


class BothSourcesCapped(SourceCaps):
    A_POLICY = "max_connections = 1"
    ENTRIES = "source = a priority=1\nsource = b priority=2\n"

    def sections(self):
        return TWO_SOURCES.replace('address = 127.0.0.3\n',
                                   'address = 127.0.0.3\nmax_connections = 1\n') % (
            self.A_POLICY, self.STRATEGY, self.ENTRIES)

    def test_no_free_source_replies_01_and_suspends_nothing(self):
        mark = self.proxy.mark()
        held = sorted(src for _, src in (self.hold(), self.hold()))
        self.assertEqual(held, [self.A, self.B])
        s = self.raw(self.proxy.addr)
        t0 = time.monotonic()
        s.sendall(greeting() + request(CMD_CONNECT, *self.echo.addr))
        self.assertEqual(recv_exact(s, 2), b"\x05\x00")
        reply = read_reply(s)
        self.assertEqual(reply.rep, 0x01, reply)
        self.assertLess(time.monotonic() - t0, 6)
        data, how = read_until_close(s, 3)
        self.assertIn(how, ("eof", "reset"))
        suspended = [l for l in self.proxy.log()[mark:] if "suspended" in l and "WARN" in l]
        self.assertEqual(suspended, [])
        # Skipping one capped source is quiet; refusing a request is not.
        # (the log is read by a thread: wait for the line, then count it)
        self.proxy.wait_log(lambda l: l.startswith("WARN") and "busy" in l, 3, mark)
        busy = [l for l in self.proxy.log()[mark:] if l.startswith("WARN") and "busy" in l]
        self.assertEqual(len(busy), 1, self.proxy.log()[mark:])


class SourceRate(SourceCaps):
    A_POLICY = "rate = 5/s"

    def test_source_over_its_rate_is_skipped(self):
        # pool.h: a token bucket, burst 5, refilled evenly (one per 200 ms).
        mark = self.proxy.mark()
        seen = []
        t0 = time.monotonic()
        for _ in range(10):
            s, reply = socks_open(self.proxy.addr, *self.echo.addr)
            seen.append((time.monotonic() - t0, reply.host))
            s.close()
        hosts = [h for _, h in seen]
        self.assertEqual(hosts[:5], [self.A] * 5, seen)
        if seen[5][0] < 0.18:
            self.assertEqual(hosts[5], self.B, "a 6th from a before any refill: %r" % seen)
        refills = int(seen[-1][0] / 0.2) + 1
        self.assertLessEqual(hosts.count(self.A), 5 + refills, seen)
        self.assertIn(self.B, hosts)
        time.sleep(1.1)
        s, reply = socks_open(self.proxy.addr, *self.echo.addr)
        s.close()
        self.assertEqual(reply.host, self.A, "a back after its rate window")
        self.assert_quiet(mark)


class BothSourcesOverRate(SourceCaps):
    ENTRIES = ROUND_ROBIN
    STRATEGY = "round-robin"
    A_POLICY = "rate = 2/s"

    def sections(self):
        return TWO_SOURCES.replace('address = 127.0.0.3\n', 'address = 127.0.0.3\nrate = 2/s\n') % (
            self.A_POLICY, self.STRATEGY, self.ENTRIES)

    def test_request_waits_for_the_rate_window_within_connect_timeout(self):
        # Like an all-suspended pool (SPEC 4.3): the request waits for the
        # earliest source to become eligible when that is within
        # connect_timeout. Each bucket holds 2 and refills one per 500 ms.
        mark = self.proxy.mark()
        t0 = time.monotonic()
        seen = []
        for i in range(6):
            s = connect_to(self.proxy.addr)
            try:
                s.sendall(greeting() + request(CMD_CONNECT, *self.echo.addr))
                self.assertEqual(recv_exact(s, 2), b"\x05\x00")
                reply = read_reply(s)
                self.assertEqual(reply.rep, 0, "request %d with both sources over rate: %r"
                                 % (i, reply))
                seen.append((time.monotonic() - t0, reply.host))
            finally:
                s.close()
        self.assertEqual(sorted(h for _, h in seen), [self.A] * 3 + [self.B] * 3, seen)
        self.assertLess(seen[3][0], 0.4, "the first four had tokens: %r" % seen)
        self.assertGreater(seen[4][0], 0.4, "the fifth must wait for a refill: %r" % seen)
        self.assertLess(seen[5][0], 3.0, seen)
        self.assertEqual(self.proxy.count_log(EXHAUSTED, mark), 0)
        self.assert_quiet(mark)


class ConnectTimeout(NetnsCase):
    """198.51.100.0/24 is routed into a veth whose peer drops everything (a
    permanent neighbour entry, no address): a SYN gets no answer at all."""

    ADDRS = ("192.0.2.10", "192.0.2.11")
    DEST = "198.51.100.7"

    def setUp(self):
        super().setUp()
        ns = self.ns.name
        run(["ip", "-n", ns, "link", "add", "bh0", "type", "veth", "peer", "name", "bh1"])
        for dev in ("bh0", "bh1"):
            run(["ip", "-n", ns, "link", "set", dev, "up"])
        run(["ip", "-n", ns, "route", "add", "198.51.100.0/24", "dev", "bh0"])
        run(["ip", "-n", ns, "neigh", "add", self.DEST, "lladdr", "02:00:00:00:00:01",
             "dev", "bh0", "nud", "permanent"])
        # The test itself checks that this really is a silent blackhole.
        probe = socket.socket()
        probe.settimeout(0.5)
        try:
            with self.assertRaises(socket.timeout):
                probe.connect((self.DEST, 25))
        finally:
            probe.close()

    def test_blackholed_destination_replies_06_in_connect_timeout(self):
        proxy = self.start_proxy(make_config(
            connect_timeout="1s",
            sections='[source "ip-1"]\naddress = 192.0.2.10\n\n[source "ip-2"]\n'
                     'address = 192.0.2.11\n\n[pool "main"]\nsource = ip-1, ip-2\n'))
        mark = proxy.mark()
        for _ in range(2):
            s = connect_to(proxy.addr)
            self.addCleanup(s.close)
            t0 = time.monotonic()
            s.sendall(greeting() + request(CMD_CONNECT, self.DEST, 25))
            self.assertEqual(recv_exact(s, 2), b"\x05\x00")
            reply = read_reply(s)
            took = time.monotonic() - t0
            self.assertEqual(reply.rep, 0x06, reply)
            self.assertEqual(reply.atyp, ATYP_V4)
            self.assertGreater(took, 0.9)
            # A timeout blames the destination: no second full wait on the other source.
            self.assertLess(took, 1.8, "reply after %.2fs with connect_timeout 1s" % took)
            data, how = read_until_close(s, 3)
            self.assertIn(how, ("eof", "reset"))
        self.assertEqual([l for l in proxy.log()[mark:] if "suspended" in l], [])


if __name__ == "__main__":
    main()
