"""systemd's readiness protocol (sd_notify): with $NOTIFY_SOCKET set, as a
`Type=notify` unit has it, sockpool says READY=1 once its listeners are open,
RELOADING=1 (with MONOTONIC_USEC) and then READY=1 around a SIGHUP reload,
and STOPPING=1 when SIGTERM starts the drain."""

import os
import shutil
import signal
import socket
import tempfile
import time

from harness import ProxyCase, main, make_config, log_matcher

WAIT = 10.0


class NotifySocket:
    """The service manager's end: an AF_UNIX datagram socket."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="sockpool-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)

    def next(self, timeout=WAIT):
        """The next message as a dict of its KEY=VALUE lines."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            raise AssertionError("no notify message within %.0fs" % timeout)
        return dict(line.split("=", 1) for line in data.decode().split("\n") if line)

    def none_within(self, seconds):
        self.sock.settimeout(seconds)
        try:
            return self.sock.recv(4096)
        except socket.timeout:
            return None

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Notify(ProxyCase):
    def setUp(self):
        self.nsock = NotifySocket()
        self.addCleanup(self.nsock.close)

    def test_ready_reloading_ready_stopping(self):
        proxy = self.start_proxy(make_config(), env={"NOTIFY_SOCKET": self.nsock.path})
        msg = self.nsock.next()
        self.assertEqual(msg.get("READY"), "1", msg)
        # Only after the listeners are open: the proxy answers right away.
        s = self.raw(proxy.addr)
        s.sendall(b"\x05\x01\x00")
        self.assertEqual(s.recv(2), b"\x05\x00")
        s.close()  # no live session left to drain at SIGTERM

        before_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        mark = proxy.mark()
        proxy.send_signal(signal.SIGHUP)
        msg = self.nsock.next()
        self.assertEqual(msg.get("RELOADING"), "1", msg)
        self.assertIn("MONOTONIC_USEC", msg)
        sent_us = int(msg["MONOTONIC_USEC"])
        self.assertGreaterEqual(sent_us, before_us)
        self.assertLess(sent_us - before_us, WAIT * 1e6)
        msg = self.nsock.next()
        self.assertEqual(msg.get("READY"), "1", msg)
        proxy.wait_log(log_matcher("INFO", ("reloaded",)), start=mark)

        proxy.send_signal(signal.SIGTERM)
        msg = self.nsock.next()
        self.assertEqual(msg.get("STOPPING"), "1", msg)
        self.assertEqual(proxy.wait_exit(WAIT), 0)

    def test_rejected_reload_still_ends_with_ready(self):
        proxy = self.start_proxy(make_config(), env={"NOTIFY_SOCKET": self.nsock.path})
        self.assertEqual(self.nsock.next().get("READY"), "1")
        with open(proxy.conf_path, "a") as f:
            f.write("\n[server]\nbogus_key = 1\n")
        mark = proxy.mark()
        proxy.send_signal(signal.SIGHUP)
        self.assertEqual(self.nsock.next().get("RELOADING"), "1")
        # The old configuration keeps serving, so the unit must leave `reloading`.
        self.assertEqual(self.nsock.next().get("READY"), "1")
        proxy.wait_log(log_matcher("ERROR", ("reload rejected",)), start=mark)

    def test_failed_start_never_says_ready(self):
        # A listener that cannot be opened: sockpool exits 1 without READY=1.
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        self.addCleanup(taken.close)
        port = taken.getsockname()[1]
        proxy = self.start_proxy(make_config(listen=("127.0.0.1:%d" % port,)), ready=False,
                                 env={"NOTIFY_SOCKET": self.nsock.path})
        self.assertEqual(proxy.wait_exit(WAIT), 1)
        proxy.stop(expect_rc=1)
        self.assertIsNone(self.nsock.none_within(0.2))


if __name__ == "__main__":
    main()
