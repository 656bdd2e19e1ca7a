"""SOCKS5 behaviour on loopback: relaying, half-close, reply codes, handshake
shapes, IPv6, client `allow`, `deny_destinations`, BND.ADDR, timeouts."""

import socket
import struct
import threading
import time

from harness import (ATYP_V4, ATYP_V6, CMD_BIND, CMD_CONNECT, CMD_UDP, EchoServer,
                     NetnsCase, ProxyCase, RecordServer, fetch_peer_line, greeting, main,
                     make_config, negotiate, read_reply, read_until_close, recv_exact,
                     request, sockpool_only, socks_open)


class Relay(ProxyCase):
    def setUp(self):
        self.proxy = self.start_proxy()
        self.echo = self.start_server(EchoServer)

    def test_connect_ipv4_relays_both_ways(self):
        s, reply = self.open(self.proxy.addr, *self.echo.addr)
        self.assertEqual(reply.rep, 0)
        self.assertEqual(reply.atyp, ATYP_V4, "reply must carry the request's ATYP")
        for i in range(5):
            self.assertEcho(s, b"line %d\r\n" % i)
        self.assertEcho(s, bytes(range(256)) * 300)

    def test_connect_domain_localhost(self):
        s, reply = self.open(self.proxy.addr, "localhost", self.echo.port)
        self.assertEqual(reply.rep, 0)
        self.assertEcho(s)

    def test_half_close_client_shuts_write_still_receives_everything(self):
        payload = bytes(range(251)) * (4 * 1024 * 1024 // 251)
        s, _ = self.open(self.proxy.addr, *self.echo.addr)
        err = []

        def send():
            try:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
            except OSError as e:
                err.append(e)
        t = threading.Thread(target=send, daemon=True)
        t.start()
        got, how = read_until_close(s, 30, limit=len(payload) + 1)
        t.join(10)
        self.assertEqual(err, [])
        self.assertEqual(how, "eof", "echo server closes after echoing; proxy must pass FIN")
        self.assertEqual(len(got), len(payload))
        self.assertTrue(got == payload, "echoed bytes differ")
        self.assertEqual(self.echo.wait_results(1), [len(payload)])

    def test_server_half_close_client_keeps_sending(self):
        # The server closes its side first (FIN); the client must still be able
        # to send, and the server to read it: the other direction stays open.
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        s, _ = self.open(self.proxy.addr, *listener.getsockname())
        listener.settimeout(10)
        conn, _ = listener.accept()
        self.addCleanup(conn.close)
        conn.settimeout(10)
        conn.sendall(b"bye")
        conn.shutdown(socket.SHUT_WR)
        self.assertEqual(recv_exact(s, 3), b"bye")
        s.settimeout(5)
        self.assertEqual(s.recv(10), b"", "server's FIN must reach the client")
        s.sendall(b"still here")
        self.assertEqual(recv_exact(conn, 10), b"still here")
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(conn.recv(10), b"")

    @sockpool_only
    def test_destination_reset_reaches_client_as_reset(self):
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        s, _ = self.open(self.proxy.addr, *listener.getsockname())
        listener.settimeout(10)
        conn, _ = listener.accept()
        conn.sendall(b"partial")
        self.assertEqual(recv_exact(s, 7), b"partial")
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        data, how = read_until_close(s, 5)
        self.assertEqual((data, how), (b"", "reset"), "an RST must not become a clean EOF")

    @sockpool_only
    def test_client_reset_reaches_destination_as_reset(self):
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        s, _ = socks_open(self.proxy.addr, *listener.getsockname())
        listener.settimeout(10)
        conn, _ = listener.accept()
        self.addCleanup(conn.close)
        s.sendall(b"x")
        self.assertEqual(recv_exact(conn, 1), b"x")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        data, how = read_until_close(conn, 5)
        self.assertEqual((data, how), (b"", "reset"), "an RST must not become a clean EOF")

    def test_closed_port_replies_05_then_closes(self):
        closed = socket.socket()
        self.addCleanup(closed.close)
        closed.bind(("127.0.0.1", 0))  # bound, never listening: RST
        s = self.raw(self.proxy.addr)
        sel = negotiate(s, request(CMD_CONNECT, *closed.getsockname()))
        self.assertEqual(sel, b"\x05\x00")
        reply = read_reply(s)
        self.assertEqual(reply.raw[:4], b"\x05\x05\x00\x01", repr(reply))
        self.assertEqual(len(reply.raw), 10)
        data, how = read_until_close(s, 5)
        self.assertEqual(data, b"")
        self.assertIn(how, ("eof", "reset"), "connection must be closed after a failure")

    def test_split_handshake_one_byte_per_send_waiting_for_answers(self):
        s = self.raw(self.proxy.addr)
        for b in greeting():
            s.sendall(bytes([b]))
            time.sleep(0.005)
        self.assertEqual(recv_exact(s, 2), b"\x05\x00")
        for b in request(CMD_CONNECT, *self.echo.addr):
            s.sendall(bytes([b]))
            time.sleep(0.005)
        self.assertEqual(read_reply(s).rep, 0)
        self.assertEcho(s)

    def test_split_handshake_one_byte_per_send_without_waiting(self):
        s = self.raw(self.proxy.addr)
        for b in greeting() + request(CMD_CONNECT, "localhost", self.echo.port):
            s.sendall(bytes([b]))
            time.sleep(0.003)
        self.assertEqual(recv_exact(s, 2), b"\x05\x00")
        self.assertEqual(read_reply(s).rep, 0)
        self.assertEcho(s)

    def test_pipelined_greeting_and_request(self):
        s = self.raw(self.proxy.addr)
        sel = negotiate(s, request(CMD_CONNECT, *self.echo.addr), pipelined=True)
        self.assertEqual(sel, b"\x05\x00")
        self.assertEqual(read_reply(s).rep, 0)
        self.assertEcho(s)

    def test_pipelined_greeting_request_and_first_data(self):
        s = self.raw(self.proxy.addr)
        s.sendall(greeting() + request(CMD_CONNECT, *self.echo.addr) + b"EHLO early\r\n")
        self.assertEqual(recv_exact(s, 2), b"\x05\x00")
        self.assertEqual(read_reply(s).rep, 0)
        self.assertEqual(recv_exact(s, 12), b"EHLO early\r\n",
                         "bytes after the request in the same packet must be relayed")

    def test_greeting_offering_several_methods_picks_no_auth(self):
        s = self.raw(self.proxy.addr)
        s.sendall(greeting((0x80, 0x02, 0x00, 0x01)))
        self.assertEqual(recv_exact(s, 2), b"\x05\x00")

    def test_no_acceptable_method_replies_ff_and_closes(self):
        s = self.raw(self.proxy.addr)
        s.sendall(greeting((0x02,)))
        self.assertEqual(recv_exact(s, 2), b"\x05\xff")
        data, how = read_until_close(s, 5)
        self.assertEqual((data, how in ("eof", "reset")), (b"", True))

    @sockpool_only
    def test_bad_request_version_is_not_relayed(self):
        s = self.raw(self.proxy.addr)
        s.sendall(greeting() + b"\x04" + request(CMD_CONNECT, *self.echo.addr)[1:])
        self.assertEqual(recv_exact(s, 2), b"\x05\x00")
        data, how = read_until_close(s, 5)
        self.assertIn(how, ("eof", "reset"))
        if data:
            self.assertEqual(data[0], 5)
            self.assertNotEqual(data[1], 0, "a bad version must not succeed")
        self.assertEqual(self.echo.connections, 0)

    @sockpool_only
    def test_bad_atyp_replies_08_and_closes(self):
        s = self.raw(self.proxy.addr)
        s.sendall(greeting() + b"\x05\x01\x00\x09\x7f\x00\x00\x01\x00\x50")
        self.assertEqual(recv_exact(s, 2), b"\x05\x00")
        data, how = read_until_close(s, 5)
        self.assertGreaterEqual(len(data), 2, "expected a reply, got %r (%s)" % (data, how))
        self.assertEqual(data[:3], b"\x05\x08\x00")
        self.assertIn(how, ("eof", "reset"))

    @sockpool_only
    def test_udp_associate_replies_07(self):
        s = self.raw(self.proxy.addr)
        self.assertEqual(negotiate(s, request(CMD_UDP, "127.0.0.1", 0)), b"\x05\x00")
        reply = read_reply(s)
        self.assertEqual(reply.raw[:4], b"\x05\x07\x00\x01", repr(reply))
        data, how = read_until_close(s, 5)
        self.assertIn(how, ("eof", "reset"))

    @sockpool_only
    def test_bind_with_nonzero_port_replies_02(self):
        s = self.raw(self.proxy.addr)
        self.assertEqual(negotiate(s, request(CMD_BIND, "127.0.0.1", 25)), b"\x05\x00")
        reply = read_reply(s)
        self.assertEqual(reply.raw[:4], b"\x05\x02\x00\x01", repr(reply))
        data, how = read_until_close(s, 5)
        self.assertIn(how, ("eof", "reset"))

    @sockpool_only
    def test_reply_bnd_addr_is_the_outbound_local_address(self):
        record = self.start_server(RecordServer)
        for _ in range(3):
            reply, peer = fetch_peer_line(self.proxy.addr, record.addr)
            self.assertEqual(reply.atyp, ATYP_V4)
            self.assertEqual((reply.host, reply.port), peer,
                             "BND.ADDR:BND.PORT must be the outbound socket's local address")
            self.assertNotEqual(reply.port, 0)


@sockpool_only
class Ipv6(ProxyCase):
    def setUp(self):
        self.proxy = self.start_proxy(make_config(listen=["[::1]:0", "127.0.0.1:0"]))

    def test_both_listeners_reported(self):
        self.assertEqual(sorted(h for h, _ in self.proxy.listeners), ["127.0.0.1", "::1"])

    def test_ipv6_listener_to_ipv6_destination(self):
        record = self.start_server(RecordServer, "::1")
        reply, peer = fetch_peer_line(self.proxy.listener(socket.AF_INET6), record.addr)
        self.assertEqual(reply.atyp, ATYP_V6)
        self.assertEqual((reply.host, reply.port), peer)
        self.assertEqual(peer[0], "::1")
        echo = self.start_server(EchoServer, "::1")
        s, _ = self.open(self.proxy.listener(socket.AF_INET6), *echo.addr)
        self.assertEcho(s)

    def test_ipv4_listener_to_ipv6_destination_and_back(self):
        echo6 = self.start_server(EchoServer, "::1")
        s, reply = self.open(self.proxy.listener(socket.AF_INET), *echo6.addr)
        self.assertEqual(reply.atyp, ATYP_V6)
        self.assertEcho(s)
        echo4 = self.start_server(EchoServer)
        s, reply = self.open(self.proxy.listener(socket.AF_INET6), *echo4.addr)
        self.assertEqual(reply.atyp, ATYP_V4)
        self.assertEcho(s)


@sockpool_only
class Allow(ProxyCase):
    def setUp(self):
        self.proxy = self.start_proxy(make_config(allow="127.0.0.2/32"))
        self.echo = self.start_server(EchoServer)

    def test_client_outside_allow_is_refused(self):
        try:
            s = self.raw(self.proxy.addr, source="127.0.0.1")
            s.sendall(greeting() + request(CMD_CONNECT, *self.echo.addr) + b"ping")
            data, how = read_until_close(s, 5)
        except (ConnectionResetError, BrokenPipeError):
            data, how = b"", "reset"
        self.assertIn(how, ("eof", "reset"), "refused client must be closed")
        # Nothing at all, or a refusal: method 0xff, or a 0x02 reply.
        refused = (data in (b"", b"\x05\xff") or data.startswith(b"\x05\x02")
                   or data.startswith(b"\x05\x00\x05\x02"))
        self.assertTrue(refused, "a client outside `allow` got %r" % data)
        self.assertEqual(self.echo.connections, 0, "must not relay for a refused client")

    def test_client_inside_allow_is_served(self):
        s, _ = self.open(self.proxy.addr, *self.echo.addr, source="127.0.0.2")
        self.assertEcho(s)


@sockpool_only
class DenyDestinations(ProxyCase):
    def setUp(self):
        self.proxy = self.start_proxy(make_config(listen=["[::1]:0"],
                                             deny_destinations="127.0.0.0/8, fe80::/10"))
        self.echo4 = self.start_server(EchoServer)
        self.echo6 = self.start_server(EchoServer, "::1")

    def assertDenied(self, host, port):
        s = self.raw(self.proxy.addr)
        self.assertEqual(negotiate(s, request(CMD_CONNECT, host, port)), b"\x05\x00")
        reply = read_reply(s)
        self.assertEqual(reply.raw[:3], b"\x05\x02\x00", "%s: %r" % (host, reply))
        data, how = read_until_close(s, 5)
        self.assertIn(how, ("eof", "reset"))

    def test_denied_ipv4_destination_replies_02(self):
        self.assertDenied("127.0.0.1", self.echo4.port)
        self.assertEqual(self.echo4.connections, 0)

    def test_denied_v4_mapped_destination_replies_02(self):
        self.assertDenied("::ffff:127.0.0.1", self.echo4.port)
        self.assertEqual(self.echo4.connections, 0)

    def test_domain_resolving_to_denied_address_replies_02(self):
        self.assertDenied("localhost", self.echo4.port)
        self.assertEqual(self.echo4.connections, 0)

    def test_allowed_destination_still_works(self):
        s, _ = self.open(self.proxy.addr, *self.echo6.addr)
        self.assertEcho(s)


@sockpool_only
class Timeouts(ProxyCase):
    def setUp(self):
        self.proxy = self.start_proxy(make_config(handshake_timeout="1s", idle_timeout="1s"))

    def test_silent_client_closed_after_handshake_timeout(self):
        s = self.raw(self.proxy.addr)
        t0 = time.monotonic()
        data, how = read_until_close(s, 6)
        elapsed = time.monotonic() - t0
        self.assertIn(how, ("eof", "reset"), "still open after 6s")
        self.assertEqual(data, b"")
        self.assertGreater(elapsed, 0.7)

    def test_idle_relayed_connection_closed_after_idle_timeout(self):
        echo = self.start_server(EchoServer)
        s, _ = self.open(self.proxy.addr, *echo.addr)
        # Activity keeps it open past the timeout ...
        for _ in range(4):
            time.sleep(0.4)
            self.assertEcho(s)
        # ... silence closes it.
        t0 = time.monotonic()
        data, how = read_until_close(s, 6)
        self.assertIn(how, ("eof", "reset"), "idle connection still open after 6s")
        self.assertGreater(time.monotonic() - t0, 0.7)


class Resolve(NetnsCase):
    """In an empty namespace, so a DNS query cannot leave the machine."""

    def test_unresolvable_domain_replies_04(self):
        proxy = self.start_proxy()
        s = self.raw(proxy.addr)
        sel = negotiate(s, request(CMD_CONNECT, "nonexistent.invalid", 25))
        self.assertEqual(sel, b"\x05\x00")
        reply = read_reply(s)
        self.assertEqual(reply.raw[:3], b"\x05\x04\x00", repr(reply))
        data, how = read_until_close(s, 5)
        self.assertIn(how, ("eof", "reset"))


if __name__ == "__main__":
    main()
