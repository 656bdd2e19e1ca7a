"""Real clients through the proxy: curl (--socks5, --socks5-hostname), ncat,
PySocks and proxychains4."""

import os
import socket
import subprocess
import tempfile

import socks

from harness import (EchoServer, ProxyCase, fmt_hostport, http_body, main, make_config,
                     sockpool_only)

CLIENT_TIMEOUT = 30


def run_client(argv, data=None):
    return subprocess.run(argv, input=data, capture_output=True, timeout=CLIENT_TIMEOUT)


class Clients(ProxyCase):
    def setUp(self):
        self.proxy = self.start_proxy()
        self.http = self.start_http()
        self.echo = self.start_server(EchoServer)
        self.paddr = fmt_hostport(*self.proxy.addr)

    def curl(self, *args):
        p = run_client(["curl", "-sS", "--fail", "--max-time", "20", *args])
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))
        return p.stdout

    def test_curl_socks5(self):
        for n in (1, 100_000, 5_000_000):
            body = self.curl("--socks5", self.paddr,
                             "http://127.0.0.1:%d/data/%d" % (self.http.port, n))
            self.assertTrue(body == http_body(n), "body of %d bytes differs (got %d)" % (
                n, len(body)))

    def test_curl_socks5_hostname_localhost(self):
        body = self.curl("--socks5-hostname", self.paddr,
                         "http://localhost:%d/data/300000" % self.http.port)
        self.assertTrue(body == http_body(300000), "body differs (got %d)" % len(body))

    def test_curl_socks5h_url_scheme_keepalive_two_requests(self):
        url = "http://localhost:%d/data/%%d" % self.http.port
        body = self.curl("--proxy", "socks5h://" + self.paddr, url % 1000, url % 2000)
        self.assertEqual(body, http_body(1000) + http_body(2000))

    @sockpool_only
    def test_curl_via_ipv6_listener(self):
        proxy6 = self.start_proxy(make_config(listen=["[::1]:0"]))
        body = self.curl("--socks5", fmt_hostport(*proxy6.addr),
                         "http://127.0.0.1:%d/data/4321" % self.http.port)
        self.assertEqual(body, http_body(4321))

    def test_ncat_socks5(self):
        data = b"".join(b"line %d of the ncat test\n" % i for i in range(2000))
        p = run_client(["ncat", "--proxy", self.paddr, "--proxy-type", "socks5",
                        "127.0.0.1", str(self.echo.port)], data)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))
        self.assertEqual(p.stdout, data)

    def test_ncat_socks5_remote_dns(self):
        p = run_client(["ncat", "--proxy", self.paddr, "--proxy-type", "socks5",
                        "--proxy-dns", "remote", "localhost", str(self.echo.port)],
                       b"remote dns\n")
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))
        self.assertEqual(p.stdout, b"remote dns\n")

    def pysocks(self, host, rdns):
        s = socks.socksocket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(s.close)
        s.settimeout(10)
        s.set_proxy(socks.SOCKS5, self.proxy.addr[0], self.proxy.addr[1], rdns=rdns)
        s.connect((host, self.echo.port))
        return s

    def test_pysocks(self):
        s = self.pysocks("127.0.0.1", False)
        self.assertEcho(s, b"pysocks\n" * 1000)

    def test_pysocks_remote_dns(self):
        s = self.pysocks("localhost", True)
        self.assertEcho(s, b"pysocks rdns\n")

    def test_proxychains4_curl(self):
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
            f.write("strict_chain\nquiet_mode\ntcp_read_time_out 15000\n"
                    "tcp_connect_time_out 8000\n[ProxyList]\nsocks5 %s %d\n" % self.proxy.addr)
        self.addCleanup(os.unlink, f.name)
        p = run_client(["proxychains4", "-q", "-f", f.name, "curl", "-sS", "--fail",
                        "--max-time", "20", "http://127.0.0.1:%d/data/77777" % self.http.port])
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))
        self.assertTrue(p.stdout == http_body(77777), "body differs")


if __name__ == "__main__":
    main()
