"""Source selection in a namespace: exact weighted shares, address family,
hash consistency, and port exhaustion (never a suspension)."""

import socket

from harness import (CMD_CONNECT, IP_BIND_ADDRESS_NO_PORT, NetnsCase, RecordServer,
                     fetch_peer_line, log_matcher, main, make_config, quick_connect, request,
                     run, suspended)

DEST4 = "192.0.2.200"
DEST6 = "2001:db8::200"


def sources(*specs):
    """[source "NAME"] sections from (name, address) pairs."""
    return "".join('[source "%s"]\naddress = %s\n\n' % s for s in specs)


class Selection(NetnsCase):
    ADDRS = ("192.0.2.10", "192.0.2.11", "192.0.2.12", "192.0.2.13", DEST4, "192.0.2.201",
             "192.0.2.202", "192.0.2.203", "2001:db8::10", "2001:db8::11", DEST6)

    def run_requests(self, proxy, dest, n):
        """n sequential CONNECTs; returns the list of reply codes that were not 0."""
        req = request(CMD_CONNECT, *dest)
        bad = []
        for _ in range(n):
            rep = quick_connect(proxy.addr, req).rep
            if rep:
                bad.append(rep)
        return bad

    def test_weights_2_1_0_over_3000_connections(self):
        proxy = self.start_proxy(make_config(sections=sources(
            ("ip-1", "192.0.2.10"), ("ip-2", "192.0.2.11"), ("ip-3", "192.0.2.12")) +
            '[pool "main"]\nsource = ip-1 weight=2\nsource = ip-2 weight=1\n'
            'source = ip-3 weight=0\n'))
        record = self.start_server(RecordServer, DEST4)
        self.assertEqual(self.run_requests(proxy, record.addr, 3000), [])
        record.wait_connections(3000, 20)
        self.assertEqual(dict(record.counts()), {"192.0.2.10": 2000, "192.0.2.11": 1000})

    def test_equal_weights_round_robin_exact(self):
        proxy = self.start_proxy(make_config(sections=sources(
            ("a", "192.0.2.10"), ("b", "192.0.2.11"), ("c", "192.0.2.12")) +
            '[pool "main"]\nsource = a, b; c\n'))
        record = self.start_server(RecordServer, DEST4)
        self.assertEqual(self.run_requests(proxy, record.addr, 30), [])
        record.wait_connections(30)
        seq = [ip for ip, _ in record.peers]
        # Plain round-robin: every window of 3 holds each source once.
        for i in range(0, 30, 3):
            self.assertEqual(sorted(seq[i:i + 3]),
                             ["192.0.2.10", "192.0.2.11", "192.0.2.12"], seq)

    def test_source_family_follows_destination(self):
        proxy = self.start_proxy(make_config(sections=sources(
            ("v4", "192.0.2.10"), ("v6a", "2001:db8::10"), ("v6b", "2001:db8::11")) +
            '[pool "main"]\nsource = v4, v6a, v6b\n'))
        rec4 = self.start_server(RecordServer, DEST4)
        rec6 = self.start_server(RecordServer, DEST6)
        self.assertEqual(self.run_requests(proxy, rec6.addr, 40), [])
        self.assertEqual(self.run_requests(proxy, rec4.addr, 20), [])
        rec6.wait_connections(40)
        rec4.wait_connections(20)
        self.assertEqual(dict(rec6.counts()), {"2001:db8::10": 20, "2001:db8::11": 20})
        self.assertEqual(dict(rec4.counts()), {"192.0.2.10": 20})

    def test_listener_pool_and_source_same(self):
        proxy = self.start_proxy(make_config(
            listen=["127.0.0.1:0", "127.0.0.2:0 pool=other", "0.0.0.0:0 source=same"],
            allow="127.0.0.0/8, 192.0.2.0/24",
            sections=sources(("ip-1", "192.0.2.10"), ("ip-2", "192.0.2.11"),
                             ("ip-3", "192.0.2.12")) +
            '[pool "main"]\nsource = ip-1\n\n[pool "other"]\nsource = ip-2\n'))
        record = self.start_server(RecordServer, DEST4)
        self.assertEqual(len(proxy.listeners), 3, proxy.listeners)
        plain, other, same = proxy.listeners
        self.assertEqual(same[0], "0.0.0.0")
        for listener, src in ((plain, "192.0.2.10"), (other, "192.0.2.11"),
                              ((("192.0.2.12", same[1])), "192.0.2.12"),
                              ((("192.0.2.10", same[1])), "192.0.2.10")):
            for _ in range(3):
                reply, peer = fetch_peer_line(listener, record.addr)
                self.assertEqual(peer[0], src, "via listener %r" % (listener,))

    def test_hash_by_destination_is_stable_and_consistent(self):
        proxy = self.start_proxy(make_config(sections=(
            "[defaults]\nsuspend_when_unplumbed.trigger = immediate\n"
            "suspend_when_unplumbed.duration = 10m\n\n" + sources(
                ("h1", "192.0.2.10"), ("h2", "192.0.2.11"), ("h3", "192.0.2.12"),
                ("h4", "192.0.2.13")) +
            '[pool "main"]\nstrategy = hash\nhash_key = destination\n'
            'source = h1, h2, h3, h4\n')))
        dests = [self.start_server(RecordServer, ip)
                 for ip in (DEST4, "192.0.2.201", "192.0.2.202", "192.0.2.203")]

        def mapping():
            out = {}
            for d in dests:
                start = len(d.peers)
                self.assertEqual(self.run_requests(proxy, d.addr, 5), [])
                d.wait_connections(start + 5)
                seen = d.counts(start)
                self.assertEqual(len(seen), 1, "destination %s spread over %r" % (d.host, seen))
                out[d.host] = next(iter(seen))
            return out
        before = mapping()
        self.assertEqual(mapping(), before, "hash pick must be stable")
        # Unplumb the source of the first destination: only its keys move.
        gone = before[DEST4]
        self.ns.remove(gone)
        after = mapping()
        self.assertNotEqual(after[DEST4], gone)
        for host, src in before.items():
            if src != gone:
                self.assertEqual(after[host], src, "key %s moved though its source stayed" % host)
        proxy.wait_log(suspended({"192.0.2.10": "h1", "192.0.2.11": "h2",
                                  "192.0.2.12": "h3", "192.0.2.13": "h4"}[gone]), 2)

    def hash_pool(self, key, **server):
        return self.start_proxy(make_config(sections=(
            sources(("h1", "192.0.2.10"), ("h2", "192.0.2.11"), ("h3", "192.0.2.12"),
                    ("h4", "192.0.2.13")) +
            '[pool "main"]\nstrategy = hash\nhash_key = %s\nsource = h1, h2, h3, h4\n' % key +
            "".join('[user "u%d"]\npassword = pw%d\npool = main\n\n' % (i, i)
                    for i in range(8) if server.get("auth") == "password")), **server))

    def sources_seen(self, proxy, dests, **kw):
        """The one source each destination saw for 3 requests with `kw`."""
        out = []
        for d in dests:
            start = len(d.peers)
            for _ in range(3):
                fetch_peer_line(proxy.addr, d.addr, **kw)
            d.wait_connections(start + 3)
            seen = d.counts(start)
            self.assertEqual(len(seen), 1, "one key spread over %r" % (seen,))
            out.append(next(iter(seen)))
        return out

    def test_hash_by_client_follows_the_client_not_the_destination(self):
        proxy = self.hash_pool("client", allow="127.0.0.0/8, 192.0.2.0/24")
        dests = [self.start_server(RecordServer, ip) for ip in (DEST4, "192.0.2.201")]
        picks = {}
        for client in ("127.0.0.1", "192.0.2.202", "192.0.2.203", "127.0.0.5", "127.0.0.6"):
            seen = self.sources_seen(proxy, dests, source=client)
            self.assertEqual(seen[0], seen[1], "client %s: source changed with the "
                             "destination (%r)" % (client, seen))
            picks[client] = seen[0]
        self.assertEqual([self.sources_seen(proxy, dests[:1], source=c)[0] for c in picks],
                         list(picks.values()), "hash by client must be stable")

    def test_hash_by_username_follows_the_user(self):
        proxy = self.hash_pool("username", auth="password")
        dests = [self.start_server(RecordServer, ip) for ip in (DEST4, "192.0.2.201")]
        picks = {}
        for i in range(8):
            seen = self.sources_seen(proxy, dests, user="u%d" % i, password="pw%d" % i)
            self.assertEqual(seen[0], seen[1], "user u%d: source changed with the "
                             "destination (%r)" % (i, seen))
            picks[i] = seen[0]
        # Eight users over four equal sources: a username key spreads them.
        self.assertGreater(len(set(picks.values())), 1, "every user got %r" % (picks,))

    def test_prefix_source_binds_addresses_of_a_locally_routed_prefix(self):
        run(["ip", "-n", self.ns.name, "-6", "route", "add", "local", "2001:db8:1::/64",
             "dev", "lo"])
        proxy = self.start_proxy(make_config(sections=(
            '[source "net"]\nprefix = 2001:db8:1::/64\nprefix_pick = random\n\n'
            '[source "unrouted"]\nprefix = 2001:db8:2::/64\n\n'
            '[pool "main"]\nsource = net, unrouted\n')))
        proxy.wait_log(log_matcher("WARN", ("not", "routed"), {"source": "unrouted"}), 2)
        proxy.wait_log(log_matcher("INFO", ("routed", "locally"), {"source": "net"}), 2)
        rec = self.start_server(RecordServer, DEST6)
        peers = set()
        for _ in range(6):
            _, peer = fetch_peer_line(proxy.addr, rec.addr)
            peers.add(peer[0])
        self.assertEqual(len(peers), 6, "random picks in a /64 should differ: %r" % peers)
        for p in peers:
            self.assertTrue(p.startswith("2001:db8:1:0:"), p)

    def test_ports_exhausted_on_one_source_uses_others_without_suspending(self):
        proxy = self.start_proxy(make_config(sections=(
            "[defaults]\nsuspend_when_unplumbed.trigger = immediate\n"
            "suspend_when_unplumbed.duration = 10m\n\n" +
            sources(("ip-1", "192.0.2.10"), ("ip-2", "192.0.2.11")) +
            '[pool "main"]\nsource = ip-1, ip-2\n')))
        record = self.start_server(RecordServer, DEST4)
        # Narrow the ephemeral range after the listeners are bound, then use up
        # every port from 192.0.2.10 to the destination the way sockpool binds
        # (IP_BIND_ADDRESS_NO_PORT, port chosen at connect).
        self.ns.sysctl("net.ipv4.ip_local_port_range", "40000 40019")
        holders = []
        self.addCleanup(lambda: [h.close() for h in holders])
        exhausted = False
        for _ in range(64):
            h = socket.socket()
            h.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            h.bind(("192.0.2.10", 0))
            try:
                h.connect(record.addr)
            except OSError:
                h.close()
                exhausted = True
                break
            holders.append(h)
        self.assertTrue(exhausted, "could not exhaust the ports of 192.0.2.10")
        record.wait_connections(len(holders))
        start = len(record.peers)

        self.assertEqual(self.run_requests(proxy, record.addr, 6), [])
        record.wait_connections(start + 6)
        self.assertEqual(dict(record.counts(start)), {"192.0.2.11": 6})
        self.assertEqual(proxy.count_log(suspended("ip-1")), 0,
                         "port exhaustion must never suspend")

        for h in holders:
            h.close()
        holders.clear()
        start = len(record.peers)
        self.assertEqual(self.run_requests(proxy, record.addr, 6), [])
        record.wait_connections(start + 6)
        counts = record.counts(start)
        self.assertEqual(counts["192.0.2.10"] + counts["192.0.2.11"], 6)
        self.assertGreaterEqual(counts["192.0.2.10"], 2, "ip-1 not used again: %r" % counts)
        self.assertEqual(proxy.count_log(suspended("ip-1")), 0)


if __name__ == "__main__":
    main()
