"""Issue 10: the built-in destination policy (SPEC 4.5), an admin endpoint that
held connections cannot starve, and password checks that neither leak which
user names exist nor can be queued out by one address."""

import http.client
import re
import socket
import statistics
import threading
import time

from harness import (ATYP_V6, CMD_CONNECT, REP_NOT_ALLOWED, EchoServer, NetnsCase, ProxyCase,
                     connect_to, crypt_hash, greeting, log_matcher, main, make_config,
                     parse_hostport, read_reply, read_until_close, recv_exact, request,
                     userpass, wait_until)

ONE_SOURCE = """\
[source "lo4"]
address = 127.0.0.1

[pool "main"]
source = lo4
"""


def admin_addr(proxy):
    hit = [l for l in proxy.log() if l.startswith("INFO admin: listening ")]
    if len(hit) != 1:
        raise AssertionError("no single `INFO admin: listening` line\n" + proxy.tail())
    return parse_hostport(re.search(r"\baddr=(\S+)", hit[0]).group(1))


def http_get(addr, path, timeout=5.0, source=None):
    conn = http.client.HTTPConnection(addr[0], addr[1], timeout=timeout,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def metric(addr, name):
    status, body = http_get(addr, "/metrics")
    if status != 200:
        raise AssertionError("/metrics answered %d" % status)
    m = re.search(r"^%s (\S+)$" % re.escape(name), body, re.M)
    if not m:
        raise AssertionError("no %s in /metrics" % name)
    return float(m.group(1))


def connect_reply(proxy_addr, host, port, source=None):
    """The reply code of a CONNECT to (host, port); host may be a domain."""
    s = connect_to(proxy_addr, source)
    try:
        s.sendall(greeting() + request(CMD_CONNECT, host, port))
        if recv_exact(s, 2) != b"\x05\x00":
            raise AssertionError("method selection refused")
        return read_reply(s).rep
    finally:
        s.close()


def mapped_request(ip4, port):
    """CONNECT to ::ffff:ip4 as an IPv6 address (ATYP 4)."""
    packed = b"\x00" * 10 + b"\xff\xff" + socket.inet_aton(ip4)
    return bytes([5, CMD_CONNECT, 0, ATYP_V6]) + packed + port.to_bytes(2, "big")


def raw_reply(proxy_addr, req, source=None):
    s = connect_to(proxy_addr, source)
    try:
        s.sendall(greeting() + req)
        if recv_exact(s, 2) != b"\x05\x00":
            raise AssertionError("method selection refused")
        return read_reply(s).rep
    finally:
        s.close()


class LoopbackClient(ProxyCase):
    """A client on loopback may reach loopback services, never our own ports."""

    def setUp(self):
        self.proxy = self.start_proxy(make_config(
            listen=("127.0.0.2:0",), sections=ONE_SOURCE, admin_listen="127.0.0.1:0",
            log_level="debug"))
        self.admin = admin_addr(self.proxy)
        self.listen = self.proxy.addr
        self.echo = self.start_server(EchoServer, "127.0.0.1")

    def test_own_ports_refused_every_way(self):
        ap, lp = self.admin[1], self.listen[1]
        cases = [
            ("admin", ("127.0.0.1", ap)),
            ("admin via 0.0.0.0", ("0.0.0.0", ap)),
            ("admin via 127.9.9.9", ("127.9.9.9", ap)),
            ("admin via localhost", ("localhost", ap)),
            ("admin via the domain 0", ("0", ap)),
            ("admin via 0.0.0.0 as a domain", ("0.0.0.0", ap)),
            ("admin via ::1", ("::1", ap)),
            ("admin via ::", ("::", ap)),
            ("listener itself", self.listen),
            ("listener via 0.0.0.0", ("0.0.0.0", lp)),
            ("listener via localhost", ("localhost", lp)),
        ]
        for what, (host, port) in cases:
            with self.subTest(what):
                self.assertEqual(connect_reply(self.listen, host, port), REP_NOT_ALLOWED)
        for ip in ("127.0.0.1", "0.0.0.0", "127.0.0.2"):
            for port in (ap, lp):
                with self.subTest("::ffff:%s:%d" % (ip, port)):
                    self.assertEqual(raw_reply(self.listen, mapped_request(ip, port)),
                                     REP_NOT_ALLOWED)
        refused = len(cases) + 6
        self.assertEqual(metric(self.admin, "sockpool_destinations_denied_total"), refused)
        self.proxy.wait_log(log_matcher("DEBUG", ("refused: own listener or admin port",)))

    def test_admin_post_through_the_proxy_fails(self):
        s = connect_to(self.listen)
        self.addCleanup(s.close)
        s.sendall(greeting() + request(CMD_CONNECT, "127.0.0.1", self.admin[1]))
        self.assertEqual(recv_exact(s, 2), b"\x05\x00")
        self.assertEqual(read_reply(s).rep, REP_NOT_ALLOWED)
        s.sendall(b"POST /sources/lo4/suspend?duration=5m HTTP/1.0\r\n\r\n")
        data, how = read_until_close(s, 5)
        self.assertEqual(data, b"")
        status, body = http_get(self.admin, "/status")
        self.assertEqual(status, 200)
        self.assertNotIn('"suspended"', body)

    def test_loopback_services_still_reachable(self):
        for host in ("127.0.0.1", "localhost", "0.0.0.0", "0"):
            with self.subTest(host):
                s, reply = self.open(self.listen, host, self.echo.addr[1])
                self.assertEqual(reply.rep, 0)
                self.assertEcho(s)
        # ::ffff:127.0.0.1 is loopback too, so the policy lets it by (it may
        # still fail for want of an IPv6 source: not a 0x02).
        self.assertNotEqual(raw_reply(self.listen, mapped_request("127.0.0.1", self.echo.addr[1])),
                            REP_NOT_ALLOWED)
        self.assertEqual(metric(self.admin, "sockpool_destinations_denied_total"), 0)


class AllowNeverOpensOwnPorts(ProxyCase):
    def test_allow_everything_still_refuses_own_ports(self):
        proxy = self.start_proxy(make_config(
            listen=("127.0.0.2:0",), sections=ONE_SOURCE, admin_listen="127.0.0.1:0",
            allow_destinations="0.0.0.0/0, ::/0"))
        admin = admin_addr(proxy)
        for host, port in (("127.0.0.1", admin[1]), ("0", admin[1]), proxy.addr):
            with self.subTest(host=host, port=port):
                self.assertEqual(connect_reply(proxy.addr, host, port), REP_NOT_ALLOWED)

    def test_deny_destinations_adds_and_mapped_is_no_way_around(self):
        echo = self.start_server(EchoServer, "127.0.0.1")
        proxy = self.start_proxy(make_config(
            sections=ONE_SOURCE, deny_destinations="127.0.0.0/8, ::1/128"))
        self.assertEqual(connect_reply(proxy.addr, "127.0.0.1", echo.addr[1]), REP_NOT_ALLOWED)
        self.assertEqual(raw_reply(proxy.addr, mapped_request("127.0.0.1", echo.addr[1])),
                         REP_NOT_ALLOWED)
        self.assertEqual(connect_reply(proxy.addr, "localhost", echo.addr[1]), REP_NOT_ALLOWED)


class RemoteClient(NetnsCase):
    """A client that is not on loopback (192.0.2.1, a namespace address) gets
    no reach to the proxy host's loopback, this-host or link-local
    addresses, unless allow_destinations opens them."""

    ADDRS = ("192.0.2.1", "192.0.2.2")
    CLIENT = "192.0.2.1"

    def start(self, **server):
        proxy = self.start_proxy(make_config(
            listen=("192.0.2.2:0",), sections=ONE_SOURCE, allow="192.0.2.0/24",
            admin_listen="127.0.0.1:0", **server))
        return proxy, admin_addr(proxy)

    def test_loopback_refused_to_a_remote_client(self):
        echo = self.start_server(EchoServer, "127.0.0.1")
        proxy, admin = self.start()
        port = echo.addr[1]
        for host in ("127.0.0.1", "localhost", "0", "0.0.0.0", "::1", "169.254.1.1",
                     "fe80::1"):
            with self.subTest(host):
                self.assertEqual(connect_reply(proxy.addr, host, port, source=self.CLIENT),
                                 REP_NOT_ALLOWED)
        self.assertEqual(raw_reply(proxy.addr, mapped_request("127.0.0.1", port),
                                   source=self.CLIENT), REP_NOT_ALLOWED)
        # The same client reaches an ordinary address, the host's own included.
        other = self.start_server(EchoServer, "192.0.2.1")
        s, reply = self.open(proxy.addr, "192.0.2.1", other.addr[1], source=self.CLIENT)
        self.assertEcho(s)

    def test_allow_destinations_opens_one_service(self):
        echo = self.start_server(EchoServer, "127.0.0.1")
        proxy, admin = self.start(allow_destinations="127.0.0.1/32")
        s, reply = self.open(proxy.addr, "127.0.0.1", echo.addr[1], source=self.CLIENT)
        self.assertEcho(s)
        # Only that range, and never our own ports.
        self.assertEqual(connect_reply(proxy.addr, "127.0.0.2", echo.addr[1],
                                       source=self.CLIENT), REP_NOT_ALLOWED)
        self.assertEqual(connect_reply(proxy.addr, "127.0.0.1", admin[1], source=self.CLIENT),
                         REP_NOT_ALLOWED)
        self.assertEqual(connect_reply(proxy.addr, "192.0.2.2", proxy.addr[1],
                                       source=self.CLIENT), REP_NOT_ALLOWED)


class AdminHeld(ProxyCase):
    """64 idle connections to the admin endpoint, from the address /healthz
    comes from too, do not keep /healthz from answering."""

    def test_healthz_answers_under_64_held_connections(self):
        proxy = self.start_proxy(make_config(listen=("127.0.0.2:0",), sections=ONE_SOURCE,
                                             admin_listen="127.0.0.1:0"))
        admin = admin_addr(proxy)
        held = []
        self.addCleanup(lambda: [s.close() for s in held])
        for _ in range(64):
            s = socket.create_connection(admin, timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
            held.append(s)
        for source in ("127.0.0.1", "127.0.0.3"):
            t0 = time.monotonic()
            status, body = http_get(admin, "/healthz", source=source)
            self.assertEqual(status, 200, body)
            self.assertLess(time.monotonic() - t0, 2.0)
        self.assertGreater(metric(admin, "sockpool_admin_connections_evicted_total"), 0)

    def test_idle_admin_connection_times_out(self):
        proxy = self.start_proxy(make_config(listen=("127.0.0.2:0",), sections=ONE_SOURCE,
                                             admin_listen="127.0.0.1:0"))
        admin = admin_addr(proxy)
        s = socket.create_connection(admin, timeout=15)
        self.addCleanup(s.close)
        t0 = time.monotonic()
        data, how = read_until_close(s, 12)
        self.assertIn(how, ("eof", "reset"), "an idle admin connection stayed open")
        self.assertLess(time.monotonic() - t0, 10.0)


USERS = """\
[source "lo4"]
address = 127.0.0.1

[pool "main"]
source = lo4

[user "mta1"]
password_hash = %s
"""


def slow_hash(password, rounds=200000):
    """A SHA-512 crypt(3) string with many rounds (tens of ms to check)."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512, rounds=rounds))


def login(proxy_addr, user, password, source=None, timeout=15.0):
    """(accepted, seconds from sending the credentials to the status)."""
    s = connect_to(proxy_addr, source, timeout)
    try:
        s.sendall(greeting((2,)))
        if recv_exact(s, 2) != b"\x05\x02":
            raise AssertionError("password method not chosen")
        t0 = time.monotonic()
        s.sendall(userpass(user, password))
        st = recv_exact(s, 2)
        return st[1] == 0, time.monotonic() - t0
    finally:
        s.close()


class AuthTiming(ProxyCase):
    def setUp(self):
        self.hash = crypt_hash("good-pw")
        self.echo = self.start_server(EchoServer, "127.0.0.1")

    def start(self, **server):
        return self.start_proxy(make_config(
            sections=USERS % self.hash, auth="password", handshake_timeout="10s",
            admin_listen="127.0.0.2:0", allow="127.0.0.0/8", **server))

    def test_unknown_user_costs_what_a_wrong_password_costs(self):
        # A hash slow enough (tens of ms) that it, not scheduling noise on a
        # busy machine, is what the medians compare; the gap this closes was
        # 0.04 ms against 23 ms.
        self.hash = slow_hash("good-pw")
        proxy = self.start()
        login(proxy.addr, "mta1", "warm-up", source="127.0.1.250")
        unknown, wrong = [], []
        # Each try from its own loopback address: the failure throttle is
        # per address and would otherwise be what is measured. The order
        # alternates so that drift hits both sides alike.
        for i in range(16):
            tries = [("nobody-%d" % i, unknown), ("mta1", wrong)]
            for user, out in tries if i % 2 else reversed(tries):
                ok, t = login(proxy.addr, user, "wrong-%d" % i,
                              source="127.0.%d.%d" % (1 + (out is wrong), i + 1))
                self.assertFalse(ok)
                out.append(t)
        mu, mw = statistics.median(unknown), statistics.median(wrong)
        self.assertLess(abs(mu - mw), 0.2 * max(mu, mw),
                        "median unknown %.2f ms, wrong password %.2f ms" % (mu * 1e3, mw * 1e3))

    def test_flood_does_not_delay_another_address(self):
        # Checks of tens of ms: served first come first served, 600 of them
        # would take seconds.
        self.hash = slow_hash("good-pw", rounds=50000)
        proxy = self.start()
        admin = admin_addr(proxy)
        stop = threading.Event()
        sent = [0]

        def flood():
            socks = []
            try:
                for i in range(600):
                    if stop.is_set():
                        break
                    try:
                        s = connect_to(proxy.addr, "127.0.0.1", 10)
                        s.sendall(greeting((2,)) + userpass("mta1", "bad-%d" % i))
                        socks.append(s)
                        sent[0] += 1
                    except OSError:
                        pass
            finally:
                stop.wait(15)
                for s in socks:
                    s.close()

        t = threading.Thread(target=flood, daemon=True)
        t.start()
        self.addCleanup(t.join, 20)
        self.addCleanup(stop.set)
        wait_until(lambda: sent[0] >= 600 or not t.is_alive(), 30, what="600 bad logins sent")
        wait_until(lambda: metric(admin, "sockpool_auth_queue_full_total") > 0, 10,
                   what="the flood's excess parked at the client's cap")
        ok, secs = login(proxy.addr, "mta1", "good-pw", source="127.0.0.2")
        self.assertTrue(ok)
        self.assertLess(secs, 1.0, "a good login from another address took %.2f s" % secs)
        stop.set()

    def test_burst_of_one_client_all_pass(self):
        # 40 uncached logins at once from one address (an MTA after a start
        # or reload): past the client's cap of 32 pending checks they are
        # parked, and all pass once the first check has filled the cache.
        self.hash = slow_hash("good-pw")
        proxy = self.start()
        admin = admin_addr(proxy)
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        t0 = time.monotonic()
        for _ in range(40):
            s = connect_to(proxy.addr, "127.0.0.1", 15)
            s.sendall(greeting((2,)) + userpass("mta1", "good-pw"))
            socks.append(s)
        for i, s in enumerate(socks):
            self.assertEqual(recv_exact(s, 2), b"\x05\x02")
            self.assertEqual(recv_exact(s, 2), b"\x01\x00", "login %d of the burst" % i)
        self.assertLess(time.monotonic() - t0, 8.0)
        self.assertGreaterEqual(metric(admin, "sockpool_auth_queue_full_total"), 1,
                                "the burst never reached the client's cap")

    def test_repeated_failures_are_slowed_and_counted(self):
        proxy = self.start()
        admin = admin_addr(proxy)
        times = [login(proxy.addr, "mta1", "bad", source="127.0.3.1")[1] for _ in range(4)]
        # 0, 100, 200, 400 ms of delay on top of the check itself.
        self.assertGreater(times[3], times[0] + 0.3, "no growing delay: %r" % times)
        self.assertEqual(metric(admin, "sockpool_auth_failures_delayed_total"), 3)
        # Another address is not slowed by them, and a success is not either.
        ok, secs = login(proxy.addr, "mta1", "good-pw", source="127.0.3.2")
        self.assertTrue(ok)
        self.assertLess(secs, times[3])


if __name__ == "__main__":
    main()
