"""RFC 1929 username/password: plain and crypt(3) passwords, rejection, users
bound to their pool, and BIND limited to the user's own pool."""

import shutil
import subprocess

from harness import (CMD_BIND, CMD_CONNECT, HTTPServer, NetnsCase, RecordServer, SocksError,
                     connect_to, crypt_hash, fetch_peer_line, greeting, http_body, main,
                     make_config, read_until_close, recv_exact, request, socks_open, userpass)

DEST4 = "192.0.2.200"

SECTIONS = """\
[source "ip-1"]
address = 192.0.2.10

[source "ip-2"]
address = 192.0.2.11

[pool "pa"]
source = ip-1

[pool "pb"]
source = ip-2

[user "alice"]
password = alice-pw
pool = pa

[user "bob"]
password_hash = %s
pool = pb

[user "carol"]
password = carol-pw
"""


class Auth(NetnsCase):
    ADDRS = ("192.0.2.10", "192.0.2.11", DEST4)

    def setUp(self):
        super().setUp()
        self.proxy = self.start_proxy(make_config(
            auth="password", default_pool="pb", sections=SECTIONS % crypt_hash("bob-pw")))
        self.record = self.start_server(RecordServer, DEST4)

    def assert_rejected(self, user, password):
        s = connect_to(self.proxy.addr)
        self.addCleanup(s.close)
        s.sendall(greeting((2,)))
        self.assertEqual(recv_exact(s, 2), b"\x05\x02")
        s.sendall(userpass(user, password) + request(CMD_CONNECT, *self.record.addr))
        status = recv_exact(s, 2)
        self.assertEqual(status[0], 1, "RFC 1929 status version")
        self.assertNotEqual(status[1], 0, "%s/%s accepted" % (user, password))
        data, how = read_until_close(s, 5)
        self.assertEqual(data, b"")
        self.assertIn(how, ("eof", "reset"), "not closed after a failed login")

    def test_wrong_password_rejected(self):
        self.assert_rejected("alice", "wrong")
        self.assert_rejected("bob", "alice-pw")
        self.assert_rejected("bob", "")
        self.assert_rejected("mallory", "alice-pw")
        self.assertEqual(self.record.connections, 0)

    def test_no_auth_method_refused(self):
        s = connect_to(self.proxy.addr)
        self.addCleanup(s.close)
        s.sendall(greeting((0,)))
        self.assertEqual(recv_exact(s, 2), b"\x05\xff")
        data, how = read_until_close(s, 5)
        self.assertIn(how, ("eof", "reset"))

    def test_users_egress_from_their_pool(self):
        for user, pw, src in (("alice", "alice-pw", "192.0.2.10"),
                              ("bob", "bob-pw", "192.0.2.11"),
                              ("carol", "carol-pw", "192.0.2.11")):  # default_pool
            for pipelined in (True, False):
                with self.subTest(user=user, pipelined=pipelined):
                    for _ in range(3):
                        reply, peer = fetch_peer_line(self.proxy.addr, self.record.addr,
                                                      user=user, password=pw,
                                                      pipelined=pipelined)
                        self.assertEqual(peer[0], src)

    def test_bind_to_own_pool_only(self):
        s, reply = socks_open(self.proxy.addr, *self.record.addr, user="alice",
                              password="alice-pw", bind=("192.0.2.10", 0))
        s.close()
        self.assertEqual(reply.host, "192.0.2.10")
        for pipelined in (True, False):
            with self.assertRaises(SocksError) as cm:
                socks_open(self.proxy.addr, *self.record.addr, user="alice",
                           password="alice-pw", bind=("192.0.2.11", 0), pipelined=pipelined)
            self.assertEqual(cm.exception.reply.raw[:4], b"\x05\x02\x00\x01",
                             "alice may not BIND bob's source")

    def test_bind_command_before_auth_is_not_possible(self):
        s = connect_to(self.proxy.addr)
        self.addCleanup(s.close)
        s.sendall(greeting((2,)) + request(CMD_BIND, "192.0.2.10", 0))
        self.assertEqual(recv_exact(s, 2), b"\x05\x02")
        data, how = read_until_close(s, 5)
        self.assertTrue(data == b"" or data[:1] == b"\x01" and data[1:2] != b"\x00",
                        "a request in place of credentials got %r" % data)
        self.assertIn(how, ("eof", "reset"))

    def test_curl_with_credentials(self):
        self.assertIsNotNone(shutil.which("curl"), "curl is not installed")
        http = HTTPServer(DEST4)
        self.addCleanup(http.close)
        url = "http://%s:%d/data/12345" % http.addr
        proxy = "socks5://alice:alice-pw@%s:%d" % self.proxy.addr
        p = subprocess.run(["curl", "-sS", "--fail", "--max-time", "20", "--proxy", proxy, url],
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, http_body(12345))
        bad = "socks5://alice:nope@%s:%d" % self.proxy.addr
        p = subprocess.run(["curl", "-sS", "--max-time", "20", "--proxy", bad, url],
                           capture_output=True, timeout=30)
        self.assertNotEqual(p.returncode, 0, "curl with a wrong password succeeded")


if __name__ == "__main__":
    main()
