"""Command line and configuration: --check, --version, --help, errors that
name file:line and the key, refusal to start on a bad file, SIGHUP reload."""

import os
import re
import signal
import subprocess
import tempfile
import time
import unittest

from harness import (BASE_CONFIG, CMD_CONNECT, SOCKPOOL_BIN, EchoServer, ProxyCase,
                     crypt_hash, main, make_config, negotiate, read_reply, request)

GOOD_FULL = """\
[server]
listen = 127.0.0.1:0
listen = [::1]:0 pool=warm
listen = 0.0.0.0:1082 source=same
admin_listen =
allow = 127.0.0.0/8, ::1/128
auth = password
default_pool = main
handshake_timeout = 10s
connect_timeout = 30s
idle_timeout = 10m
max_connections = 20000
bind_unlisted = deny
deny_destinations = 169.254.0.0/16, fe80::/10
tcp_keepalive = 5m
on_pool_exhausted = reply
log_level = info
access_log = off
workers = auto
max_connections_per_client = 1000
shutdown_timeout = 30s
admin_token =
user =

[defaults]
suspend_when_unplumbed.trigger = immediate
suspend_when_unplumbed.duration = 5m

[source "ip-1"]
address = 192.0.2.10
suspend_when_unplumbed.trigger = 3/1m   ; N failures within a rolling window
suspend_when_unplumbed.duration = 5m
max_connections = 500
rate = 100/s
resume_when_plumbed = no

[source "ip-2"]
address = 192.0.2.11
suspend_when_unplumbed.trigger = 1,000/hr
suspend_when_unplumbed.duration = 5 mins

[source "ip-3"]
address = 2001:db8::11

[source "v6net"]
prefix = 2001:db8:1::/64
prefix_pick = hash

[source "far-1"]
socks5_proxy_server = 198.51.100.7:1080
socks5_proxy_source_address = 203.0.113.5
socks5_proxy_username = relay
socks5_proxy_password = secret
suspend_when_proxy_unhealthy.trigger = 3/5m
suspend_when_proxy_unhealthy.duration = 10m

[pool "main"]
strategy = round-robin
source = ip-1 weight=2
source = ip-2, ip-3
source = 192.0.2.99 weight=0

[pool "warm"]
strategy = failover
source = ip-1 priority=1
source = ip-2 priority=2; far-1 priority=3

[pool "hashed"]
strategy = hash
hash_key = destination
source = ip-1,ip-2;v6net

[user "mta1"]
password_hash = %s
pool = main

[user "mta2"]
password = plain-secret
""" % crypt_hash("pw")


def with_line(text, lineno, line):
    """`text` with `line` inserted so that it becomes line number `lineno`."""
    lines = text.splitlines()
    lines.insert(lineno - 1, line)
    return "\n".join(lines) + "\n"


# (name, config text, line the error must name, words the message must contain)
BAD = [
    ("unknown key", with_line(BASE_CONFIG, 3, "bogus_key = 1"), 3, ["bogus_key"]),
    ("unknown section", BASE_CONFIG + "\n[frobnicate]\nx = 1\n",
     BASE_CONFIG.count("\n") + 2, ["frobnicate"]),
    ("bad duration", with_line(BASE_CONFIG, 4, "idle_timeout = 5 parsecs"), 4,
     ["idle_timeout"]),
    ("bad threshold", BASE_CONFIG.replace(
        'address = 127.0.0.1\n',
        'address = 127.0.0.1\nsuspend_when_unplumbed.trigger = 3 per minute\n'
        'suspend_when_unplumbed.duration = 5m\n'),
     BASE_CONFIG.splitlines().index("address = 127.0.0.1") + 2,
     ["suspend_when_unplumbed.trigger"]),
    ("bad address", BASE_CONFIG.replace("address = 127.0.0.1", "address = 192.0.2.300"),
     BASE_CONFIG.splitlines().index("address = 127.0.0.1") + 1, ["address"]),
    ("unknown source in pool", BASE_CONFIG.replace("source = lo4, lo6", "source = lo4, nosuch"),
     BASE_CONFIG.splitlines().index("source = lo4, lo6") + 1, ["nosuch"]),
    ("negative weight", BASE_CONFIG.replace("source = lo4, lo6", "source = lo4 weight=-1"),
     BASE_CONFIG.splitlines().index("source = lo4, lo6") + 1, ["weight"]),
    ("bad listen", BASE_CONFIG.replace("listen = 127.0.0.1:0", "listen = 127.0.0.1"), 2,
     ["listen"]),
    ("unknown auth", with_line(BASE_CONFIG, 5, "auth = maybe"), 5, ["auth"]),
    ("over-long line", with_line(BASE_CONFIG, 6, "allow = " + ", ".join(
        "127.0.%d.0/24" % i for i in range(40))), 6, []),
    ("duration missing", BASE_CONFIG.replace(
        'address = 127.0.0.1\n', 'address = 127.0.0.1\nsuspend_when_unplumbed.trigger = 3/1m\n'),
     None, ["duration"]),
    ("unknown default pool", BASE_CONFIG.replace("default_pool = main", "default_pool = nope"),
     None, ["nope"]),
]


def run(args, timeout=10):
    return subprocess.run([SOCKPOOL_BIN, *args], stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=timeout, text=True, errors="replace")


class CommandLine(unittest.TestCase):
    def write(self, text):
        fd, path = tempfile.mkstemp(prefix="sockpool-conf-", suffix=".ini")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        self.addCleanup(os.unlink, path)
        return path

    def test_version(self):
        p = run(["--version"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout + p.stderr, r"\d+\.\d+\.\d+")

    def test_help(self):
        p = run(["--help"])
        self.assertEqual(p.returncode, 0, p.stderr)
        out = p.stdout + p.stderr
        self.assertIn("-c", out)
        self.assertIn("--check", out)

    def test_unknown_option_fails(self):
        p = run(["--no-such-option"])
        self.assertGreater(p.returncode, 0)

    def test_check_good_minimal(self):
        p = run(["--check", "-c", self.write(BASE_CONFIG)])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("main", p.stdout + p.stderr)

    def test_check_good_full_spec_example(self):
        p = run(["--check", "-c", self.write(GOOD_FULL)])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        out = p.stdout + p.stderr
        for name in ("main", "warm", "hashed", "ip-1", "ip-2", "far-1", "v6net"):
            self.assertIn(name, out, "--check should print the resolved pools")

    def test_check_missing_file(self):
        p = run(["--check", "-c", "/nonexistent/sockpool.ini"])
        self.assertEqual(p.returncode, 1)
        self.assertIn("/nonexistent/sockpool.ini", p.stdout + p.stderr)

    def test_check_bad_files_name_file_line_and_key(self):
        for name, text, line, words in BAD:
            with self.subTest(name):
                path = self.write(text)
                p = run(["--check", "-c", path])
                out = p.stdout + p.stderr
                self.assertEqual(p.returncode, 1, "%s: exit %d\n%s" % (name, p.returncode, out))
                pattern = re.escape(path) + ":" + (str(line) if line else r"\d+") + r"\b"
                self.assertRegex(out, pattern)
                for w in words:
                    self.assertIn(w, out)

    def test_bad_file_refuses_to_start_with_message(self):
        path = self.write(with_line(BASE_CONFIG, 3, "bogus_key = 1"))
        try:
            p = run(["-c", path], timeout=10)
        except subprocess.TimeoutExpired:
            self.fail("sockpool started (still running after 10s) with an unknown key")
        self.assertGreater(p.returncode, 0, "must exit with an error, not a signal")
        self.assertRegex(p.stderr, re.escape(path) + r":3\b.*bogus_key")
        self.assertNotIn("ready", p.stderr)


class Reload(ProxyCase):
    """SIGHUP: a bad file is rejected and the old config kept; a good one applies."""

    def test_sighup_bad_then_good(self):
        proxy = self.start_proxy()
        echo = self.start_server(EchoServer)
        s, _ = self.open(proxy.addr, *echo.addr)
        self.assertEcho(s)

        mark = proxy.mark()
        with open(proxy.conf_path, "w") as f:
            f.write(with_line(BASE_CONFIG, 3, "bogus_key = 1"))
        proxy.send_signal(signal.SIGHUP)
        proxy.wait_log(lambda l: l.startswith("ERROR") and "bogus_key" in l, 5, mark)
        self.assertEcho(s, b"live connection untouched\n")
        s2, _ = self.open(proxy.addr, *echo.addr)
        self.assertEcho(s2, b"old config still serves\n")

        with open(proxy.conf_path, "w") as f:
            f.write(make_config(deny_destinations="127.0.0.0/8"))
        proxy.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        code = None
        while time.monotonic() < deadline:
            t = self.raw(proxy.addr)
            self.assertEqual(negotiate(t, request(CMD_CONNECT, *echo.addr)), b"\x05\x00")
            code = read_reply(t).rep
            t.close()
            if code == 2:
                break
            time.sleep(0.05)
        self.assertEqual(code, 2, "after reloading deny_destinations, CONNECT must get 0x02")
        self.assertEcho(s, b"still untouched after a good reload\n")

    def test_sighup_with_a_new_listener_warns_and_keeps_the_old_ones(self):
        proxy = self.start_proxy()
        echo = self.start_server(EchoServer)
        mark = proxy.mark()
        with open(proxy.conf_path, "w") as f:
            f.write(make_config(listen=("127.0.0.1:0", "127.0.0.3:0")))
        proxy.send_signal(signal.SIGHUP)
        proxy.wait_log(lambda l: l.startswith("INFO server: reloaded"), 5, mark)
        self.assertEqual(proxy.count_log(
            lambda l: l.startswith("WARN") and "next restart" in l, mark), 1)
        s, _ = self.open(proxy.addr, *echo.addr)
        self.assertEcho(s, b"the old listener still serves\n")
        s.close()
        # A reload that keeps the listeners says nothing about a restart.
        mark = proxy.mark()
        with open(proxy.conf_path, "w") as f:
            f.write(make_config(deny_destinations="192.0.2.0/24"))
        proxy.send_signal(signal.SIGHUP)
        proxy.wait_log(lambda l: l.startswith("INFO server: reloaded"), 5, mark)
        self.assertEqual(proxy.count_log(
            lambda l: l.startswith("WARN") and "next restart" in l, mark), 0)


if __name__ == "__main__":
    main()
