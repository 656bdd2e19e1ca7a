"""`sockpool --healthcheck [-c FILE]`: the container HEALTHCHECK that follows
the configuration it is given. With admin_listen it GETs /healthz there (0 on
200, else 1); with the admin endpoint off it sends a SOCKS5 greeting to the
first listener. A probe that gets no answer gives up within its timeout."""

import os
import re
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

from harness import (SOCKPOOL_BIN, ProxyCase, fmt_hostport, main, make_config,
                     parse_hostport)

ONE_SOURCE = """\
[source "lo4"]
address = 127.0.0.1

[pool "main"]
source = lo4
"""


class Healthcheck(ProxyCase):
    def write_config(self, text):
        fd, path = tempfile.mkstemp(prefix="sockpool-hc-", suffix=".ini")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        self.addCleanup(os.unlink, path)
        return path

    def healthcheck(self, config_text=None, path=None):
        args = [SOCKPOOL_BIN, "--healthcheck"]
        if config_text is not None:
            path = self.write_config(config_text)
        if path:
            args += ["-c", path]
        started = time.monotonic()
        r = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=20)
        return r.returncode, r.stdout + r.stderr, time.monotonic() - started

    def start_with_admin(self, admin="127.0.0.1:0", sections=ONE_SOURCE, **server):
        proxy = self.start_proxy(make_config(listen=("127.0.0.2:0",), sections=sections,
                                             admin_listen=admin, **server))
        line = [l for l in proxy.log() if l.startswith("INFO admin: listening ")][0]
        return proxy, parse_hostport(re.search(r"\baddr=(\S+)", line).group(1))

    def test_admin_healthz_200_is_healthy(self):
        proxy, admin = self.start_with_admin()
        rc, out, _ = self.healthcheck(make_config(
            listen=("127.0.0.2:1",), sections=ONE_SOURCE, admin_listen=fmt_hostport(*admin)))
        self.assertEqual(rc, 0, out)
        self.assertIn("GET /healthz 200", out)

    def test_admin_healthz_503_is_unhealthy(self):
        proxy, admin = self.start_with_admin()
        cfg = make_config(listen=("127.0.0.2:1",), sections=ONE_SOURCE,
                          admin_listen=fmt_hostport(*admin))
        # The default pool's only source suspended: /healthz says 503.
        req = urllib.request.Request("http://%s/sources/lo4/suspend?duration=5m" %
                                     fmt_hostport(*admin), method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=10) as r:
            self.assertEqual(r.status, 200)
        rc, out, _ = self.healthcheck(cfg)
        self.assertEqual(rc, 1, out)
        self.assertIn("503", out)
        urllib.request.urlopen(urllib.request.Request(
            "http://%s/sources/lo4/resume" % fmt_hostport(*admin), method="POST", data=b""),
            timeout=10).close()
        rc, out, _ = self.healthcheck(cfg)
        self.assertEqual(rc, 0, out)

    def test_unspecified_admin_address_is_probed_on_loopback(self):
        proxy, admin = self.start_with_admin("0.0.0.0:0")
        rc, out, _ = self.healthcheck(make_config(
            listen=("127.0.0.2:1",), sections=ONE_SOURCE, admin_listen="0.0.0.0:%d" % admin[1]))
        self.assertEqual(rc, 0, out)
        self.assertIn("127.0.0.1:%d" % admin[1], out)

    def test_admin_off_probes_the_first_listener_with_a_greeting(self):
        proxy = self.start_proxy(make_config(sections=ONE_SOURCE))
        cfg = make_config(listen=(fmt_hostport(*proxy.addr),), sections=ONE_SOURCE)
        rc, out, _ = self.healthcheck(cfg)
        self.assertEqual(rc, 0, out)
        self.assertIn("SOCKS5 method 0", out)
        proxy.stop()
        rc, out, _ = self.healthcheck(cfg)
        self.assertEqual(rc, 1, out)
        self.assertIn("refused", out)

    def test_greeting_with_password_auth(self):
        sections = ONE_SOURCE + '\n[user "u"]\npassword = pw\npool = main\n'
        proxy = self.start_proxy(make_config(sections=sections, auth="password"))
        rc, out, _ = self.healthcheck(make_config(
            listen=(fmt_hostport(*proxy.addr),), sections=sections, auth="password"))
        self.assertEqual(rc, 0, out)
        self.assertIn("SOCKS5 method 2", out)

    def test_nothing_listening_is_unhealthy(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        rc, out, _ = self.healthcheck(make_config(listen=("127.0.0.2:1",),
                                                  admin_listen="127.0.0.1:%d" % port))
        self.assertEqual(rc, 1, out)

    def test_silent_or_wrong_peer_is_unhealthy_within_the_timeout(self):
        # Accepts and never answers, then one that answers 500.
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        self.addCleanup(srv.close)
        port = srv.getsockname()[1]
        cfg = make_config(listen=("127.0.0.2:1",), admin_listen="127.0.0.1:%d" % port)
        rc, out, took = self.healthcheck(cfg)
        self.assertEqual(rc, 1, out)
        self.assertIn("timed out", out)
        self.assertLess(took, 6.0)

        def answer():
            c, _ = srv.accept()
            c.recv(1024)
            c.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
            c.close()
        srv.accept()[0].close()  # the connection the first probe left behind
        t = threading.Thread(target=answer, daemon=True)
        t.start()
        rc, out, _ = self.healthcheck(cfg)
        t.join(10)
        self.assertEqual(rc, 1, out)
        self.assertIn("500", out)

    def test_bad_config_is_unhealthy(self):
        rc, out, _ = self.healthcheck("[server]\nnot_a_key = 1\n")
        self.assertEqual(rc, 1, out)
        self.assertIn("not_a_key", out)


if __name__ == "__main__":
    main()
