"""Exim's SOCKS client as it behaves on the wire (src/transports/smtp_socks.c):
the greeting goes out as TCP Fast Open data with one method, and every reply
is taken with a single read() of exactly the request's length, so a reply
split over two writes, or of another address type, breaks Exim."""

import socket

from harness import TCPServer, ProxyCase, main, make_config

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


if __name__ == "__main__":
    main()
