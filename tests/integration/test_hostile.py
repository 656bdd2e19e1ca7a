"""Hostile clients and destinations: a bad client gets the right SOCKS5 reply
and a closed socket, never a crash, a leak or a stuck session.

Every test ends with the proxy drained (sockpool_connections_active back to
0, read from the admin endpoint) and the harness's stop check: exit 0 at
SIGTERM with no sanitizer report. Traffic stays on loopback or in a
namespace the test creates; every loop is bounded.
"""

import hashlib
import os
import random
import re
import signal
import socket
import struct
import threading
import time
import urllib.request
import warnings

from harness import (ATYP_DOMAIN, ATYP_V4, ATYP_V6, CMD_CONNECT, LOOPBACK_SOURCES, EchoServer,
                     NetnsCase, ProxyCase, SinkServer, TCPServer, connect_to, greeting, main,
                     make_config, parse_hostport, read_reply, read_until_close, recv_exact,
                     request, socks_open, userpass)

ADMIN = "127.0.0.3:0"  # not the SOCKS listener's address (conf refuses that)


def sha512_crypt(password, rounds):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512, rounds=rounds))


def rst_close(sock):
    """Close with an RST (SO_LINGER 0)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def send_quietly(sock, data):
    """sendall that tolerates the proxy closing first; returns True if all went."""
    try:
        sock.sendall(data)
        return True
    except OSError:
        return False


def vm_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


class Tripwire(TCPServer):
    """A destination nobody should ever reach: counts connections."""

    def handle(self, conn, peer):
        pass


class GateSink(TCPServer):
    """Accepts and does not read until `gate` is set; then reads to EOF and
    records (bytes, sha256)."""

    def __init__(self, *a, **kw):
        self.gate = threading.Event()
        super().__init__(*a, **kw)

    def handle(self, conn, peer):
        if not self.gate.wait(60):
            return
        h = hashlib.sha256()
        n = 0
        while True:
            data = conn.recv(1 << 18)
            if not data:
                break
            h.update(data)
            n += len(data)
        self.add_result((n, h.hexdigest()))


class Flooder(TCPServer):
    """Sends without pause as long as the kernel takes it (non-blocking), up to
    `limit` bytes or until a stall of `stall` seconds; records (sent, sha256)
    of what went out, then waits for `finish` to send the rest and close."""

    def __init__(self, limit, stall=2.0, **kw):
        self.limit, self.stall = limit, stall
        self.finish = threading.Event()
        self.stalled = threading.Event()
        super().__init__(**kw)

    def handle(self, conn, peer):
        h = hashlib.sha256()
        chunk = os.urandom(1 << 16)
        sent = 0
        conn.setblocking(False)
        last = time.monotonic()
        while sent < self.limit and time.monotonic() - last < self.stall:
            try:
                n = conn.send(chunk)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            h.update(chunk[:n])
            sent += n
            last = time.monotonic()
        self.add_result(sent)
        self.stalled.set()
        if not self.finish.wait(60):
            return
        conn.setblocking(True)
        conn.settimeout(60)
        tail = os.urandom(1 << 20)
        conn.sendall(tail)
        h.update(tail)
        sent += len(tail)
        conn.shutdown(socket.SHUT_WR)
        self.add_result((sent, h.hexdigest()))
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass


class MidReset(TCPServer):
    """Reads 256 KiB, then streams to the client until the path is full (the
    client does not read yet), then resets the connection (SO_LINGER 0) with
    data still queued towards the client, and sets `reset`."""

    def __init__(self, *a, **kw):
        self.reset = threading.Event()
        super().__init__(*a, **kw)

    def handle(self, conn, peer):
        got = 0
        while got < 256 * 1024:
            data = conn.recv(65536)
            if not data:
                return
            got += len(data)
        chunk = b"r" * 65536
        conn.setblocking(False)
        last = time.monotonic()
        while time.monotonic() - last < 0.5:
            try:
                conn.send(chunk)
                last = time.monotonic()
            except BlockingIOError:
                time.sleep(0.01)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        self.add_result(got)
        self.reset.set()


class HostileCase(ProxyCase):
    """A proxy with an admin endpoint; after each test (and before the harness
    stops it) every session must be gone."""

    SERVER = {}

    def setUp(self):
        server = dict(handshake_timeout="10s", log_level="debug", access_log="on",
                      admin_listen=ADMIN)
        server.update(self.SERVER)
        self.proxy = self.start_proxy(make_config(sections=self.sections(), **server))
        hit = [l for l in self.proxy.log() if l.startswith("INFO admin: listening ")]
        self.assertEqual(len(hit), 1, self.proxy.tail())
        self.admin = parse_hostport(re.search(r"\baddr=(\S+)", hit[0]).group(1).strip('"'))
        self.addCleanup(self.assert_drained)
        self.echo = self.start_server(EchoServer)

    def sections(self):
        return LOOPBACK_SOURCES

    def active(self):
        url = "http://%s:%d/metrics" % self.admin
        with urllib.request.urlopen(url, timeout=10) as r:
            body = r.read().decode()
        m = re.search(r"^sockpool_connections_active (\d+)$", body, re.M)
        self.assertIsNotNone(m, "no sockpool_connections_active in /metrics")
        return int(m.group(1))

    def assert_drained(self, timeout=8.0):
        if self.proxy.stopped:
            return
        deadline = time.monotonic() + timeout
        n = self.active()
        while n and time.monotonic() < deadline:
            time.sleep(0.05)
            n = self.active()
        self.assertEqual(n, 0, "sessions still open %.0fs after every client left" % timeout)

    def assert_serves(self):
        s, reply = socks_open(self.proxy.addr, *self.echo.addr)
        try:
            self.assertEqual(reply.rep, 0)
            s.sendall(b"still alive\n")
            self.assertEqual(recv_exact(s, 12), b"still alive\n")
        finally:
            s.close()

    def assert_closed(self, sock, within, what=""):
        """Read until the proxy closes; returns what it sent."""
        t0 = time.monotonic()
        data, how = read_until_close(sock, within)
        self.assertIn(how, ("eof", "reset"),
                      "%s: still open %.1fs later (got %r)" % (what, within, data[:64]))
        return data, time.monotonic() - t0


class Garbage(HostileCase):
    """Not SOCKS5 at all: closed quickly (handshake_timeout is 10s, so a close
    within 3s comes from the parser) and never relayed."""

    def setUp(self):
        super().setUp()
        self.trip = self.start_server(Tripwire)

    def check_garbage(self, payload, allowed=(b"",)):
        s = self.raw(self.proxy.addr)
        send_quietly(s, payload)
        data, _ = self.assert_closed(s, 3, "garbage %r" % payload[:16])
        self.assertIn(data, allowed, "answer to garbage %r" % payload[:16])

    def test_http_requests(self):
        host, port = self.trip.addr
        self.check_garbage(b"GET http://%s:%d/ HTTP/1.1\r\nHost: x\r\n\r\n" % (host.encode(), port))
        self.check_garbage(b"CONNECT %s:%d HTTP/1.1\r\nHost: x\r\n\r\n" % (host.encode(), port))
        self.assertEqual(self.trip.connections, 0)
        self.assert_serves()

    def test_tls_client_hello(self):
        hello = bytes.fromhex("16030100c4010000c00303") + os.urandom(32) + b"\x00\x00\x02\x13\x01"
        hello += b"\x01\x00" + os.urandom(150)
        self.check_garbage(hello)
        self.assert_serves()

    def test_socks4_and_socks4a_requests(self):
        host, port = self.trip.addr
        v4 = b"\x04\x01" + struct.pack("!H", port) + socket.inet_aton(host) + b"user\x00"
        v4a = b"\x04\x01" + struct.pack("!H", port) + b"\x00\x00\x00\x01user\x00localhost\x00"
        self.check_garbage(v4)
        self.check_garbage(v4a)
        self.assertEqual(self.trip.connections, 0)
        self.assert_serves()

    def test_random_bytes(self):
        rnd = random.Random(1928)
        for n in (1, 2, 7, 100, 1000, 5000):
            payload = bytes([rnd.choice([b for b in range(256) if b != 5])]) + rnd.randbytes(n)
            self.check_garbage(payload)
        self.assert_serves()

    def test_single_byte_then_close(self):
        for b in (0x05, 0x04, 0x00, 0xFF):
            s = self.raw(self.proxy.addr)
            s.sendall(bytes([b]))
            s.shutdown(socket.SHUT_WR)
            data, _ = self.assert_closed(s, 3, "byte %#x then EOF" % b)
            self.assertEqual(data, b"")
        self.assert_serves()

    def test_64k_junk_in_place_of_the_greeting(self):
        junk = bytes([0x47]) + os.urandom(64 * 1024)
        self.check_garbage(junk)
        # A greeting offering 255 methods none of which is "no auth", then junk.
        methods = bytes(range(1, 256))
        self.check_garbage(b"\x05\xff" + methods + os.urandom(64 * 1024), (b"\x05\xff",))
        self.assert_serves()

    def test_64k_junk_in_place_of_the_request(self):
        s = self.raw(self.proxy.addr)
        send_quietly(s, greeting() + b"\x04" + os.urandom(64 * 1024))
        data, _ = self.assert_closed(s, 3, "junk request")
        self.assertEqual(data[:2], b"\x05\x00")
        self.assertEqual(len(data), 12, "one reply after the method: %s" % data.hex())
        self.assertEqual(data[2:4], b"\x05\x01", "bad request version: general failure")
        self.assertEqual(self.trip.connections, 0)
        self.assert_serves()


class Handshake(HostileCase):

    def test_greeting_with_255_methods(self):
        s = self.raw(self.proxy.addr)
        s.sendall(bytes([5, 255]) + bytes(range(255)) + request(CMD_CONNECT, *self.echo.addr))
        self.assertEqual(recv_exact(s, 2), b"\x05\x00")
        self.assertEqual(read_reply(s).rep, 0)
        self.assertEcho(s)

    def test_greeting_and_request_split_at_every_byte(self):
        msg = greeting() + request(CMD_CONNECT, *self.echo.addr)
        for cut in range(1, len(msg)):
            s = self.raw(self.proxy.addr)
            s.sendall(msg[:cut])
            time.sleep(0.01)
            s.sendall(msg[cut:])
            self.assertEqual(recv_exact(s, 2), b"\x05\x00", "cut at %d" % cut)
            self.assertEqual(read_reply(s).rep, 0, "cut at %d" % cut)
            self.assertEcho(s)
            s.close()

    def test_whole_handshake_one_byte_at_a_time_with_pauses(self):
        msg = greeting() + request(CMD_CONNECT, "localhost", self.echo.port) + b"early"
        s = self.raw(self.proxy.addr)
        for b in msg:
            s.sendall(bytes([b]))
            time.sleep(0.005)
        self.assertEqual(recv_exact(s, 2), b"\x05\x00")
        reply = read_reply(s)
        self.assertEqual(reply.rep, 0)
        self.assertEqual(reply.atyp, ATYP_DOMAIN)
        self.assertEqual(recv_exact(s, 5), b"early")

    def test_greeting_then_eof(self):
        s = self.raw(self.proxy.addr)
        s.sendall(greeting())
        s.shutdown(socket.SHUT_WR)
        data, _ = self.assert_closed(s, 3, "greeting then EOF")
        self.assertEqual(data, b"\x05\x00")

    def test_partial_greeting_then_eof(self):
        for part in (b"\x05", b"\x05\x03", b"\x05\x03\x00\x01"):
            s = self.raw(self.proxy.addr)
            s.sendall(part)
            s.shutdown(socket.SHUT_WR)
            data, _ = self.assert_closed(s, 3, "partial greeting %s then EOF" % part.hex())
            self.assertEqual(data, b"")

    def test_every_atyp_truncated_at_every_byte_then_eof(self):
        reqs = [request(CMD_CONNECT, *self.echo.addr),
                request(CMD_CONNECT, "::1", self.echo.port),
                request(CMD_CONNECT, "localhost", self.echo.port)]
        for req in reqs:
            for cut in range(1, len(req)):
                s = self.raw(self.proxy.addr)
                s.sendall(greeting() + req[:cut])
                s.shutdown(socket.SHUT_WR)
                data, _ = self.assert_closed(s, 3, "request %s cut at %d" % (req.hex(), cut))
                self.assertEqual(data, b"\x05\x00",
                                 "request %s cut at %d then EOF" % (req.hex(), cut))
                s.close()
        self.assertEqual(self.echo.connections, 0, "a truncated request was connected")
        self.assert_serves()

    def test_domain_of_255_bytes_relays(self):
        # glibc reads this 255-byte name with inet_aton: 0...0177.0.0.1 is 127.0.0.1.
        name = "0" * (255 - len("177.0.0.1")) + "177.0.0.1"
        self.assertEqual(len(name), 255)
        s = self.raw(self.proxy.addr)
        s.sendall(greeting() + request(CMD_CONNECT, name, self.echo.port))
        self.assertEqual(recv_exact(s, 2), b"\x05\x00")
        reply = read_reply(s)
        self.assertEqual(reply.rep, 0, reply)
        self.assertEqual(reply.atyp, ATYP_DOMAIN, "reply must carry the request's ATYP")
        self.assertEcho(s)

    def assert_rejected_request(self, req, rep, atyp=None):
        s = self.raw(self.proxy.addr)
        s.sendall(greeting() + req)
        self.assertEqual(recv_exact(s, 2), b"\x05\x00")
        reply = read_reply(s)
        self.assertEqual(reply.rep, rep, "request %s: %r" % (req.hex(), reply))
        if atyp is not None:
            self.assertEqual(reply.atyp, atyp, "reply ATYP for %s" % req.hex())
        data, _ = self.assert_closed(s, 3, "after reply %#x" % rep)
        self.assertEqual(data, b"")

    def test_domain_with_nul_is_not_truncated(self):
        trip = self.start_server(Tripwire)
        for name in (b"127.0.0.1\x00.example", b"\x00127.0.0.1", b"localhost\x00"):
            req = (bytes([5, CMD_CONNECT, 0, ATYP_DOMAIN, len(name)]) + name +
                   struct.pack("!H", trip.port))
            self.assert_rejected_request(req, 0x04, ATYP_DOMAIN)
        self.assertEqual(trip.connections, 0, "NUL-truncated name was connected")
        self.assert_serves()

    def test_domain_of_length_zero(self):
        req = bytes([5, CMD_CONNECT, 0, ATYP_DOMAIN, 0]) + struct.pack("!H", self.echo.port)
        self.assert_rejected_request(req, 0x04, ATYP_DOMAIN)
        self.assertEqual(self.echo.connections, 0)

    def test_port_zero(self):
        for host, atyp in (("127.0.0.1", ATYP_V4), ("::1", ATYP_V6), ("localhost", ATYP_DOMAIN)):
            s = self.raw(self.proxy.addr)
            s.sendall(greeting() + request(CMD_CONNECT, host, 0))
            self.assertEqual(recv_exact(s, 2), b"\x05\x00")
            reply = read_reply(s)
            self.assertIn(reply.rep, (0x02, 0x05), "CONNECT %s:0 -> %r" % (host, reply))
            self.assertEqual(reply.atyp, atyp)
            self.assert_closed(s, 3, "after port 0")
        self.assert_serves()

    def test_every_unknown_command_and_atyp(self):
        for cmd in range(256):
            if cmd in (1, 2):
                continue
            s = connect_to(self.proxy.addr)
            try:
                s.sendall(greeting() + bytes([5, cmd, 0]) + request(1, *self.echo.addr)[3:])
                self.assertEqual(recv_exact(s, 2), b"\x05\x00")
                reply = read_reply(s)
                self.assertEqual(reply.rep, 0x07, "CMD %#x: %r" % (cmd, reply))
                self.assertEqual(reply.atyp, ATYP_V4, "CMD %#x" % cmd)
                self.assert_closed(s, 3, "CMD %#x" % cmd)
            finally:
                s.close()
        for atyp in range(256):
            if atyp in (1, 3, 4):
                continue
            s = connect_to(self.proxy.addr)
            try:
                s.sendall(greeting() + bytes([5, 1, 0, atyp]) + os.urandom(20))
                self.assertEqual(recv_exact(s, 2), b"\x05\x00")
                reply = read_reply(s)
                self.assertEqual(reply.rep, 0x08, "ATYP %#x: %r" % (atyp, reply))
                self.assert_closed(s, 3, "ATYP %#x" % atyp)
            finally:
                s.close()
        self.assertEqual(self.echo.connections, 0)
        self.assert_serves()


class SelfLoop(HostileCase):
    SERVER = {"handshake_timeout": "1s"}

    def test_connect_to_own_listener_ends(self):
        # A CONNECT to itself is refused by the destination policy (SPEC
        # 4.5: never our own listeners), so it cannot loop.
        s = self.raw(self.proxy.addr)
        t0 = time.monotonic()
        s.sendall(greeting() + request(CMD_CONNECT, *self.proxy.addr))
        self.assertEqual(recv_exact(s, 2), b"\x05\x00")
        reply = read_reply(s)
        self.assertEqual(reply.rep, 0x02, reply)
        self.assert_closed(s, 5, "CONNECT to its own listener")
        self.assertLess(time.monotonic() - t0, 5)
        self.assert_serves()

    def test_nested_chain_through_itself(self):
        # 20 layers of CONNECT to itself, pipelined: the first is refused and
        # the rest is never read; the proxy serves on.
        depth = 20
        msg = b"".join(greeting() + request(CMD_CONNECT, *self.proxy.addr) for _ in range(depth))
        msg += greeting() + request(CMD_CONNECT, *self.echo.addr)
        s = self.raw(self.proxy.addr)
        s.sendall(msg)
        self.assertEqual(recv_exact(s, 2), b"\x05\x00")
        self.assertEqual(read_reply(s).rep, 0x02)
        self.assert_closed(s, 5, "a chain through itself")
        self.assert_serves()


class Slowloris(HostileCase):
    SERVER = {"handshake_timeout": "1s", "log_level": "info"}

    def test_200_stalled_clients_closed_at_handshake_timeout(self):
        socks = []
        opened = []
        try:
            for _ in range(200):
                s = connect_to(self.proxy.addr)
                s.sendall(b"\x05")
                socks.append(s)
                opened.append(time.monotonic())
            # The stall does not block anyone else.
            t0 = time.monotonic()
            self.assert_serves()
            self.assertLess(time.monotonic() - t0, 0.5, "normal client slow during the stall")
            closed = [None] * len(socks)
            for s in socks:
                s.setblocking(False)
            deadline = time.monotonic() + 6
            while None in closed and time.monotonic() < deadline:
                for i, s in enumerate(socks):
                    if closed[i] is not None:
                        continue
                    try:
                        data = s.recv(16)
                    except BlockingIOError:
                        continue
                    except ConnectionResetError:
                        data = b""
                    self.assertEqual(data, b"", "stalled client %d got %r" % (i, data))
                    closed[i] = time.monotonic()
                time.sleep(0.01)
            still = sum(1 for c in closed if c is None)
            self.assertEqual(still, 0, "%d stalled clients still open 6s later" % still)
            lives = [c - o for c, o in zip(closed, opened)]
            self.assertGreater(min(lives), 0.85, "closed before handshake_timeout")
            self.assertLess(max(lives), 3.0, "closed long after handshake_timeout (1s)")
        finally:
            for s in socks:
                s.close()
        self.assert_serves()

    def test_trickled_greeting_does_not_extend_the_deadline(self):
        s = self.raw(self.proxy.addr)
        t0 = time.monotonic()
        msg = b"\x05\xff" + bytes(range(1, 256))
        closed = None
        for b in msg[:20]:
            if not send_quietly(s, bytes([b])):
                closed = time.monotonic()
                break
            s.settimeout(0.2)
            try:
                if s.recv(16) == b"":
                    closed = time.monotonic()
                    break
            except socket.timeout:
                pass
            except ConnectionResetError:
                closed = time.monotonic()
                break
        self.assertIsNotNone(closed, "a greeting trickled for 4s was never cut off")
        self.assertLess(closed - t0, 2.5, "handshake_timeout is a deadline, not an idle timer")


class ResetStorm(HostileCase):
    SERVER = {"log_level": "info", "access_log": "off", "connect_timeout": "3s"}
    ITERATIONS = 2000
    THREADS = 4

    def storm(self):
        # A destination whose accept queue is full: connects to it hang, so
        # resets also land in the connecting state.
        full = socket.socket()
        self.addCleanup(full.close)
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        fillers = []
        for _ in range(3):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(full.getsockname())
            fillers.append(f)
        self.addCleanup(lambda: [f.close() for f in fillers])
        echo = self.echo.addr
        steps = [
            lambda s: None,
            lambda s: s.sendall(b"\x05"),
            lambda s: s.sendall(greeting()),
            lambda s: (s.sendall(greeting()), recv_exact(s, 2)),
            lambda s: s.sendall(greeting() + request(CMD_CONNECT, *echo)[:6]),
            lambda s: s.sendall(greeting() + request(CMD_CONNECT, *echo)),
            lambda s: s.sendall(greeting() + request(CMD_CONNECT, *full.getsockname())),
            lambda s: s.sendall(greeting() + request(CMD_CONNECT, "localhost", echo[1])),
            lambda s: (s.sendall(greeting() + request(CMD_CONNECT, *echo) + b"x" * 1000),
                       recv_exact(s, 12)),
            lambda s: (s.sendall(greeting() + request(CMD_CONNECT, *echo)), recv_exact(s, 12),
                       s.sendall(os.urandom(256 * 1024))),
        ]
        errors = []
        counter = iter(range(self.ITERATIONS))
        lock = threading.Lock()

        def worker():
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                try:
                    s = connect_to(self.proxy.addr, timeout=5)
                except OSError as e:
                    errors.append("connect %d: %r" % (i, e))
                    continue
                try:
                    steps[i % len(steps)](s)
                except (OSError, EOFError) as e:
                    errors.append("step %d: %r" % (i % len(steps), e))
                finally:
                    rst_close(s)

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(self.THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertFalse(any(t.is_alive() for t in threads), "reset storm did not finish")
        self.assertEqual(errors, [])
        self.assertIsNone(self.proxy.proc.poll(), "sockpool died")
        self.assert_serves()

    def test_clients_reset_at_every_handshake_step(self):
        self.storm()
        self.assert_drained(10)


class ResetStormWithReloads(ResetStorm):
    """The same storm while the configuration is reloaded back to back:
    sessions of every generation end, and every generation is freed."""

    ITERATIONS = 1000

    def test_clients_reset_at_every_handshake_step(self):
        held = [self.open(self.proxy.addr, *self.echo.addr)[0] for _ in range(3)]
        stop = threading.Event()
        reloads = [0]
        RELOADED = lambda l: l.startswith("INFO server: reloaded")

        def reloader():
            while not stop.is_set() and reloads[0] < 500:
                mark = self.proxy.mark()
                with open(self.proxy.conf_path, "a") as f:
                    f.write("; reload %d\n" % reloads[0])
                self.proxy.send_signal(signal.SIGHUP)
                if not self.proxy.err.wait(RELOADED, 5, mark):
                    return
                reloads[0] += 1
        t = threading.Thread(target=reloader, daemon=True)
        t.start()
        try:
            self.storm()
        finally:
            stop.set()
            t.join(10)
        self.assertGreaterEqual(reloads[0], 3, "reloads during the storm")
        for s in held:
            self.assertEcho(s)  # live connections are untouched by reloads
            s.close()
        self.assert_drained(10)


class Destinations(HostileCase):
    SERVER = {"log_level": "info"}

    def test_destination_resets_mid_transfer(self):
        # The client sends 256 KiB, then reads only once the destination has
        # reset with data still on its way: an RST and a FIN look different
        # to a client that is not sending.
        dest = self.start_server(MidReset)
        s, _ = self.open(self.proxy.addr, *dest.addr)
        s.sendall(os.urandom(256 * 1024))
        self.assertTrue(dest.reset.wait(30), "destination never reset")
        data, how = read_until_close(s, 10, limit=256 << 20)
        self.assertEqual(dest.wait_results(1), [256 * 1024])
        self.assertEqual(data, b"r" * len(data))
        self.assertEqual(how, "reset", "the destination's RST must reach the client as RST "
                         "(got %s after %d bytes)" % (how, len(data)))

    def test_destination_that_never_reads_bounds_memory(self):
        dest = self.start_server(GateSink)
        s, _ = self.open(self.proxy.addr, *dest.addr)
        dest.wait_connections(1)
        pid = self.proxy.proc.pid
        before = vm_rss_kib(pid)
        total, limit = 0, 200 << 20
        h = hashlib.sha256()
        chunk = os.urandom(1 << 16)
        s.setblocking(False)
        last = time.monotonic()
        while total < limit and time.monotonic() - last < 2.0:
            try:
                n = s.send(chunk)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            h.update(chunk[:n])
            total += n
            last = time.monotonic()
        after = vm_rss_kib(pid)
        self.assertLess(total, limit, "200 MB accepted towards a destination that reads nothing")
        self.assertLess(after - before, 32 * 1024,
                        "RSS grew by %d KiB with %d bytes stuck" % (after - before, total))
        # Released, everything arrives intact.
        dest.gate.set()
        s.setblocking(True)
        s.settimeout(30)
        tail = os.urandom(1 << 20)
        s.sendall(tail)
        h.update(tail)
        total += len(tail)
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(dest.wait_results(1), [(total, h.hexdigest())])

    def test_client_that_never_reads_bounds_memory(self):
        dest = self.start_server(Flooder, 200 << 20)
        s, _ = self.open(self.proxy.addr, *dest.addr)
        pid = self.proxy.proc.pid
        before = vm_rss_kib(pid)
        self.assertTrue(dest.stalled.wait(60), "flooder never stalled")
        after = vm_rss_kib(pid)
        sent = dest.wait_results(1)[0]
        self.assertLess(sent, 200 << 20, "200 MB accepted towards a client that reads nothing")
        self.assertLess(after - before, 32 * 1024, "RSS grew by %d KiB" % (after - before))
        dest.finish.set()
        h = hashlib.sha256()
        n = 0
        s.settimeout(30)
        while True:
            data = s.recv(1 << 18)
            if not data:
                break
            h.update(data)
            n += len(data)
        self.assertEqual(dest.wait_results(2)[1], (n, h.hexdigest()))

    def test_pipelined_greeting_request_and_64k_early_data(self):
        sink = self.start_server(SinkServer)
        payload = os.urandom(64 * 1024)
        s = self.raw(self.proxy.addr)
        s.sendall(greeting() + request(CMD_CONNECT, *sink.addr) + payload)
        self.assertEqual(recv_exact(s, 2), b"\x05\x00")
        self.assertEqual(read_reply(s).rep, 0)
        s.shutdown(socket.SHUT_WR)
        data, how = read_until_close(s, 10)
        self.assertEqual(how, "eof")
        self.assertEqual(data, b"%d %s\n" % (len(payload), hashlib.sha256(payload).hexdigest().encode()))

    def half_close_before_reply(self, host, port):
        payload = os.urandom(200 * 1024)
        s = self.raw(self.proxy.addr)
        s.sendall(greeting() + request(CMD_CONNECT, host, port) + payload)
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(recv_exact(s, 2), b"\x05\x00")
        self.assertEqual(read_reply(s).rep, 0)
        data, how = read_until_close(s, 10)
        self.assertEqual(how, "eof")
        return payload, data

    def test_half_close_right_after_the_request(self):
        sink = self.start_server(SinkServer)
        for host in ("127.0.0.1", "localhost"):
            payload, data = self.half_close_before_reply(host, sink.port)
            self.assertEqual(data, b"%d %s\n" % (len(payload),
                                                  hashlib.sha256(payload).hexdigest().encode()),
                             "via %s" % host)


class PasswordHostile(HostileCase):
    SERVER = {"auth": "password", "log_level": "info", "access_log": "off"}
    LONG_PW = "".join(chr(33 + (i * 7) % 90) for i in range(255))

    def sections(self):
        return LOOPBACK_SOURCES + (
            '\n[user "plain"]\npassword = plain-pw\n\n'
            '[user "hashed"]\npassword_hash = %s\n\n'
            '[user "long"]\npassword_hash = %s\n' % (
                sha512_crypt("hashed-pw", 20000), sha512_crypt(self.LONG_PW, 5000)))

    def login(self, user, password, dest=None):
        """(status byte, socket or None). On success the CONNECT reply is checked."""
        s = connect_to(self.proxy.addr, timeout=30)
        u = user if isinstance(user, bytes) else user.encode()
        p = password if isinstance(password, bytes) else password.encode()
        s.sendall(greeting((2,)) + bytes([1, len(u)]) + u + bytes([len(p)]) + p +
                  request(CMD_CONNECT, *(dest or self.echo.addr)))
        self.assertEqual(recv_exact(s, 2), b"\x05\x02")
        st = recv_exact(s, 2)
        self.assertEqual(st[0], 1)
        if st[1] != 0:
            data, _ = self.assert_closed(s, 3, "after a failed login")
            self.assertEqual(data, b"")
            s.close()
            return st[1], None
        self.assertEqual(read_reply(s).rep, 0)
        return 0, s

    def assert_login(self, user, password, ok):
        st, s = self.login(user, password)
        if s:
            self.assertEcho(s)
            s.close()
        self.assertEqual(st == 0, ok, "login %r/%r" % (user[:20], password[:20]))

    def test_wrong_password_1000_times_does_not_stall_others(self):
        self.assert_login("hashed", "hashed-pw", True)  # cached from now on
        stop = threading.Event()
        bad = {"rejected": 0, "other": []}
        lock = threading.Lock()
        todo = iter(range(1000))

        def hammer():
            while not stop.is_set():
                with lock:
                    i = next(todo, None)
                if i is None:
                    return
                try:
                    st, s = self.login("hashed", "wrong-%d" % i)
                    with lock:
                        if st != 0:
                            bad["rejected"] += 1
                        else:
                            bad["other"].append("accepted wrong-%d" % i)
                            s.close()
                except Exception as e:
                    with lock:
                        bad["other"].append(repr(e))
        threads = [threading.Thread(target=hammer, daemon=True) for _ in range(16)]
        for t in threads:
            t.start()
        lat = {"plain": [], "hashed": []}
        try:
            time.sleep(0.3)
            deadline = time.monotonic() + 60
            while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
                for user in lat:
                    t0 = time.monotonic()
                    st, s = self.login(user, user + "-pw")
                    lat[user].append(time.monotonic() - t0)
                    self.assertEqual(st, 0, user)
                    s.close()
                time.sleep(0.05)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        self.assertEqual(bad["other"], [])
        self.assertEqual(bad["rejected"], 1000)
        for user, xs in lat.items():
            xs.sort()
            self.assertGreaterEqual(len(xs), 5, "too few samples for %s" % user)
            med, worst = xs[len(xs) // 2], xs[-1]
            self.assertLess(med, 0.06, "%s: median handshake %.0f ms while bad logins hammer"
                            % (user, med * 1000))
            self.assertLess(worst, 0.5, "%s: worst handshake %.0f ms" % (user, worst * 1000))

    def test_username_of_255_bytes(self):
        self.assert_login("u" * 255, "x", False)
        self.assert_login("u" * 255, "x" * 255, False)
        self.assert_serves_auth()

    def test_password_of_255_bytes(self):
        self.assertEqual(len(self.LONG_PW), 255)
        self.assert_login("long", self.LONG_PW, True)
        self.assert_login("long", self.LONG_PW[:254], False)
        self.assert_login("long", self.LONG_PW[:254] + "!", False)
        self.assert_login("plain", "p" * 255, False)

    def test_password_with_nul(self):
        # crypt(3) stops at a NUL: "hashed-pw\0junk" must not pass as "hashed-pw".
        self.assert_login("hashed", b"hashed-pw\x00junk", False)
        self.assert_login("hashed", b"hashed-pw\x00", False)
        self.assert_login("plain", b"plain-pw\x00", False)
        self.assert_login("plain", b"plain\x00-pw", False)
        # ... and once the good password is cached, still not.
        self.assert_login("hashed", "hashed-pw", True)
        self.assert_login("hashed", b"hashed-pw\x00junk", False)

    def test_bad_subnegotiation_shapes(self):
        for msg in (b"\x05\x05plain\x08plain-pw",       # wrong version
                    b"\x01\x00\x08plain-pw",             # ULEN 0
                    b"\x01\x05pl\x00in\x08plain-pw",     # NUL in the name
                    b"\x01\x05plain\x00"):               # empty password
            s = self.raw(self.proxy.addr)
            s.sendall(greeting((2,)) + msg + request(CMD_CONNECT, *self.echo.addr))
            self.assertEqual(recv_exact(s, 2), b"\x05\x02")
            data, _ = self.assert_closed(s, 3, "auth %s" % msg.hex())
            self.assertEqual(len(data), 2, "one status, then close: %s" % data.hex())
            self.assertEqual(data[0], 1)
            self.assertNotEqual(data[1], 0, "auth %s accepted" % msg.hex())
        self.assertEqual(self.echo.connections, 0)

    def pipelined_login(self, user, early):
        """greeting + auth + CONNECT + early data + FIN in one go, to a sink."""
        sink = self.start_server(SinkServer)
        payload = os.urandom(early)
        s = self.raw(self.proxy.addr)
        s.sendall(greeting((2,)) + userpass(user, user + "-pw") +
                  request(CMD_CONNECT, *sink.addr) + payload)
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(recv_exact(s, 2), b"\x05\x02")
        self.assertEqual(recv_exact(s, 2), b"\x01\x00")
        try:
            reply = read_reply(s)
        except (ConnectionResetError, EOFError) as e:
            self.fail("user %s, %d bytes of early data: %r after the auth status" % (
                user, early, e))
        self.assertEqual(reply.rep, 0)
        data, how = read_until_close(s, 10)
        self.assertEqual(how, "eof", user)
        self.assertEqual(data, b"%d %s\n" % (len(payload),
                                              hashlib.sha256(payload).hexdigest().encode()),
                         user)

    def test_pipelined_auth_request_early_data_and_half_close(self):
        for user in ("plain", "hashed"):
            self.pipelined_login(user, 300)

    def test_pipelined_auth_with_64k_early_data_during_the_crypt_check(self):
        # More early data than the handshake buffer holds arrives while the
        # (uncached) password is checked off the loop.
        self.pipelined_login("plain", 64 * 1024)
        self.pipelined_login("hashed", 64 * 1024)

    def test_bad_logins_do_not_delay_dns_of_good_clients(self):
        # Bad passwords cost a crypt each; they must not hold up the domain
        # lookups of clients that did log in.
        self.assert_login("plain", "plain-pw", True)
        stop = threading.Event()

        def hammer():
            while not stop.is_set():
                try:
                    st, s = self.login("hashed", "bad")
                except Exception:
                    continue
                if s:
                    s.close()
        threads = [threading.Thread(target=hammer, daemon=True) for _ in range(64)]
        for t in threads:
            t.start()
        lat = {"localhost": [], "127.0.0.1": []}
        try:
            time.sleep(1.0)
            for _ in range(15):
                for host, xs in lat.items():
                    t0 = time.monotonic()
                    st, s = self.login("plain", "plain-pw", dest=(host, self.echo.port))
                    xs.append(time.monotonic() - t0)
                    self.assertEqual(st, 0)
                    s.close()
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        med = {h: sorted(xs)[len(xs) // 2] * 1000 for h, xs in lat.items()}
        self.assertLess(med["127.0.0.1"], 100, "the loop itself is slow: %r ms" % med)
        self.assertLess(med["localhost"], 100,
                        "median CONNECT (ms) while 64 clients send bad passwords: %r; DNS "
                        "waits behind crypt in the shared libuv threadpool" % med)

    def test_resets_while_the_password_is_checked(self):
        # The client is gone (RST) while crypt runs off the loop.
        for i in range(300):
            s = connect_to(self.proxy.addr)
            s.sendall(greeting((2,)) + userpass("hashed", "nope-%d" % i) +
                      request(CMD_CONNECT, *self.echo.addr))
            if i % 3:
                recv_exact(s, 2)
            rst_close(s)
        self.assert_serves_auth()
        self.assert_drained(15)

    def test_sigterm_during_a_bad_login_storm_exits_0(self):
        stop = threading.Event()

        def hammer():
            while not stop.is_set():
                try:
                    s = connect_to(self.proxy.addr, timeout=5)
                except OSError:
                    return  # the listener is gone: shutdown has begun
                try:
                    s.sendall(greeting((2,)) + userpass("hashed", "bad") +
                              request(CMD_CONNECT, *self.echo.addr))
                    read_until_close(s, 5)
                except OSError:
                    pass
                finally:
                    s.close()
        threads = [threading.Thread(target=hammer, daemon=True) for _ in range(12)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        self.proxy.send_signal(signal.SIGTERM)
        rc = self.proxy.wait_exit(10)
        stop.set()
        for t in threads:
            t.join(10)
        self.assertEqual(rc, 0, "exit status during a bad-login storm")
        self.proxy.stop()  # the sanitizer check

    def assert_serves_auth(self):
        st, s = self.login("plain", "plain-pw")
        self.assertEqual(st, 0)
        self.assertEcho(s)
        s.close()


class UnresolvableLongName(NetnsCase):
    """In an empty namespace, so the DNS query cannot leave the machine."""

    def test_domain_of_255_bytes_that_does_not_resolve_replies_04(self):
        proxy = self.start_proxy(make_config(log_level="debug", access_log="on"))
        name = ".".join(["a" * 63] * 3) + "." + "b" * 61 + ".x"
        name = name[:255]
        self.assertEqual(len(name), 255)
        s = self.raw(proxy.addr)
        s.sendall(greeting() + request(CMD_CONNECT, name, 25))
        self.assertEqual(recv_exact(s, 2), b"\x05\x00")
        reply = read_reply(s)
        self.assertEqual(reply.rep, 0x04, reply)
        self.assertEqual(reply.atyp, ATYP_DOMAIN)
        data, how = read_until_close(s, 5)
        self.assertIn(how, ("eof", "reset"))


if __name__ == "__main__":
    main()
