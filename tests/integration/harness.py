"""Shared pieces of the sockpool integration tests.

Everything here talks only to loopback or to network namespaces the tests
create themselves. Every wait has a deadline; every process, server and
namespace is cleaned up through unittest's addCleanup, so a failing test
still leaves nothing behind.

Environment:
  SOCKPOOL_BIN            the binary under test (meson passes it)
  SOCKPOOL_NETNS_SH       scripts/netns.sh (default: found next to this tree)
  SOCKPOOL_HARNESS_PEER   `microsocks`: run the tests that make sense against
                          microsocks instead, to check the harness itself
  SOCKPOOL_TEST_SHOWLOG   print sockpool's stderr after every test, not only
                          after failing ones
  SOCKPOOL_TEST_WORKERS   `workers =` of every config make_config() writes
                          (default 1; meson's integration-w2 suite sets 2)
  SOCKPOOL_TEST_RELAY     `splice` or `copy`: the `relay =` every config made
                          by make_config() asks for (default: the binary's)
"""

import collections
import ctypes
import hashlib
import http.server
import ipaddress
import itertools
import os
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))
SOCKPOOL_BIN = os.environ.get("SOCKPOOL_BIN") or os.path.join(
    SOURCE_ROOT, "build-it", "proxy", "sockpool")
NETNS_SH = os.environ.get("SOCKPOOL_NETNS_SH") or os.path.join(
    SOURCE_ROOT, "scripts", "netns.sh")
PEER = os.environ.get("SOCKPOOL_HARNESS_PEER", "")

READY_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
IO_TIMEOUT = 10.0

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer",
                   "ERROR: ThreadSanitizer", "WARNING: ThreadSanitizer",
                   "ERROR: MemorySanitizer")

# The worker threads every test config asks for, unless the test says.
WORKERS = int(os.environ.get("SOCKPOOL_TEST_WORKERS") or 1)

# SOCKS5 constants (RFC 1928 / 1929).
CMD_CONNECT, CMD_BIND, CMD_UDP = 1, 2, 3
ATYP_V4, ATYP_DOMAIN, ATYP_V6 = 1, 3, 4
REP_OK, REP_GENERAL, REP_NOT_ALLOWED, REP_NET_UNREACH = 0, 1, 2, 3
REP_HOST_UNREACH, REP_REFUSED, REP_TTL, REP_CMD_UNSUPPORTED = 4, 5, 6, 7
REP_ATYP_UNSUPPORTED = 8
IP_BIND_ADDRESS_NO_PORT = 24

SERVER_DEFAULTS = {
    "relay": os.environ.get("SOCKPOOL_TEST_RELAY") or None,
    "admin_listen": "",
    "default_pool": "main",
    "connect_timeout": "5s",
    "handshake_timeout": "5s",
    "log_level": "info",
    "workers": str(WORKERS),
}

# Loopback sources, so even the loopback tests bind a source.
LOOPBACK_SOURCES = """\
[source "lo4"]
address = 127.0.0.1

[source "lo6"]
address = ::1

[pool "main"]
source = lo4, lo6
"""


def make_config(listen=("127.0.0.1:0",), sections=LOOPBACK_SOURCES, **server):
    """A config: [server] with `listen` lines, SERVER_DEFAULTS overridden by
    keyword arguments (None drops a key), then the other sections."""
    keys = dict(SERVER_DEFAULTS)
    keys.update(server)
    lines = ["[server]"] + ["listen = " + l for l in listen]
    lines += [("%s = %s" % (k, v)).rstrip() for k, v in keys.items() if v is not None]
    return "\n".join(lines) + "\n\n" + sections


BASE_CONFIG = make_config()


def crypt_hash(password):
    """A SHA-512 crypt(3) string (the crypt module is deprecated, not gone, in 3.11)."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))


def sockpool_only(test):
    """Marks a test of sockpool-specific behaviour. Nothing is skipped: in
    harness-peer mode (a manual check of the harness against microsocks)
    such tests are expected to fail."""
    return test


def wait_until(predicate, timeout, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def family_of(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def parse_hostport(text):
    """`127.0.0.1:80` or `[::1]:80` -> (host, port)."""
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)", text) or re.fullmatch(r"([^:]+):(\d+)", text)
    if not m:
        raise ValueError("not host:port: %r" % text)
    return m.group(1), int(m.group(2))


def fmt_hostport(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


# Processes and namespaces alive right now, for the SIGTERM handler in main():
# meson's timeout must not leave a namespace or a sockpool behind.
_live = {"procs": set(), "netns": set()}


# sockpool's stderr lines start with an RFC 3339 time (milliseconds, UTC
# offset) unless stderr is the journal or log_timestamps = off.
TIMESTAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d ")
# What every line the proxy writes must look like.
LOG_LINE_RE = re.compile(r"^(%s)?(ERROR|WARN|INFO|DEBUG) [a-z]+: " % TIMESTAMP_RE.pattern[1:])


class LineCollector:
    """Reads a pipe line by line in a thread; tests wait for lines with a deadline.

    `lines` hold the lines without their leading timestamp (what most tests
    match on), `raw` the lines as written."""

    def __init__(self, pipe, name):
        self.lines = []
        self.raw = []
        self.eof = False
        self._cond = threading.Condition()
        self._pipe = pipe
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self):
        for raw in iter(self._pipe.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.raw.append(line)
                self.lines.append(TIMESTAMP_RE.sub("", line, count=1))
                self._cond.notify_all()
        with self._cond:
            self.eof = True
            self._cond.notify_all()

    def snapshot(self):
        with self._cond:
            return list(self.lines)

    def raw_snapshot(self):
        with self._cond:
            return list(self.raw)

    def wait(self, match, timeout, start=0):
        """First line at index >= start for which match(line) holds: (index, line)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            i = start
            while True:
                while i < len(self.lines):
                    if match(self.lines[i]):
                        return i, self.lines[i]
                    i += 1
                if self.eof:
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def join(self, timeout):
        self._thread.join(timeout)


def log_matcher(level=None, words=(), keys=None, regex=None):
    """A predicate on log lines: level prefix, words anywhere, key=value pairs.

    Values may be quoted; `source=ip-1` does not match `source=ip-10`."""
    keys = keys or {}
    compiled = [re.compile(r"(?:^|\s)%s=\"?%s\"?(?:\s|$|,)" % (re.escape(k), re.escape(v)))
                for k, v in keys.items()]
    rx = re.compile(regex) if regex else None

    def match(line):
        if level and not line.startswith(level + " "):
            return False
        if any(w not in line for w in words):
            return False
        if any(not c.search(line) for c in compiled):
            return False
        return not rx or bool(rx.search(line))
    return match


def suspended(source):
    return log_matcher("WARN", ("suspended",), {"source": source})


def resumed(source):
    return log_matcher("INFO", ("resumed",), {"source": source})


EXHAUSTED = log_matcher("WARN", ("exhausted",))


class Proxy:
    """A running sockpool started from a config string."""

    def __init__(self, config, args=(), ready=True, env=None):
        self.dir = tempfile.mkdtemp(prefix="sockpool-it-")
        self.conf_path = os.path.join(self.dir, "sockpool.ini")
        with open(self.conf_path, "w") as f:
            f.write(config)
        self.listeners = []
        self.stopped = False
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen([SOCKPOOL_BIN, "-c", self.conf_path, *args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=full_env)
        _live["procs"].add(self)
        self.err = LineCollector(self.proc.stderr, "sockpool-stderr")
        self.out = LineCollector(self.proc.stdout, "sockpool-stdout")
        if ready:
            self.wait_ready()

    @property
    def addr(self):
        return self.listeners[0]

    def listener(self, family):
        for host, port in self.listeners:
            if family_of(host) == family:
                return host, port
        raise AssertionError("no listener of family %s in %r" % (family, self.listeners))

    def wait_ready(self):
        hit = self.err.wait(log_matcher("INFO", ("ready",), regex=r"^INFO main: ready"),
                            READY_TIMEOUT)
        if not hit:
            self.proc.poll()
            raise AssertionError("sockpool not ready within %.0fs (exit %r)\n%s" % (
                READY_TIMEOUT, self.proc.returncode, self.tail()))
        for line in self.err.snapshot()[:hit[0]]:
            m = re.match(r"^INFO server: listening\b.*?\baddr=(\S+)", line)
            if m:
                self.listeners.append(parse_hostport(m.group(1).strip('"')))
        if not self.listeners:
            raise AssertionError("ready but no `listening addr=` line\n" + self.tail())

    def tail(self, n=40):
        lines = self.err.snapshot()
        return "\n".join("[sockpool] " + l for l in lines[-n:])

    def log(self):
        return self.err.snapshot()

    def wait_log(self, match, timeout=5.0, start=0):
        hit = self.err.wait(match, timeout, start)
        if not hit:
            raise AssertionError("expected log line not seen within %.1fs\n%s" % (
                timeout, self.tail()))
        return hit

    def count_log(self, match, start=0):
        return sum(1 for l in self.err.snapshot()[start:] if match(l))

    def mark(self):
        """Index of the next log line, to look only at what follows."""
        return len(self.err.snapshot())

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, expect_rc=0):
        """SIGTERM, wait, and check the exit code and sanitizer silence."""
        if self.stopped:
            return
        self.stopped = True
        problems = []
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                problems.append("did not exit within %.0fs of signal %d" % (STOP_TIMEOUT, sig))
        _live["procs"].discard(self)
        self.err.join(5)
        self.out.join(5)
        self.proc.stderr.close()
        self.proc.stdout.close()
        rc = self.proc.returncode
        if expect_rc is not None and rc != expect_rc:
            problems.append("exit code %r, expected %r" % (rc, expect_rc))
        text = "\n".join(self.err.snapshot() + self.out.snapshot())
        for mark in SANITIZER_MARKS:
            if mark in text:
                problems.append("sanitizer report: %r" % mark)
        shutil.rmtree(self.dir, ignore_errors=True)
        if problems:
            raise AssertionError("; ".join(problems) + "\n" + self.tail(80))


class Microsocks:
    """microsocks in place of sockpool, to check the harness (SOCKPOOL_HARNESS_PEER)."""

    def __init__(self, host="127.0.0.1"):
        probe = socket.socket(family_of(host))
        probe.bind((host, 0))
        port = probe.getsockname()[1]
        probe.close()
        self.proc = subprocess.Popen(["microsocks", "-i", host, "-p", str(port)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        _live["procs"].add(self)
        self.err = LineCollector(self.proc.stderr, "microsocks-stderr")
        self.listeners = [(host, port)]
        self.stopped = False

        def up():
            try:
                socket.create_connection((host, port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_until(up, READY_TIMEOUT, 0.05, "microsocks to listen")

    addr = Proxy.addr
    listener = Proxy.listener

    def tail(self, n=40):
        return "\n".join(self.err.snapshot()[-n:])

    def stop(self, sig=signal.SIGTERM, expect_rc=None):
        if not self.stopped:
            self.stopped = True
            self.proc.kill()
            self.proc.wait(5)
            _live["procs"].discard(self)
            self.err.join(5)
            self.proc.stderr.close()


class TCPServer:
    """Accept loop in a thread; each connection handled in its own thread
    (or inline for the short-lived record server). Records peers."""

    inline = False

    def __init__(self, host="127.0.0.1", port=0):
        self.sock = socket.socket(family_of(host), socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(1024)
        self.host, self.port = self.sock.getsockname()[:2]
        self.peers = []
        self.results = []
        self.errors = []
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self._conns = []
        self._threads = []
        self._stop = threading.Event()
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True,
                                               name=type(self).__name__)
        self._accept_thread.start()

    @property
    def addr(self):
        return self.host, self.port

    @property
    def connections(self):
        with self.lock:
            return len(self.peers)

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([self.sock], [], [], 0.1)
            except (OSError, ValueError):
                return
            if not r:
                continue
            try:
                conn, peer = self.sock.accept()
            except OSError:
                continue
            with self.cond:
                self.peers.append(peer[:2])
                self._conns.append(conn)
                self.cond.notify_all()
            if self.inline:
                self._run_handler(conn, peer[:2])
            else:
                t = threading.Thread(target=self._run_handler, args=(conn, peer[:2]),
                                     daemon=True)
                self._threads.append(t)
                t.start()

    def _run_handler(self, conn, peer):
        try:
            conn.settimeout(60)
            self.handle(conn, peer)
        except Exception as e:  # reported by tests that care via .errors
            with self.lock:
                self.errors.append(repr(e))
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def wait_connections(self, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.peers) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("%s saw %d connections, expected %d" % (
                        type(self).__name__, len(self.peers), n))
                self.cond.wait(left)

    def wait_results(self, n, timeout=30.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.results) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("%s has %d results, expected %d (errors %r)" % (
                        type(self).__name__, len(self.results), n, self.errors))
                self.cond.wait(left)
            return list(self.results)

    def add_result(self, value):
        with self.cond:
            self.results.append(value)
            self.cond.notify_all()

    def close(self):
        self._stop.set()
        self._accept_thread.join(5)
        self.sock.close()
        with self.lock:
            conns = list(self._conns)
        for c in conns:
            # shutdown() wakes a handler blocked in recv(); close() alone does not.
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        for t in self._threads:
            t.join(5)

    def handle(self, conn, peer):
        raise NotImplementedError


class EchoServer(TCPServer):
    """Echoes everything; on EOF shuts its write side and closes."""

    def handle(self, conn, peer):
        total = 0
        while True:
            data = conn.recv(65536)
            if not data:
                break
            conn.sendall(data)
            total += len(data)
        conn.shutdown(socket.SHUT_WR)
        self.add_result(total)


class SinkServer(TCPServer):
    """Reads to EOF, then answers `<bytes> <sha256>\\n` and closes."""

    def handle(self, conn, peer):
        h = hashlib.sha256()
        n = 0
        while True:
            data = conn.recv(1 << 18)
            if not data:
                break
            h.update(data)
            n += len(data)
        conn.sendall(b"%d %s\n" % (n, h.hexdigest().encode()))
        self.add_result((n, h.hexdigest()))


class SourceServer(TCPServer):
    """Sends `nbytes` of random data, then closes; results get (n, sha256)."""

    def __init__(self, nbytes, host="127.0.0.1"):
        self.nbytes = nbytes
        super().__init__(host)

    def handle(self, conn, peer):
        h = hashlib.sha256()
        for chunk in data_chunks(self.nbytes):
            conn.sendall(chunk)
            h.update(chunk)
        conn.shutdown(socket.SHUT_WR)
        self.add_result((self.nbytes, h.hexdigest()))
        # Wait for the client's close so the FIN is not followed by a reset.
        conn.settimeout(30)
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass


class RecordServer(TCPServer):
    """Records each peer, tells it `<ip> <port>\\n` and closes."""

    inline = True

    def handle(self, conn, peer):
        try:
            conn.sendall(b"%s %d\n" % (peer[0].encode(), peer[1]))
        except OSError:
            pass

    def counts(self, start=0):
        with self.lock:
            return collections.Counter(ip for ip, _ in self.peers[start:])


def data_chunks(total, chunk=1 << 20):
    """Random-looking chunks; each carries its index so reordering shows."""
    base = bytearray(os.urandom(chunk))
    i = 0
    sent = 0
    while sent < total:
        n = min(chunk, total - sent)
        struct.pack_into("!Q", base, (i * 8) % (chunk - 8), i)
        yield bytes(base[:n])
        sent += n
        i += 1


def http_body(n):
    return random.Random(n).randbytes(n)


class _HTTPHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        m = re.fullmatch(r"/data/(\d+)", self.path)
        if not m or int(m.group(1)) > 64 << 20:
            self.send_error(404)
            return
        body = http_body(int(m.group(1)))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class HTTPServer:
    """GET /data/N returns http_body(N)."""

    def __init__(self, host="127.0.0.1"):
        class Server(http.server.ThreadingHTTPServer):
            address_family = family_of(host)
            daemon_threads = True
        self.server = Server((host, 0), _HTTPHandler)
        self.host, self.port = self.server.server_address[:2]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    @property
    def addr(self):
        return self.host, self.port

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def greeting(methods=(0,)):
    return bytes([5, len(methods), *methods])


def userpass(user, password):
    u, p = user.encode(), password.encode()
    return bytes([1, len(u)]) + u + bytes([len(p)]) + p


def encode_addr(host, port):
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        name = host.encode()
        return bytes([ATYP_DOMAIN, len(name)]) + name + struct.pack("!H", port)
    if ip.version == 4:
        return bytes([ATYP_V4]) + ip.packed + struct.pack("!H", port)
    return bytes([ATYP_V6]) + ip.packed + struct.pack("!H", port)


def request(cmd, host, port):
    return bytes([5, cmd, 0]) + encode_addr(host, port)


class Reply:
    def __init__(self, raw):
        self.raw = raw
        self.ver, self.rep, self.rsv, self.atyp = raw[0], raw[1], raw[2], raw[3]
        body = raw[4:-2]
        if self.atyp == ATYP_V4:
            self.host = str(ipaddress.IPv4Address(body))
        elif self.atyp == ATYP_V6:
            self.host = str(ipaddress.IPv6Address(body))
        else:
            self.host = body[1:].decode("latin-1")
        self.port = struct.unpack("!H", raw[-2:])[0]

    def __repr__(self):
        return "Reply(rep=%#04x atyp=%d %s port=%d raw=%s)" % (
            self.rep, self.atyp, self.host, self.port, self.raw.hex())


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        data = sock.recv(n - len(buf))
        if not data:
            raise EOFError("connection closed after %d of %d bytes (%s)" % (
                len(buf), n, bytes(buf).hex()))
        buf += data
    return bytes(buf)


def read_reply(sock):
    head = recv_exact(sock, 4)
    if head[0] != 5:
        raise AssertionError("reply version %#04x: %s" % (head[0], head.hex()))
    if head[3] == ATYP_V4:
        rest = recv_exact(sock, 6)
    elif head[3] == ATYP_V6:
        rest = recv_exact(sock, 18)
    elif head[3] == ATYP_DOMAIN:
        ln = recv_exact(sock, 1)
        rest = ln + recv_exact(sock, ln[0] + 2)
    else:
        raise AssertionError("reply ATYP %#04x: %s" % (head[3], head.hex()))
    return Reply(head + rest)


def read_until_close(sock, timeout=5.0, limit=1 << 20):
    """(data, how): how is 'eof', 'reset' or 'timeout'."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while len(buf) < limit:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return bytes(buf), "reset"
        except socket.timeout:
            return bytes(buf), "timeout"
        if not data:
            return bytes(buf), "eof"
        buf += data
    return bytes(buf), "limit"


def connect_to(addr, source=None, timeout=IO_TIMEOUT):
    s = socket.socket(family_of(addr[0]), socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if source:
            s.bind((source, 0))
        s.connect(addr)
    except BaseException:
        s.close()
        raise
    return s


class SocksError(AssertionError):
    def __init__(self, msg, reply=None):
        super().__init__(msg)
        self.reply = reply


def socks_handshake(sock, host, port, user=None, password=None, pipelined=None,
                    bind=None, cmd=CMD_CONNECT):
    """Greeting, optional RFC 1929 auth, optional BIND (KumoMTA), then `cmd`.

    Returns (bind_reply or None, reply). Checks the method and auth answers,
    not the reply codes. Pipelined by default, except against microsocks,
    which reads one message per recv()."""
    if pipelined is None:
        pipelined = PEER != "microsocks"
    method = 2 if user is not None else 0
    first = greeting((method,))
    msgs = []
    if user is not None:
        msgs.append(userpass(user, password))
    if bind is not None:
        msgs.append(request(CMD_BIND, bind[0], bind[1]))
    msgs.append(request(cmd, host, port))
    if pipelined:
        sock.sendall(first + b"".join(msgs))
    else:
        sock.sendall(first)
    sel = recv_exact(sock, 2)
    if sel != bytes([5, method]):
        raise SocksError("method selection %s, expected 05%02x" % (sel.hex(), method))
    if user is not None:
        if not pipelined:
            sock.sendall(msgs[0])
        st = recv_exact(sock, 2)
        if st[0] != 1 or st[1] != 0:
            raise SocksError("auth status %s" % st.hex())
        msgs = msgs[1:]
    bind_reply = None
    if bind is not None:
        if not pipelined:
            sock.sendall(msgs[0])
        bind_reply = read_reply(sock)
        msgs = msgs[1:]
        if bind_reply.rep != 0:
            return bind_reply, None
    if not pipelined:
        sock.sendall(msgs[0])
    return bind_reply, read_reply(sock)


def negotiate(sock, req, methods=(0,), pipelined=None):
    """Greeting then the raw request `req`; returns the method selection."""
    if pipelined is None:
        pipelined = PEER != "microsocks"
    if pipelined:
        sock.sendall(greeting(methods) + req)
        return recv_exact(sock, 2)
    sock.sendall(greeting(methods))
    sel = recv_exact(sock, 2)
    sock.sendall(req)
    return sel


def accepts_new_connection(proxy_addr, dest):
    """True when a fresh client still gets a relayed connection."""
    try:
        s = connect_to(proxy_addr, timeout=0.5)
    except OSError:
        return False
    try:
        if negotiate(s, request(CMD_CONNECT, *dest)) != b"\x05\x00":
            return False
        return read_reply(s).rep == 0
    except (OSError, EOFError, AssertionError):
        return False
    finally:
        s.close()


def socks_open(proxy_addr, host, port, source=None, timeout=IO_TIMEOUT, **kw):
    """A relayed connection to (host, port), or SocksError with the reply."""
    s = connect_to(proxy_addr, source, timeout)
    try:
        bind_reply, reply = socks_handshake(s, host, port, **kw)
        if reply is None:
            raise SocksError("BIND refused: %r" % bind_reply, bind_reply)
        if reply.rep != 0:
            raise SocksError("CONNECT refused: %r" % reply, reply)
    except BaseException:
        s.close()
        raise
    return s, reply


def fetch_peer_line(proxy_addr, dest, **kw):
    """CONNECT to a RecordServer through the proxy: (reply, (peer_ip, peer_port))."""
    s, reply = socks_open(proxy_addr, dest[0], dest[1], **kw)
    try:
        data, how = read_until_close(s, IO_TIMEOUT)
    finally:
        s.close()
    if how not in ("eof",) or not data.endswith(b"\n"):
        raise AssertionError("record line %r (%s)" % (data, how))
    ip, port = data.decode().split()
    return reply, (ip, int(port))


def quick_connect(proxy_addr, dest_request, timeout=IO_TIMEOUT):
    """The fast path for many sequential requests: pipelined greeting+CONNECT,
    returns the reply code (or raises)."""
    s = socket.socket(family_of(proxy_addr[0]), socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(proxy_addr)
        s.sendall(b"\x05\x01\x00" + dest_request)
        sel = recv_exact(s, 2)
        if sel != b"\x05\x00":
            raise SocksError("method selection %s" % sel.hex())
        return read_reply(s)
    finally:
        s.close()


_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
_ns_counter = itertools.count()
_ns_counter_first = itertools.count()


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns: " + os.strerror(e))


def netns_available():
    return os.geteuid() == 0 and shutil.which("ip") is not None and os.path.exists(NETNS_SH)


def run(argv, check=True, timeout=30):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout, text=True)
    if check and p.returncode != 0:
        raise AssertionError("%s: exit %d\n%s%s" % (" ".join(argv), p.returncode,
                                                     p.stdout, p.stderr))
    return p


class Netns:
    """A namespace `sp-<pid>-<n>` with lo up and the given addresses on lo."""

    def __init__(self, addrs=()):
        if next(_ns_counter_first) == 0:
            remove_stale_netns()
        self.name = "sp-%d-%d" % (os.getpid(), next(_ns_counter))
        self._orig_fd = None
        run(["sh", NETNS_SH, "create", self.name, *addrs])
        _live["netns"].add(self)

    def add(self, *addrs):
        run(["sh", NETNS_SH, "add", self.name, *addrs])

    def remove(self, *addrs):
        run(["sh", NETNS_SH, "remove", self.name, *addrs])

    def sysctl(self, key, value):
        run(["ip", "netns", "exec", self.name, "sysctl", "-q", "-w", "%s=%s" % (key, value)])

    def enter(self):
        """Move this thread into the namespace. Threads and processes started
        from it afterwards live there too; sockets stay where they were made."""
        assert self._orig_fd is None
        self._orig_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        fd = os.open("/var/run/netns/" + self.name, os.O_RDONLY)
        try:
            _setns(fd)
        finally:
            os.close(fd)

    def leave(self):
        if self._orig_fd is not None:
            try:
                _setns(self._orig_fd)
            finally:
                os.close(self._orig_fd)
                self._orig_fd = None

    def delete(self):
        self.leave()
        run(["sh", NETNS_SH, "del", self.name], check=False)
        _live["netns"].discard(self)


def remove_stale_netns():
    """Namespaces left by a test process that no longer exists (killed hard)."""
    p = run(["ip", "netns", "list"], check=False)
    for line in p.stdout.splitlines():
        m = re.match(r"(sp-(\d+)-\d+)\b", line)
        if m and not os.path.exists("/proc/" + m.group(2)):
            run(["sh", NETNS_SH, "del", m.group(1)], check=False)


class ProxyCase(unittest.TestCase):
    """Starts what a test needs and stops it at the end, in reverse order."""

    maxDiff = 4000

    def run(self, result=None):
        # On failure, show what sockpool logged: most failures are explained there.
        self._proxies = []
        before = len(result.failures) + len(result.errors) if result else 0
        out = super().run(result)
        failed = result and len(result.failures) + len(result.errors) > before
        if failed or os.environ.get("SOCKPOOL_TEST_SHOWLOG"):
            for p in self._proxies:
                sys.stderr.write("\n---- sockpool stderr of %s (last 60 lines)\n%s\n" % (
                    self.id(), p.tail(60)))
        return out

    def start_proxy(self, config=BASE_CONFIG, **kw):
        if PEER == "microsocks":
            p = Microsocks()
        else:
            if not os.access(SOCKPOOL_BIN, os.X_OK):
                self.fail("SOCKPOOL_BIN %r is not executable" % SOCKPOOL_BIN)
            ready = kw.pop("ready", True)
            p = Proxy(config, ready=False, **kw)
            self._proxies.append(p)
            self.addCleanup(p.stop)
            if ready:
                p.wait_ready()
            return p
        self._proxies.append(p)
        self.addCleanup(p.stop)
        return p

    def start_server(self, cls, *args, **kw):
        s = cls(*args, **kw)
        self.addCleanup(s.close)
        return s

    def start_http(self, host="127.0.0.1"):
        s = HTTPServer(host)
        self.addCleanup(s.close)
        return s

    def open(self, proxy_addr, host, port, **kw):
        s, reply = socks_open(proxy_addr, host, port, **kw)
        self.addCleanup(s.close)
        return s, reply

    def raw(self, proxy_addr, source=None, timeout=IO_TIMEOUT):
        s = connect_to(proxy_addr, source, timeout)
        self.addCleanup(s.close)
        return s

    def assertEcho(self, sock, payload=b"hello sockpool\n"):
        sock.sendall(payload)
        self.assertEqual(recv_exact(sock, len(payload)), payload)


class NetnsCase(ProxyCase):
    """Each test runs in a fresh namespace holding ADDRS on lo; the test's
    main thread lives in it, so do its servers, clients and sockpool."""

    ADDRS = ()

    def setUp(self):
        # CI runs as root with iproute2: a missing prerequisite is a failure.
        if not netns_available():
            self.fail("namespace tests need root, ip(8) and scripts/netns.sh")
        self.ns = Netns(self.ADDRS)
        self.addCleanup(self.ns.delete)
        self.ns.enter()
        self.addCleanup(self.ns.leave)


def _on_term(signum, frame):
    for p in list(_live["procs"]):
        try:
            p.proc.kill()
        except OSError:
            pass
        if getattr(p, "dir", None):
            shutil.rmtree(p.dir, ignore_errors=True)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for ns in list(_live["netns"]):
        try:
            ns.leave()
            run(["sh", NETNS_SH, "del", ns.name], check=False, timeout=10)
        except Exception:
            pass
    sys.stderr.write("\nharness: killed by signal %d, cleaned up\n" % signum)
    os._exit(128 + signum)


def main():
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    unittest.main(verbosity=2)
