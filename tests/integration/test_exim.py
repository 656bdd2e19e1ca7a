"""Exim's SOCKS client as it behaves on the wire (src/transports/smtp_socks.c):
the greeting goes out as TCP Fast Open data with one method, and every reply
is taken with a single read() of exactly the request's length, so a reply
split over two writes, or of another address type, breaks Exim.

Then examples/exim.ini as shipped: its socks_proxy lines, read from its
comments, log in and egress from its pools, first replayed on the wire, then
by Debian's real Exim (exim4-daemon-heavy, built with SOCKS) delivering a
message through it; with another pass= Exim logs "socks auth failed"."""

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile

from harness import NetnsCase, SOURCE_ROOT, TCPServer, ProxyCase, main, make_config

EXIM_EXAMPLE = os.path.join(SOURCE_ROOT, "examples", "exim.ini")

BANNER = b"220 mx.test ESMTP ready\r\n"
MSG_FASTOPEN = getattr(socket, "MSG_FASTOPEN", 0x20000000)


class SmtpBanner(TCPServer):
    """Greets like an SMTP server, echoes one line, closes."""

    def handle(self, conn, peer):
        conn.sendall(BANNER)
        line = b""
        while not line.endswith(b"\n"):
            data = conn.recv(1024)
            if not data:
                return
            line += data
        conn.sendall(b"250 " + line)


def one_read(sock, n):
    """What Exim does: one read() of n bytes, whatever arrives."""
    return sock.recv(n)


def exim_connect(proxy_addr, greeting):
    """Greeting as Fast Open data, as Exim sends it."""
    family = socket.AF_INET6 if ":" in proxy_addr[0] else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.sendto(greeting, MSG_FASTOPEN, proxy_addr)  # blocking: it connects, too
    s.settimeout(10)
    return s


def request(host, port):
    if ":" in host:
        return (b"\x05\x01\x00\x04" + socket.inet_pton(socket.AF_INET6, host) +
                port.to_bytes(2, "big"))
    return b"\x05\x01\x00\x01" + socket.inet_aton(host) + port.to_bytes(2, "big")


class Exim(ProxyCase):
    def run_exim(self, proxy_addr, dest, auth=None):
        methods = b"\x02" if auth else b"\x00"
        s = exim_connect(proxy_addr, b"\x05\x01" + methods)
        self.addCleanup(s.close)
        self.assertEqual(one_read(s, 2), b"\x05" + methods)
        if auth:
            user, pw = auth
            s.sendall(bytes([1, len(user)]) + user + bytes([len(pw)]) + pw)
            self.assertEqual(one_read(s, 2), b"\x01\x00")
        req = request(*dest)
        s.sendall(req)
        reply = one_read(s, len(req))
        self.assertEqual(len(reply), len(req), "reply %r is not one read of %d bytes" %
                         (reply, len(req)))
        self.assertEqual(reply[:4], b"\x05\x00\x00" + req[3:4], reply)
        got = b""
        while not got.endswith(b"\r\n"):
            data = s.recv(1024)
            self.assertTrue(data, "no banner")
            got += data
        self.assertEqual(got, BANNER)
        s.sendall(b"EHLO exim.test\r\n")
        got = b""
        while not got.endswith(b"\n"):
            data = s.recv(1024)
            self.assertTrue(data, "no answer")
            got += data
        self.assertEqual(got, b"250 EHLO exim.test\r\n")

    def test_fast_open_greeting_ipv4_one_read_replies(self):
        proxy = self.start_proxy()
        smtp = self.start_server(SmtpBanner)
        for _ in range(3):  # the first connection gets the TFO cookie, later ones use it
            self.run_exim(proxy.addr, smtp.addr)

    def test_ipv6_request_gets_a_22_byte_reply_in_one_read(self):
        proxy = self.start_proxy(make_config(listen=("[::1]:0",), sections=(
            '[source "lo6"]\naddress = ::1\n\n[pool "main"]\nsource = lo6\n')))
        smtp = self.start_server(SmtpBanner, "::1")
        self.run_exim(proxy.listener(socket.AF_INET6), smtp.addr)

    def test_password_auth_one_read_replies(self):
        proxy = self.start_proxy(make_config(auth="password", sections=(
            '[source "lo4"]\naddress = 127.0.0.1\n\n[pool "main"]\nsource = lo4\n\n'
            '[user "exim"]\npassword = s3cret\npool = main\n')))
        smtp = self.start_server(SmtpBanner)
        self.run_exim(proxy.addr, smtp.addr, auth=(b"exim", b"s3cret"))

    def test_empty_password_as_exim_sends_without_one_is_refused(self):
        proxy = self.start_proxy(make_config(auth="password", sections=(
            '[source "lo4"]\naddress = 127.0.0.1\n\n[pool "main"]\nsource = lo4\n\n'
            '[user "exim"]\npassword = s3cret\npool = main\n')))
        s = exim_connect(proxy.addr, b"\x05\x01\x02")
        self.addCleanup(s.close)
        self.assertEqual(one_read(s, 2), b"\x05\x02")
        s.sendall(b"\x01\x04exim\x00")
        self.assertEqual(one_read(s, 2), b"\x01\x01")
        self.assertEqual(s.recv(1), b"")


def example_transports(path=EXIM_EXAMPLE):
    """The Exim transports quoted in the example's comments: name -> the
    socks_proxy option list as Exim parses it (host, port=, auth=, name=, pass=)."""
    transports, current = {}, None
    with open(path) as f:
        for line in f:
            m = re.match(r"^;\s+([a-z_]+):\s*$", line)
            if m:
                current = m.group(1)
                continue
            m = re.match(r"^;\s+socks_proxy\s*=\s*(.+?)\s*$", line)
            if m and current:
                host, *opts = m.group(1).split()
                transports[current] = dict(o.split("=", 1) for o in opts)
                transports[current]["host"] = host
    return transports


class ExampleSnippet(NetnsCase):
    """examples/exim.ini run as shipped, in a namespace holding its source
    addresses, and Exim's socks_proxy lines from its comments used as written."""

    ADDRS = ("192.0.2.20", "192.0.2.21", "198.51.100.20")

    def setUp(self):
        super().setUp()
        self.transports = example_transports()
        with open(EXIM_EXAMPLE) as f:
            self.proxy = self.start_proxy(f.read())
        self.smtp = self.start_server(SmtpBanner)

    def deliver(self, transport):
        t = self.transports[transport]
        self.assertEqual(t.get("auth"), "name", t)
        auth = (t["name"].encode(), t["pass"].encode())
        # Exim connects to host and port= exactly as the snippet says.
        Exim.run_exim(self, (t["host"], int(t.get("port", "1080"))), self.smtp.addr, auth=auth)
        return self.smtp.peers[-1][0]

    def test_the_example_quotes_both_transports(self):
        self.assertEqual(set(self.transports), {"remote_smtp", "remote_smtp_bulk"})

    def test_remote_smtp_logs_in_and_leaves_from_the_failover_tier(self):
        peers = {self.deliver("remote_smtp") for _ in range(4)}
        self.assertTrue(peers <= {"192.0.2.20", "192.0.2.21"}, peers)
        self.assertEqual(len(peers), 2, "mx-a and mx-b share the traffic: %r" % peers)

    def test_remote_smtp_bulk_logs_in_and_hashes_the_destination(self):
        peers = {self.deliver("remote_smtp_bulk") for _ in range(3)}
        self.assertEqual(len(peers), 1, peers)
        self.assertTrue(peers <= {"192.0.2.20", "192.0.2.21"}, peers)

    def test_a_password_other_than_the_snippets_is_refused(self):
        t = self.transports["remote_smtp"]
        s = exim_connect((t["host"], int(t["port"])), b"\x05\x01\x02")
        self.addCleanup(s.close)
        self.assertEqual(one_read(s, 2), b"\x05\x02")
        user, pw = t["name"].encode(), b"secret"
        s.sendall(bytes([1, len(user)]) + user + bytes([len(pw)]) + pw)
        self.assertEqual(one_read(s, 2), b"\x01\x01")


class SmtpSink(TCPServer):
    """Enough SMTP for one Exim delivery; records each message and its peer."""

    def handle(self, conn, peer):
        f = conn.makefile("rwb")

        def say(line):
            f.write(line + b"\r\n")
            f.flush()
        say(b"220 mx.test ESMTP sink")
        data, in_data = [], False
        for raw in f:
            line = raw.rstrip(b"\r\n")
            if in_data:
                if line == b".":
                    in_data = False
                    with self.cond:
                        self.results.append((peer[0], b"\n".join(data)))
                        self.cond.notify_all()
                    say(b"250 queued")
                else:
                    data.append(line)
                continue
            verb = line[:4].upper()
            if verb == b"EHLO":
                say(b"250-mx.test")
                say(b"250 8BITMIME")
            elif verb == b"HELO":
                say(b"250 mx.test")
            elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                say(b"250 ok")
            elif verb == b"DATA":
                in_data, data = True, []
                say(b"354 go ahead")
            elif verb == b"QUIT":
                say(b"221 bye")
                return
            else:
                say(b"500 what")


EXIM_CONF = """\
primary_hostname = exim.test
exim_user = Debian-exim
exim_group = Debian-exim
spool_directory = {dir}/spool
log_file_path = {dir}/%slog
keep_environment =
host_lookup =
rfc1413_hosts =

begin routers

to_sink:
  driver = manualroute
  domains = *
  transport = {transport}
  route_list = * 127.0.0.1::{port}
  self = send
  no_more

begin transports

{transport}:
  driver = smtp
  {socks_proxy}
  allow_localhost

begin retry

* * F,1m,1m
"""


def example_socks_lines(path=EXIM_EXAMPLE):
    """transport -> its `socks_proxy = ...` line, verbatim from the example."""
    out, current = {}, None
    with open(path) as f:
        for line in f:
            m = re.match(r"^;\s+([a-z_]+):\s*$", line)
            if m:
                current = m.group(1)
            m = re.match(r"^;\s+(socks_proxy\s*=.*?)\s*$", line)
            if m and current:
                out[current] = m.group(1)
    return out


class RealExim(NetnsCase):
    """Debian's exim4-daemon-heavy (built with SOCKS) delivers one message
    through examples/exim.ini with the example's own socks_proxy lines."""

    ADDRS = ExampleSnippet.ADDRS

    def setUp(self):
        super().setUp()
        self.exim = shutil.which("exim4") or shutil.which("exim")
        self.assertIsNotNone(self.exim, "exim4 (Debian exim4-daemon-heavy) is not installed")
        with open(EXIM_EXAMPLE) as f:
            self.proxy = self.start_proxy(f.read())
        self.sink = self.start_server(SmtpSink)
        self.dir = tempfile.mkdtemp(prefix="sockpool-exim-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        # Exim writes its spool and logs as its own user.
        exim_user = pwd.getpwnam("Debian-exim")
        os.chown(self.dir, exim_user.pw_uid, exim_user.pw_gid)

    def deliver(self, transport, socks_line):
        conf = os.path.join(self.dir, transport + ".conf")
        with open(conf, "w") as f:
            f.write(EXIM_CONF.format(dir=self.dir, transport=transport, port=self.sink.port,
                                     socks_proxy=socks_line))
        msg = b"From: a@exim.test\nTo: b@dest.test\nSubject: via %s\n\nhello\n" % (
            transport.encode())
        r = subprocess.run([self.exim, "-C", conf, "-odi", "-oi", "-f", "a@exim.test",
                            "b@dest.test"], input=msg, capture_output=True, timeout=60)
        try:
            with open(os.path.join(self.dir, "mainlog"), errors="replace") as f:
                self.mainlog = f.read()
        except FileNotFoundError:
            self.mainlog = "(no mainlog) " + r.stderr.decode(errors="replace")
        return r

    def test_remote_smtp_delivers_from_a_pool_source(self):
        line = example_socks_lines()["remote_smtp"]
        r = self.deliver("remote_smtp", line)
        self.assertEqual(r.returncode, 0, r.stderr.decode() + self.mainlog)
        self.assertRegex(self.mainlog, r"=> b@dest\.test .*T=remote_smtp", self.mainlog)
        self.assertEqual(len(self.sink.results), 1, self.mainlog)
        peer, body = self.sink.results[0]
        self.assertIn(peer, ("192.0.2.20", "192.0.2.21"))
        self.assertIn(b"Subject: via remote_smtp", body)

    def test_remote_smtp_bulk_delivers(self):
        line = example_socks_lines()["remote_smtp_bulk"]
        r = self.deliver("remote_smtp_bulk", line)
        self.assertEqual(r.returncode, 0, r.stderr.decode() + self.mainlog)
        self.assertEqual(len(self.sink.results), 1, self.mainlog)
        self.assertIn(self.sink.results[0][0], ("192.0.2.20", "192.0.2.21"))

    def test_a_wrong_pass_is_what_exim_reports_as_socks_auth_failed(self):
        line = example_socks_lines()["remote_smtp"].replace("pass=change-me", "pass=secret")
        self.deliver("remote_smtp", line)
        self.assertEqual(self.sink.results, [])
        self.assertIn("socks auth failed", self.mainlog)


if __name__ == "__main__":
    main()
