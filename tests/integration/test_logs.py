"""Logging (SPEC 6): no client can forge a line, timestamps, the access log
file and its reopen on SIGUSR1, rate-limited refusals with their counters,
fd exhaustion at accept, journald fallback, and reload_on_change."""

import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

from harness import (CMD_CONNECT, LOG_LINE_RE, LOOPBACK_SOURCES, SOCKPOOL_BIN, TIMESTAMP_RE,
                     EchoServer, LineCollector, ProxyCase, connect_to, crypt_hash, greeting,
                     log_matcher, main, make_config, read_reply, read_until_close,
                     recv_exact, socks_open, wait_until)
from test_hostile import HostileCase

FORGED_USER = b"zz\nWARN source: source suspended source=default"
FORGED_DOMAIN = b"x\nINFO access: id=1 client=1.2.3.4:5 result=ok.example"
USERS = """
[user "mta1"]
password_hash = %s
"""


def assert_well_formed(case, proxy):
    """Every line the proxy wrote has the one shape a parser expects."""
    for line in proxy.err.raw_snapshot():
        case.assertRegex(line, LOG_LINE_RE, "malformed or forged line")


def metric(admin, name, labels):
    url = "http://%s:%d/metrics" % admin
    with urllib.request.urlopen(url, timeout=10) as r:
        body = r.read().decode()
    m = re.search(r"^%s\{%s\} (\d+)$" % (re.escape(name), re.escape(labels)), body, re.M)
    if not m:
        raise AssertionError("no %s{%s} in /metrics" % (name, labels))
    return int(m.group(1))


def knock(addr):
    """A connection the proxy accepts and refuses. Its RST may beat connect()
    back, which is a refusal all the same."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(addr)
    except ConnectionResetError:
        pass
    return s


def suppressed_total(lines):
    return sum(int(m.group(1)) for m in
               (re.search(r"suppressed (\d+) similar", l) for l in lines) if m)


class Injection(HostileCase):
    SERVER = {"auth": "password", "log_level": "debug", "access_log": "on"}

    def sections(self):
        return LOOPBACK_SOURCES + USERS % crypt_hash("right")

    def auth_fails(self, user):
        s = self.raw(self.proxy.addr)
        s.sendall(greeting((2,)))
        self.assertEqual(recv_exact(s, 2), b"\x05\x02")
        s.sendall(bytes([1, len(user)]) + user + bytes([5]) + b"wrong")
        self.assertEqual(recv_exact(s, 2), b"\x01\x01")
        self.assert_closed(s, 5, "after failed auth")

    def test_hostile_user_name_is_one_escaped_line(self):
        mark = self.proxy.mark()
        self.auth_fails(FORGED_USER)
        _, line = self.proxy.wait_log(log_matcher("INFO", ("authentication failed",)), 5, mark)
        self.assertIn('user="zz\\nWARN source: source suspended source=default"', line)
        self.proxy.wait_log(log_matcher("INFO", ("access:",)), 5, mark)
        lines = self.proxy.log()[mark:]
        self.assertEqual([l for l in lines if l.startswith("WARN")], [], lines)
        self.assertEqual(len([l for l in lines if "source suspended" in l]), 1, lines)
        assert_well_formed(self, self.proxy)

    def test_spaces_equals_escapes_and_bytes_cannot_add_pairs(self):
        names = [b"a source=evil result=ok", b"\x1b[2J\x1b[31mred", b"q\"uo\"te",
                 b"cr\rlf\r\n", b"\xff\xfe\xc0\x8a", b"tab\there", b"-", b"x" * 255]
        mark = self.proxy.mark()
        for name in names:
            self.auth_fails(name)
        wait_until(lambda: self.proxy.count_log(
            log_matcher("INFO", ("authentication failed",)), mark) == len(names), 5,
            what="one auth line per name")
        auth = [l for l in self.proxy.log()[mark:] if "authentication failed" in l]
        self.assertIn('user="a source=evil result=ok"', auth[0])
        self.assertIn('user="\\x1b[2J\\x1b[31mred"', auth[1])
        self.assertIn('user="q\\"uo\\"te"', auth[2])
        self.assertIn('user="cr\\rlf\\r\\n"', auth[3])
        self.assertIn('user="\\xff\\xfe\\xc0\\x8a"', auth[4])
        self.assertIn('user="tab\\there"', auth[5])
        self.assertIn('user="-"', auth[6])
        self.assertIn("user=" + "x" * 255 + " ", auth[7])
        for line in auth:
            # exactly the pairs the proxy writes, the value as one token
            keys = re.findall(r'(?:^|\s)([a-z_]+)=(?:"(?:[^"\\]|\\.)*"|\S+)', line)
            self.assertEqual(keys, ["id", "client", "user"], line)
        assert_well_formed(self, self.proxy)


class DomainInjection(HostileCase):
    SERVER = {"log_level": "debug", "access_log": "on"}

    def test_hostile_domain_is_one_escaped_line(self):
        mark = self.proxy.mark()
        s = self.raw(self.proxy.addr)
        name = FORGED_DOMAIN
        s.sendall(greeting() + bytes([5, CMD_CONNECT, 0, 3, len(name)]) + name + b"\x00\x19")
        self.assertEqual(recv_exact(s, 2), b"\x05\x00")
        reply = read_reply(s)
        self.assertNotEqual(reply.rep, 0)
        _, line = self.proxy.wait_log(log_matcher("INFO", ("access:",)), 15, mark)
        self.assertIn('dest="x\\nINFO access: id=1 client=1.2.3.4:5 result=ok.example:25"',
                      line)
        lines = self.proxy.log()[mark:]
        self.assertEqual(len([l for l in lines if l.startswith("INFO access:")]), 1, lines)
        self.assertEqual([l for l in lines if "1.2.3.4" in l and "dest=" not in l], [], lines)
        assert_well_formed(self, self.proxy)


class Timestamps(HostileCase):
    def test_stderr_lines_carry_rfc3339_times_by_default(self):
        raw = self.proxy.err.raw_snapshot()
        self.assertTrue(raw)
        for line in raw:
            self.assertRegex(line, TIMESTAMP_RE)
            self.assertRegex(line, LOG_LINE_RE)


class NoTimestamps(HostileCase):
    SERVER = {"log_timestamps": "off"}

    def test_log_timestamps_off(self):
        for line in self.proxy.err.raw_snapshot():
            self.assertNotRegex(line, TIMESTAMP_RE)
            self.assertRegex(line, r"^(ERROR|WARN|INFO|DEBUG) [a-z]+: ")


class JournalStream(ProxyCase):
    """JOURNAL_STREAM naming our stderr means the journal timestamps it."""

    def start_on_pipe(self, config_text, env_extra):
        r, w = os.pipe()
        st = os.fstat(w)
        d = tempfile.mkdtemp(prefix="sockpool-it-")
        path = os.path.join(d, "sockpool.ini")
        with open(path, "w") as f:
            f.write(config_text)
        env = dict(os.environ)
        env.update({k: v % {"dev": st.st_dev, "ino": st.st_ino} for k, v in env_extra.items()})
        proc = subprocess.Popen([SOCKPOOL_BIN, "-c", path], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=w, env=env)
        os.close(w)
        pipe = os.fdopen(r, "rb")
        err = LineCollector(pipe, "journal-stderr")

        def stop():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(15)
            err.join(5)
            pipe.close()
        self.addCleanup(stop)
        self.assertTrue(err.wait(lambda l: "main: ready" in l, 15), err.raw_snapshot())
        return err

    def test_no_timestamps_when_stderr_is_the_journal(self):
        cfg = make_config(listen=("127.0.0.1:0",), log_level="info")
        err = self.start_on_pipe(cfg, {"JOURNAL_STREAM": "%(dev)d:%(ino)d"})
        for line in err.raw_snapshot():
            self.assertRegex(line, r"^(ERROR|WARN|INFO|DEBUG) [a-z]+: ")

    def test_another_stream_keeps_timestamps(self):
        cfg = make_config(listen=("127.0.0.1:0",), log_level="info")
        err = self.start_on_pipe(cfg, {"JOURNAL_STREAM": "%(dev)d:1"})
        for line in err.raw_snapshot():
            self.assertRegex(line, TIMESTAMP_RE)

    def test_log_timestamps_on_wins_over_the_journal(self):
        cfg = make_config(listen=("127.0.0.1:0",), log_level="info", log_timestamps="on")
        err = self.start_on_pipe(cfg, {"JOURNAL_STREAM": "%(dev)d:%(ino)d"})
        for line in err.raw_snapshot():
            self.assertRegex(line, TIMESTAMP_RE)


class JournaldWithoutJournal(HostileCase):
    """No journald in this container: journald lines must still reach stderr."""
    SERVER = {"log_target": "journald", "log_level": "info"}

    def test_lines_fall_back_to_stderr(self):
        if os.path.exists("/run/systemd/journal/socket"):
            self.fail("this test expects a host without a running journald")
        self.proxy.wait_log(log_matcher("WARN", ("log_target=journald", "stderr")), 5)
        self.assert_serves()
        self.proxy.wait_log(log_matcher("INFO", ("access:",)), 5)
        assert_well_formed(self, self.proxy)


class OwnLogSocket(ProxyCase):
    """A datagram socket of ours where the proxy's log target expects the
    system's; the proxy runs in a mount namespace that puts it there."""

    def setUp(self):
        if os.geteuid() != 0 or not shutil.which("unshare"):
            self.fail("the log target tests need root and unshare(1)")
        self.dir = tempfile.mkdtemp(prefix="sockpool-logsock-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(self.sock.close)
        self.sock.bind(os.path.join(self.dir, "socket"))
        self.entries = []


class Journald(OwnLogSocket):
    """log_target = journald; /run/systemd/journal is our directory."""

    def entry(self, pred, timeout=10.0):
        deadline = time.monotonic() + timeout
        for e in self.entries:
            if pred(e):
                return e
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                break
            e = dict(l.split("=", 1) for l in data.decode("utf-8", "replace").splitlines()
                     if "=" in l)
            self.entries.append(e)
            if pred(e):
                return e
        raise AssertionError("no such journal entry; got %r" % self.entries)

    def start(self, config):
        path = os.path.join(self.dir, "sockpool.ini")
        with open(path, "w") as f:
            f.write(config)
        script = ('mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && '
                  'mount --bind "$1" /run/systemd/journal && shift && exec "$@"')
        proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                 script, "sh", self.dir, SOCKPOOL_BIN, "-c", path],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        err = LineCollector(proc.stderr, "journald-stderr")

        def stop():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(15)
            err.join(5)
            proc.stderr.close()
            self.assertEqual(proc.returncode, 0, err.raw_snapshot())
        self.addCleanup(stop)
        return err

    def test_entries_carry_priority_and_structured_fields(self):
        echo = self.start_server(EchoServer)
        err = self.start(make_config(log_target="journald", access_log="on",
                                     log_level="info"))
        listening = self.entry(lambda e: "listening addr=" in e.get("MESSAGE", ""))
        self.assertEqual(listening["PRIORITY"], "6")
        self.assertEqual(listening["SYSLOG_IDENTIFIER"], "sockpool")
        self.assertEqual(listening["SOCKPOOL_COMPONENT"], "server")
        self.assertEqual(listening["POOL"], "main")
        self.entry(lambda e: e.get("MESSAGE", "").startswith("INFO main: ready"))
        addr = re.search(r"addr=(\S+)", listening["MESSAGE"]).group(1)
        host, port = addr.rsplit(":", 1)
        s, _ = socks_open((host, int(port)), *echo.addr)
        s.sendall(b"ping")
        self.assertEqual(recv_exact(s, 4), b"ping")
        s.close()
        access = self.entry(lambda e: e.get("SOCKPOOL_COMPONENT") == "access")
        self.assertRegex(access["MESSAGE"], r"^INFO access: id=\d+ ")
        self.assertRegex(access["CLIENT"], r"^127\.0\.0\.1:\d+$")
        self.assertEqual(access["DEST"], "%s:%d" % echo.addr)
        self.assertEqual(access["SOURCE"], "lo4")
        self.assertRegex(access["SESSION_ID"], r"^\d+$")
        self.assertEqual(access["PRIORITY"], "6")
        self.assertEqual([l for l in err.raw_snapshot() if LOG_LINE_RE.match(l)], [],
                         "journald lines also went to stderr")


class Syslog(OwnLogSocket):
    """log_target = syslog; /dev/log is our socket."""

    def start(self, config):
        path = os.path.join(self.dir, "sockpool.ini")
        with open(path, "w") as f:
            f.write(config)
        os.mkdir(os.path.join(self.dir, "olddev"))
        script = ('d="$1"; shift; mount --rbind /dev "$d/olddev" && mount -t tmpfs tmpfs /dev && '
                  'for n in null zero random urandom; do touch /dev/$n && '
                  'mount --bind "$d/olddev/$n" /dev/$n || exit 1; done && '
                  'touch /dev/log && mount --bind "$d/socket" /dev/log && exec "$@"')
        proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                 script, "sh", self.dir, SOCKPOOL_BIN, "-c", path],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        err = LineCollector(proc.stderr, "syslog-stderr")

        def stop():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(15)
            err.join(5)
            proc.stderr.close()
            self.assertEqual(proc.returncode, 0, err.raw_snapshot())
        self.addCleanup(stop)
        return err

    def message(self, pred, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536).decode("utf-8", "replace")
            except socket.timeout:
                break
            m = re.match(r"^<(\d+)>.*?sockpool\[\d+\]: (.*)$", data, re.S)
            self.assertIsNotNone(m, data)
            self.entries.append((int(m.group(1)), m.group(2)))
            if pred(self.entries[-1]):
                return self.entries[-1]
        raise AssertionError("no such syslog message; got %r" % self.entries)

    def test_entries_carry_priority_and_the_line(self):
        err = self.start(make_config(log_target="syslog", log_level="info"))
        prio, text = self.message(lambda e: e[1].startswith("INFO main: ready"))
        self.assertEqual(prio, 3 * 8 + 6)  # LOG_DAEMON, LOG_INFO
        self.assertRegex(text, LOG_LINE_RE)
        self.assertEqual([l for l in err.raw_snapshot() if LOG_LINE_RE.match(l)], [],
                         "syslog lines also went to stderr")


class AccessFile(HostileCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sockpool-access-")
        self.path = os.path.join(self.dir, "access.log")
        self.SERVER = {"access_log": self.path, "log_level": "info"}
        super().setUp()

    def lines(self, path):
        try:
            with open(path) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def test_access_lines_go_to_the_file_and_reopen_on_sigusr1(self):
        self.assert_serves()
        wait_until(lambda: len(self.lines(self.path)) == 1, 5, what="one access line")
        line = self.lines(self.path)[0]
        self.assertRegex(line, TIMESTAMP_RE.pattern + r"INFO access: id=\d+ client=127\.0\.0\.1:")
        self.assertEqual(self.proxy.count_log(log_matcher("INFO", ("access:",))), 0,
                         "access lines went to stderr as well")
        # logrotate: move it, SIGUSR1, the next line goes to a new file
        moved = self.path + ".1"
        os.rename(self.path, moved)
        mark = self.proxy.mark()
        self.proxy.send_signal(signal.SIGUSR1)
        self.proxy.wait_log(log_matcher("INFO", ("access log reopened",)), 5, mark)
        self.assert_serves()
        wait_until(lambda: len(self.lines(self.path)) == 1, 5, what="a line in the new file")
        self.assertEqual(len(self.lines(moved)), 1)
        self.assertTrue(self.proxy.proc.poll() is None, "SIGUSR1 killed the proxy")

    def test_reload_to_off_stops_the_file(self):
        self.assert_serves()
        wait_until(lambda: len(self.lines(self.path)) == 1, 5, what="one access line")
        with open(self.proxy.conf_path) as f:
            text = f.read()
        with open(self.proxy.conf_path, "w") as f:
            f.write(text.replace("access_log = " + self.path, "access_log = off"))
        mark = self.proxy.mark()
        self.proxy.send_signal(signal.SIGHUP)
        self.proxy.wait_log(log_matcher("INFO", ("reloaded",)), 5, mark)
        self.assert_serves()
        self.assert_drained()
        self.assertEqual(len(self.lines(self.path)), 1)


class Refusals(HostileCase):
    SERVER = {"max_connections_per_client": "1", "log_level": "info", "access_log": "off"}

    def test_1000_refusals_give_a_few_lines_and_a_suppressed_count(self):
        held, _ = self.open(self.proxy.addr, *self.echo.addr)
        mark = self.proxy.mark()
        n = 1000
        knocks = []
        self.addCleanup(lambda: [k.close() for k in knocks])
        for _ in range(n):
            knocks.append(knock(self.proxy.addr))
        refused = log_matcher("WARN", ("refused",))
        self.proxy.wait_log(refused, 10, mark)
        first = [l for l in self.proxy.log()[mark:] if refused(l) and "suppressed" not in l]
        self.assertEqual(len(first), 1, first)
        self.assertIn("client=127.0.0.1:", first[0])
        self.assertIn("max_connections_per_client=1", first[0])
        # the interval is 10 s: the summary comes when it ends
        wait_until(lambda: suppressed_total(self.proxy.log()[mark:]) >= n - 1, 25,
                   what="suppressed count of %d" % (n - 1))
        lines = [l for l in self.proxy.log()[mark:] if l.startswith("WARN")]
        self.assertLessEqual(len(lines), 4, lines)
        self.assertEqual(suppressed_total(lines), n - 1, lines)
        self.assertEqual(metric(self.admin, "sockpool_refused_total",
                                'reason="max_connections_per_client"'), n)
        self.assertEqual(metric(self.admin, "sockpool_refused_total", 'reason="allow"'), 0)
        held.close()


class MaxConnectionRefusals(HostileCase):
    SERVER = {"max_connections": "1", "log_level": "info", "access_log": "off"}

    def test_refusals_at_max_connections_are_counted_and_limited(self):
        held, _ = self.open(self.proxy.addr, *self.echo.addr)
        mark = self.proxy.mark()
        for _ in range(200):
            knock(self.proxy.addr).close()
        wait_until(lambda: metric(self.admin, "sockpool_refused_total",
                                  'reason="max_connections"') == 200, 10,
                   what="200 refusals counted")
        lines = [l for l in self.proxy.log()[mark:] if l.startswith("WARN")]
        self.assertLessEqual(len(lines), 2, lines)
        held.close()


class FdExhaustionLogged(HostileCase):
    SERVER = {"log_level": "info", "access_log": "off", "handshake_timeout": "30s"}

    def test_emfile_is_logged_counted_and_the_listener_recovers(self):
        pid = self.proxy.proc.pid
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        used = len(os.listdir("/proc/%d/fd" % pid))
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (used + 8, hard))
        self.addCleanup(resource.prlimit, pid, resource.RLIMIT_NOFILE, (soft, hard))
        mark = self.proxy.mark()
        held, dropped = [], 0
        for _ in range(30):
            s = connect_to(self.proxy.addr)
            s.sendall(greeting())
            data, how = read_until_close(s, 2, limit=2)
            if data == b"\x05\x00":
                held.append(s)  # in the handshake: one descriptor each
            else:
                dropped += 1
                s.close()
        self.assertGreater(len(held), 2, "nothing served under the limit")
        self.assertGreater(dropped, 0, "the fd limit was never reached")
        _, line = self.proxy.wait_log(
            log_matcher("WARN", ("accept failed", "out of file descriptors")), 5, mark)
        self.assertGreaterEqual(metric_after_freeing(self, held, pid, soft, hard), 1)
        lines = [l for l in self.proxy.log()[mark:] if l.startswith("WARN")]
        self.assertLessEqual(len(lines), 3, lines)
        wait_until(self.try_serve, 5, 0.1, "service once descriptors are free")

    def try_serve(self):
        try:
            self.assert_serves()
            return True
        except (OSError, EOFError, AssertionError):
            return False


def metric_after_freeing(case, held, pid, soft, hard):
    """Close what we held, lift the limit, read the counter (the admin
    endpoint needs a descriptor too)."""
    for s in held:
        s.close()
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    return wait_until(lambda: metric(case.admin, "sockpool_accept_errors_total",
                                     'reason="emfile"'), 5, what="emfile counted")


class ReloadOnChange(HostileCase):
    SERVER = {"reload_on_change": "yes", "log_level": "info"}

    def replace_config(self, text):
        tmp = self.proxy.conf_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.proxy.conf_path)

    def test_rename_into_place_bad_file_and_write_in_place(self):
        self.proxy.wait_log(log_matcher("INFO", ("watching",)), 5)
        with open(self.proxy.conf_path) as f:
            good = f.read()
        # an editor's rename into place
        mark = self.proxy.mark()
        self.replace_config(good.replace("log_level = info", "log_level = debug"))
        self.proxy.wait_log(log_matcher("INFO", ("reloaded",)), 5, mark)
        self.assertEqual(self.proxy.count_log(log_matcher("INFO", ("reloaded",)), mark), 1)
        self.assert_serves()
        self.proxy.wait_log(log_matcher("DEBUG"), 5, mark)
        # a bad file is rejected, the running configuration kept
        mark = self.proxy.mark()
        self.replace_config(good + "\nbogus_key = 1\n")
        self.proxy.wait_log(log_matcher("ERROR", ("reload rejected",)), 5, mark)
        self.assert_serves()
        self.proxy.wait_log(log_matcher("DEBUG"), 5, mark)
        # a write in place
        mark = self.proxy.mark()
        with open(self.proxy.conf_path, "w") as f:
            f.write(good)
        self.proxy.wait_log(log_matcher("INFO", ("reloaded",)), 5, mark)
        self.assertEqual(self.proxy.count_log(log_matcher("INFO", ("reloaded",)), mark), 1)
        mark = self.proxy.mark()
        self.assert_serves()
        self.proxy.wait_log(log_matcher("INFO", ("access:",)), 5, mark)
        self.assertEqual(self.proxy.count_log(log_matcher("DEBUG"), mark), 0,
                         "log_level = info again after the write in place")


class LevelOnReload(HostileCase):
    SERVER = {"log_level": "debug", "access_log": "on"}

    def quiet_connection(self):
        """One relayed connection; True when it logged nothing but its
        access line (which access_log = on wants whatever the level)."""
        mark = self.proxy.mark()
        self.assert_serves()
        self.proxy.wait_log(log_matcher("INFO", ("access:",)), 5, mark)
        return [l for l in self.proxy.log()[mark:] if "access:" not in l] == []

    def test_sighup_applies_the_new_level(self):
        self.assertFalse(self.quiet_connection(), "debug lines expected before the reload")
        with open(self.proxy.conf_path) as f:
            text = f.read()
        with open(self.proxy.conf_path, "w") as f:
            f.write(text.replace("log_level = debug", "log_level = warn"))
        self.proxy.send_signal(signal.SIGHUP)
        wait_until(self.quiet_connection, 5, 0.05, "log_level = warn after SIGHUP")


if __name__ == "__main__":
    main()
