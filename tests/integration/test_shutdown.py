"""SIGTERM/SIGINT: stop accepting, let live connections finish (up to
shutdown_timeout), exit 0."""

import signal
import socket
import time

from harness import (EchoServer, ProxyCase, accepts_new_connection, main, make_config,
                     read_until_close, sockpool_only)


@sockpool_only
class Shutdown(ProxyCase):
    def setUp(self):
        self.echo = self.start_server(EchoServer)

    def test_sigterm_drains_live_connection_then_exits_0(self):
        proxy = self.start_proxy(make_config(shutdown_timeout="30s"))
        s, _ = self.open(proxy.addr, *self.echo.addr)
        self.assertEcho(s, b"before\n")
        proxy.send_signal(signal.SIGTERM)

        deadline = time.monotonic() + 5
        while accepts_new_connection(proxy.addr, self.echo.addr):
            self.assertLess(time.monotonic(), deadline,
                            "still accepting new connections 5s after SIGTERM")
            time.sleep(0.05)

        self.assertIsNone(proxy.proc.poll(), "exited while a connection was live")
        for i in range(20):
            self.assertEcho(s, b"during shutdown %d\n" % i)
        self.assertEcho(s, b"x" * 1_000_000)
        time.sleep(0.3)
        self.assertIsNone(proxy.proc.poll(), "exited while a connection was live")

        s.shutdown(socket.SHUT_WR)
        data, how = read_until_close(s, 5)
        self.assertEqual((data, how), (b"", "eof"))
        s.close()
        rc = proxy.wait_exit(10)
        self.assertEqual(rc, 0, "exit code after the last connection ended")
        proxy.stop()

    def test_sigterm_shutdown_timeout_closes_stuck_connection(self):
        proxy = self.start_proxy(make_config(shutdown_timeout="1s"))
        s, _ = self.open(proxy.addr, *self.echo.addr)
        self.assertEcho(s)
        t0 = time.monotonic()
        proxy.send_signal(signal.SIGTERM)
        rc = proxy.wait_exit(8)
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 0, "no exit (None) or bad exit code within 8s")
        self.assertGreater(elapsed, 0.5, "did not wait for the live connection")
        data, how = read_until_close(s, 3)
        self.assertIn(how, ("eof", "reset"))
        proxy.stop()

    def test_sigint_idle_exits_0(self):
        proxy = self.start_proxy()
        proxy.send_signal(signal.SIGINT)
        self.assertEqual(proxy.wait_exit(5), 0)
        proxy.stop()


if __name__ == "__main__":
    main()
