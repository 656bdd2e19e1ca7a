"""Bulk transfers through the proxy arrive byte-identical (sha256), each way,
and several streams at once keep their bytes apart (backpressure)."""

import hashlib
import socket
import threading

from harness import (EchoServer, ProxyCase, SinkServer, SourceServer, data_chunks, main,
                     read_until_close)

BIG = 100 * 1024 * 1024


class Transfer(ProxyCase):
    def setUp(self):
        self.proxy = self.start_proxy()

    def test_client_to_server_100mb_sha256(self):
        sink = self.start_server(SinkServer)
        s, _ = self.open(self.proxy.addr, *sink.addr, timeout=60)
        h = hashlib.sha256()
        for chunk in data_chunks(BIG):
            s.sendall(chunk)
            h.update(chunk)
        s.shutdown(socket.SHUT_WR)
        line, how = read_until_close(s, 60)
        self.assertEqual(how, "eof")
        self.assertEqual(line, b"%d %s\n" % (BIG, h.hexdigest().encode()),
                         "sink got different bytes")
        self.assertEqual(sink.wait_results(1), [(BIG, h.hexdigest())])

    def test_server_to_client_100mb_sha256(self):
        source = self.start_server(SourceServer, BIG)
        s, _ = self.open(self.proxy.addr, *source.addr, timeout=60)
        h = hashlib.sha256()
        n = 0
        while True:
            data = s.recv(1 << 18)
            if not data:
                break
            h.update(data)
            n += len(data)
        self.assertEqual(source.wait_results(1), [(BIG, h.hexdigest())],
                         "received %d bytes with a different digest" % n)

    def test_eight_concurrent_echo_streams_8mb_each(self):
        echo = self.start_server(EchoServer)
        size = 8 * 1024 * 1024
        results = {}
        errors = []

        def stream(i):
            try:
                s, _ = self.open(self.proxy.addr, *echo.addr, timeout=60)
                payload = bytes([i]) * 1000 + bytes(range(256)) * (size // 256 - 4)
                sender = threading.Thread(target=lambda: (s.sendall(payload),
                                                          s.shutdown(socket.SHUT_WR)),
                                          daemon=True)
                sender.start()
                got, how = read_until_close(s, 60, limit=len(payload) + 1)
                sender.join(60)
                results[i] = (how, len(got), got == payload)
            except Exception as e:
                errors.append("stream %d: %r" % (i, e))
        threads = [threading.Thread(target=stream, args=(i,), daemon=True) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        self.assertEqual(errors, [])
        expect_len = 1000 + 256 * (size // 256 - 4)
        self.assertEqual(results, {i: ("eof", expect_len, True) for i in range(8)})


if __name__ == "__main__":
    main()
