"""Upstream SOCKS5 sources (SPEC 4.4): sockpool chained to another sockpool,
with credentials and a BIND of the source address, failure blame and
pass-through of the upstream's reply code."""

import socket

from harness import (CMD_CONNECT, NetnsCase, RecordServer, fetch_peer_line, fmt_hostport,
                     main, make_config, negotiate, read_reply, request, suspended)

DEST4 = "192.0.2.200"

UPSTREAM = """\
[source "ip-1"]
address = 192.0.2.10

[source "ip-2"]
address = 192.0.2.11

[pool "main"]
source = ip-1, ip-2

[user "relay"]
password = secret
pool = main
"""


def far_source(name, server, source_address=None):
    text = ('[source "%s"]\nsocks5_proxy_server = %s\nsocks5_proxy_username = relay\n'
            'socks5_proxy_password = secret\n'
            'suspend_when_proxy_unhealthy.trigger = immediate\n'
            'suspend_when_proxy_unhealthy.duration = 1m\n' % (name, server))
    if source_address:
        text += "socks5_proxy_source_address = %s\n" % source_address
    return text + "\n"


class Upstream(NetnsCase):
    ADDRS = ("192.0.2.10", "192.0.2.11", DEST4)

    def setUp(self):
        super().setUp()
        self.upstream = self.start_proxy(make_config(auth="password", sections=UPSTREAM))
        self.record = self.start_server(RecordServer, DEST4)
        self.up = fmt_hostport(*self.upstream.addr)

    def front(self, sections):
        return self.start_proxy(make_config(sections=sections))

    def test_chain_with_bind_of_source_address(self):
        front = self.front(far_source("far-1", self.up, "192.0.2.11") +
                           '[pool "main"]\nsource = far-1\n')
        for _ in range(4):
            reply, peer = fetch_peer_line(front.addr, self.record.addr)
            self.assertEqual(peer[0], "192.0.2.11", "upstream must egress from the BIND address")

    def test_chain_without_source_address_uses_upstream_pool(self):
        front = self.front(far_source("far-2", self.up) + '[pool "main"]\nsource = far-2\n')
        seen = [fetch_peer_line(front.addr, self.record.addr)[1][0] for _ in range(4)]
        self.assertEqual(sorted(seen), ["192.0.2.10"] * 2 + ["192.0.2.11"] * 2)

    def test_dead_upstream_is_suspended_and_next_source_used(self):
        dead = socket.socket()
        self.addCleanup(dead.close)
        dead.bind(("127.0.0.1", 0))  # never listens: connection refused
        front = self.front(
            far_source("far-dead", fmt_hostport(*dead.getsockname())) +
            far_source("far-1", self.up, "192.0.2.10") +
            '[pool "main"]\nstrategy = failover\nsource = far-dead priority=1\n'
            'source = far-1 priority=2\n')
        for _ in range(3):
            reply, peer = fetch_peer_line(front.addr, self.record.addr)
            self.assertEqual(peer[0], "192.0.2.10")
        front.wait_log(suspended("far-dead"), 2)
        self.assertEqual(front.count_log(suspended("far-dead")), 1)

    def test_upstream_connect_failure_code_passes_through(self):
        front = self.front(far_source("far-1", self.up, "192.0.2.10") +
                           '[pool "main"]\nsource = far-1\n')
        closed = socket.socket()
        self.addCleanup(closed.close)
        closed.bind((DEST4, 0))
        s = self.raw(front.addr)
        self.assertEqual(negotiate(s, request(CMD_CONNECT, *closed.getsockname())), b"\x05\x00")
        self.assertEqual(read_reply(s).raw[:2], b"\x05\x05")
        self.assertEqual(front.count_log(suspended("far-1")), 0,
                         "a destination failure must not blame the upstream")


if __name__ == "__main__":
    main()
