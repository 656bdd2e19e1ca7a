"""The KumoMTA protocol (BIND src:0, then CONNECT on the same connection) and
deny_destinations, in a namespace with TEST-NET sources."""

import ipaddress

from harness import (ATYP_V4, ATYP_V6, CMD_BIND, CMD_CONNECT, CMD_UDP, NetnsCase,
                     RecordServer, SocksError, connect_to, fetch_peer_line, greeting, main,
                     make_config, read_reply, read_until_close, recv_exact, request,
                     socks_open, suspended)

DEST4 = "192.0.2.200"
DENIED = "192.0.2.201"
DEST6 = "2001:db8::200"

SECTIONS = """\
[defaults]
suspend_when_unplumbed.trigger = immediate
suspend_when_unplumbed.duration = 1m

[source "ip-1"]
address = 192.0.2.10

[source "ip-2"]
address = 192.0.2.11

[source "ip-gone"]
address = 192.0.2.50

[source "ip-gone2"]
address = 192.0.2.51

[source "ip6-1"]
address = 2001:db8::10

[pool "main"]
source = ip-1, ip-2, ip6-1

[pool "spare"]
source = ip-gone, ip-gone2
"""


def bind_success(host):
    """The exact BIND reply the SPEC requires: success, BND.ADDR = host:0."""
    ip = ipaddress.ip_address(host)
    return bytes([5, 0, 0, ATYP_V4 if ip.version == 4 else ATYP_V6]) + ip.packed + b"\0\0"


class KumoBase(NetnsCase):
    ADDRS = ("192.0.2.10", "192.0.2.11", "192.0.2.12", "2001:db8::10", DEST4, DENIED, DEST6)
    BIND_UNLISTED = "deny"

    def setUp(self):
        super().setUp()
        self.proxy = self.start_proxy(make_config(
            bind_unlisted=self.BIND_UNLISTED, deny_destinations=DENIED + "/32",
            sections=SECTIONS))
        self.rec4 = self.start_server(RecordServer, DEST4)
        self.rec6 = self.start_server(RecordServer, DEST6)

    def kumo(self, src, dest, pipelined):
        """BIND src:0 then CONNECT dest: (bind reply, connect reply, peer seen)."""
        s = connect_to(self.proxy.addr)
        self.addCleanup(s.close)
        msgs = [request(CMD_BIND, src, 0), request(CMD_CONNECT, *dest)]
        if pipelined:
            s.sendall(greeting() + b"".join(msgs))
        else:
            s.sendall(greeting())
        self.assertEqual(recv_exact(s, 2), b"\x05\x00")
        if not pipelined:
            s.sendall(msgs[0])
        bind_reply = read_reply(s)
        if bind_reply.rep != 0:
            return bind_reply, None, None
        if not pipelined:
            s.sendall(msgs[1])
        reply = read_reply(s)
        if reply.rep != 0:
            return bind_reply, reply, None
        data, how = read_until_close(s, 10)
        self.assertEqual(how, "eof")
        ip, port = data.decode().split()
        return bind_reply, reply, (ip, int(port))

    def assert_refused_after(self, s, what):
        data, how = read_until_close(s, 5)
        self.assertIn(how, ("eof", "reset"), "%s: connection not closed" % what)
        if len(data) >= 2:
            self.assertNotEqual(data[1], 0, "%s: a success reply followed: %r" % (what, data))


class KumoBind(KumoBase):

    def test_bind_then_connect_pipelined_and_waiting(self):
        for pipelined in (True, False):
            for src in ("192.0.2.10", "192.0.2.11", "192.0.2.10", "192.0.2.11", "192.0.2.11"):
                with self.subTest(pipelined=pipelined, src=src):
                    bind_reply, reply, peer = self.kumo(src, self.rec4.addr, pipelined)
                    self.assertEqual(bind_reply.raw, bind_success(src))
                    self.assertEqual(reply.rep, 0, repr(reply))
                    self.assertEqual(peer[0], src, "destination must see the BIND source")
                    self.assertEqual((reply.host, reply.port), peer)

    def test_bind_ipv6_source_and_destination(self):
        for pipelined in (True, False):
            bind_reply, reply, peer = self.kumo("2001:db8::10", self.rec6.addr, pipelined)
            self.assertEqual(bind_reply.raw, bind_success("2001:db8::10"))
            self.assertEqual(reply.atyp, ATYP_V6)
            self.assertEqual(peer[0], "2001:db8::10")
            self.assertEqual((reply.host, reply.port), peer)

    def test_bind_any_lets_the_pool_choose(self):
        seen = []
        for _ in range(4):
            bind_reply, reply, peer = self.kumo("0.0.0.0", self.rec4.addr, True)
            self.assertEqual(bind_reply.rep, 0, repr(bind_reply))
            self.assertEqual(reply.rep, 0, repr(reply))
            seen.append(peer[0])
        self.assertEqual(sorted(seen), ["192.0.2.10"] * 2 + ["192.0.2.11"] * 2,
                         "BIND 0.0.0.0:0 must round-robin like a plain CONNECT")
        bind_reply, reply, peer = self.kumo("::", self.rec6.addr, False)
        self.assertEqual((bind_reply.rep, reply.rep, peer[0]), (0, 0, "2001:db8::10"))

    def test_bind_unlisted_address_denied_with_02(self):
        for pipelined in (True, False):
            bind_reply, reply, peer = self.kumo("192.0.2.12", self.rec4.addr, pipelined)
            self.assertEqual(bind_reply.raw[:4], b"\x05\x02\x00\x01", repr(bind_reply))
        self.assertEqual(self.rec4.connections, 0)

    def test_bind_unplumbed_source_fails_without_connection(self):
        # Two sources, so that each way meets a bind failure, not a suspension.
        for pipelined, src in ((True, "192.0.2.50"), (False, "192.0.2.51")):
            with self.subTest(pipelined=pipelined):
                bind_reply, reply, peer = self.kumo(src, self.rec4.addr, pipelined)
                self.assertNotEqual(bind_reply.rep, 0, "BIND to an unplumbed source succeeded")
                self.assertIsNone(reply)
        self.assertEqual(self.rec4.connections, 0, "no failover for an explicit BIND")

    def test_bind_suspended_source_fails_even_when_plumbed_again(self):
        # Suspend ip-2 through plain CONNECTs, then plumb it back: still suspended.
        self.ns.remove("192.0.2.11")
        for _ in range(3):
            _, peer = fetch_peer_line(self.proxy.addr, self.rec4.addr)
            self.assertNotEqual(peer[0], "192.0.2.11")
        self.proxy.wait_log(suspended("ip-2"), 2)
        self.ns.add("192.0.2.11")
        start = self.rec4.connections
        bind_reply, reply, peer = self.kumo("192.0.2.11", self.rec4.addr, False)
        self.assertNotEqual(bind_reply.rep, 0, "BIND to a suspended source succeeded")
        self.assertEqual(self.rec4.connections, start)

    def test_bind_nonzero_port_replies_02_and_closes(self):
        s = connect_to(self.proxy.addr)
        self.addCleanup(s.close)
        s.sendall(greeting() + request(CMD_BIND, "192.0.2.10", 2525))
        self.assertEqual(recv_exact(s, 2), b"\x05\x00")
        self.assertEqual(read_reply(s).raw[:4], b"\x05\x02\x00\x01")
        self.assert_refused_after(s, "BIND with a port")

    def test_second_bind_fails_and_closes(self):
        s = connect_to(self.proxy.addr)
        self.addCleanup(s.close)
        s.sendall(greeting() + request(CMD_BIND, "192.0.2.10", 0))
        self.assertEqual(recv_exact(s, 2), b"\x05\x00")
        self.assertEqual(read_reply(s).raw, bind_success("192.0.2.10"))
        s.sendall(request(CMD_BIND, "192.0.2.11", 0) + request(CMD_CONNECT, *self.rec4.addr))
        second = read_reply(s)
        self.assertIn(second.rep, (2, 7), repr(second))
        self.assert_refused_after(s, "second BIND")
        self.assertEqual(self.rec4.connections, 0)

    def test_udp_after_bind_fails_and_closes(self):
        s = connect_to(self.proxy.addr)
        self.addCleanup(s.close)
        s.sendall(greeting() + request(CMD_BIND, "192.0.2.10", 0) +
                  request(CMD_UDP, "0.0.0.0", 0))
        self.assertEqual(recv_exact(s, 2), b"\x05\x00")
        self.assertEqual(read_reply(s).raw, bind_success("192.0.2.10"))
        self.assertIn(read_reply(s).rep, (2, 7))
        self.assert_refused_after(s, "UDP ASSOCIATE after BIND")

    def test_bind_family_mismatch_fails_without_connection(self):
        bind_reply, reply, peer = self.kumo("2001:db8::10", self.rec4.addr, True)
        self.assertTrue(bind_reply.rep != 0 or (reply is not None and reply.rep != 0),
                        "an IPv6 source cannot reach an IPv4 destination")
        self.assertEqual(self.rec4.connections, 0)

    def test_denied_destination_replies_02(self):
        rec = self.start_server(RecordServer, DENIED)
        with self.assertRaises(SocksError) as cm:
            socks_open(self.proxy.addr, *rec.addr)
        self.assertEqual(cm.exception.reply.raw[:4], b"\x05\x02\x00\x01")
        bind_reply, reply, peer = self.kumo("192.0.2.10", rec.addr, True)
        self.assertEqual(reply.raw[:4] if reply else bind_reply.raw[:4], b"\x05\x02\x00\x01")
        self.assertEqual(rec.connections, 0)
        # The allowed neighbour still works.
        _, peer = fetch_peer_line(self.proxy.addr, self.rec4.addr)
        self.assertIn(peer[0], ("192.0.2.10", "192.0.2.11"))


class KumoBindUnlistedAllowed(KumoBase):
    BIND_UNLISTED = "allow"

    def test_bind_unlisted_address_allowed(self):
        for pipelined in (True, False):
            bind_reply, reply, peer = self.kumo("192.0.2.12", self.rec4.addr, pipelined)
            self.assertEqual(bind_reply.raw, bind_success("192.0.2.12"))
            self.assertEqual(peer[0], "192.0.2.12")


if __name__ == "__main__":
    main()
