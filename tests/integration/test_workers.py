"""Several event loops (`workers = N`): both threads carry load, one shared
pool state (one WARN per suspension, caps and per-client limits across
workers), /metrics sums every worker, reloads under load lose nothing,
SIGTERM drains every worker, and `workers = auto` follows the CPUs the
process may run on. These tests set `workers` themselves."""

import os
import signal
import threading
import time

from harness import (CMD_CONNECT, EchoServer, NetnsCase, RecordServer, accepts_new_connection,
                     connect_to, log_matcher, main, make_config, quick_connect,
                     read_until_close, request, socks_open, suspended, wait_until)
from test_admin import Admin, sample

DEST4 = "192.0.2.200"

LOOPBACK = """\
[source "lo4"]
address = 127.0.0.1

[pool "main"]
source = lo4
"""


def source(name, address, duration="10m"):
    return ('[source "%s"]\naddress = %s\nsuspend_when_unplumbed.duration = %s\n\n' %
            (name, address, duration))


def threads_of(pid):
    """Thread names of a process: sockpool's workers are `sockpool-wN`."""
    names = []
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                names.append(f.read().strip())
        except OSError:
            pass
    return sorted(names)


def in_parallel(n_threads, per_thread, fn):
    """Run fn(i) per_thread times in each of n_threads threads; the
    results, in no particular order (an exception counts as its repr)."""
    results = []
    lock = threading.Lock()

    def run(t):
        for i in range(per_thread):
            try:
                r = fn(t * per_thread + i)
            except Exception as e:  # reported by the caller's assertions
                r = repr(e)
            with lock:
                results.append(r)
    threads = [threading.Thread(target=run, args=(t,), daemon=True) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


class Workers(Admin):
    def test_both_threads_carry_load_and_metrics_sum_them(self):
        proxy = self.start(sections=LOOPBACK, workers="2")
        self.assertEqual([n for n in threads_of(proxy.proc.pid) if n.startswith("sockpool-w")],
                         ["sockpool-w0", "sockpool-w1"])
        echo = self.start_server(EchoServer)
        before = self.metrics()
        self.assertEqual(sample(before, "sockpool_workers"), 2)

        # Each connection from its own client port: SO_REUSEPORT spreads
        # them over both workers' sockets by a hash of the 4-tuple.
        def one(i):
            s, _ = socks_open(proxy.addr, *echo.addr)
            try:
                payload = b"%d\n" % i
                s.sendall(payload)
                got = b""
                while len(got) < len(payload):
                    data = s.recv(64)
                    if not data:
                        break
                    got += data
                return got == payload
            finally:
                s.close()
        n = 200
        results = in_parallel(8, n // 8, one)
        self.assertEqual(results, [True] * n)
        echo.wait_results(n)

        def settled():
            fam = self.metrics()
            ok = sample(fam, "sockpool_connections_total", result="ok")
            return fam if ok == n and sample(fam, "sockpool_connections_active") == 0 else None
        fam = wait_until(settled, 10, 0.05, "every connection counted as ok")
        per_worker = [sample(fam, "sockpool_worker_connections_total", worker=w) for w in (0, 1)]
        self.assertEqual(sum(per_worker), n, per_worker)
        # 200 connections all on one of two sockets: a 2^-199 chance.
        self.assertGreater(min(per_worker), 0, per_worker)
        self.assertEqual(sample(fam, "sockpool_connect_duration_seconds_count"), n)
        self.assertEqual(sample(fam, "sockpool_handshake_duration_seconds_count"), n)
        self.assertEqual(sample(fam, "sockpool_source_selected_total", source="lo4"), n)
        self.assertEqual(sample(fam, "sockpool_source_active_connections", source="lo4"), 0)
        # Each relayed "%d\n" went up once and came back once.
        sent = sum(len(b"%d\n" % i) for i in range(n))
        self.assertEqual(sample(fam, "sockpool_bytes_total", direction="up"), sent)
        self.assertEqual(sample(fam, "sockpool_bytes_total", direction="down"), sent)
        # The request path took the shared pool lock (pick, report, release).
        self.assertGreaterEqual(sample(fam, "sockpool_pool_lock_acquisitions_total"), 3 * n)

    def test_max_connections_per_source_counts_across_workers(self):
        proxy = self.start(sections=('[source "lo4"]\naddress = 127.0.0.1\n'
                                     'max_connections = 3\n\n[pool "main"]\nsource = lo4\n'),
                           workers="2")
        echo = self.start_server(EchoServer)
        held = []
        # Opened one by one until the cap answers, from fresh client ports,
        # so that both workers get some of them.
        for _ in range(3):
            held.append(self.open(proxy.addr, *echo.addr)[0])
        wait_until(lambda: sample(self.metrics(), "sockpool_source_active_connections",
                                  source="lo4") == 3, 5, 0.05, "3 active on lo4")
        refused = [quick_connect(proxy.addr, request(CMD_CONNECT, *echo.addr)).rep
                   for _ in range(20)]
        self.assertEqual(refused, [1] * 20, "a 4th connection got through the cap")
        fam = self.metrics()
        self.assertGreater(min(sample(fam, "sockpool_worker_connections_total", worker=w)
                               for w in (0, 1)), 0, "the test needs both workers")
        held.pop().close()
        wait_until(lambda: quick_connect(proxy.addr,
                                         request(CMD_CONNECT, *echo.addr)).rep == 0,
                   5, 0.05, "a slot again after one closed")

    def test_max_connections_per_client_counts_across_workers(self):
        proxy = self.start(sections=LOOPBACK, workers="2", max_connections_per_client="4")
        echo = self.start_server(EchoServer)
        held = [self.open(proxy.addr, *echo.addr)[0] for _ in range(4)]
        fam = self.metrics()
        mark = proxy.mark()
        for _ in range(10):
            try:
                s = connect_to(proxy.addr)
            except ConnectionResetError:
                continue  # refused so fast that connect() saw the reset
            try:
                data, how = read_until_close(s, 5)
            finally:
                s.close()
            self.assertIn(how, ("eof", "reset"), "the 5th connection of one client was served")
        proxy.wait_log(log_matcher("WARN", ("max_connections_per_client",)), 5, mark)
        fam = self.metrics()
        self.assertGreater(min(sample(fam, "sockpool_worker_connections_total", worker=w)
                               for w in (0, 1)), 0, "the test needs both workers")
        for s in held:
            self.assertEcho(s)

    def test_sighup_every_second_under_load_loses_no_connection(self):
        proxy = self.start(sections=LOOPBACK, workers="2")
        echo = self.start_server(EchoServer)
        # Long-lived relays that live through every reload.
        live = [self.open(proxy.addr, *echo.addr)[0] for _ in range(6)]
        stop = threading.Event()
        done = []
        failures = []
        lock = threading.Lock()

        def load():
            req = request(CMD_CONNECT, *echo.addr)
            while not stop.is_set():
                try:
                    rep = quick_connect(proxy.addr, req).rep
                except Exception as e:  # any client-visible failure
                    rep = repr(e)
                with lock:
                    (done if rep == 0 else failures).append(rep)
        threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            for i in range(5):
                mark = proxy.mark()
                with lock:
                    start = len(done)
                t0 = time.monotonic()
                proxy.send_signal(signal.SIGHUP)
                proxy.wait_log(log_matcher("INFO", ("reloaded",)), 10, mark)
                # Load keeps flowing between reloads, about one second each.
                wait_until(lambda: len(done) >= start + 20 and time.monotonic() - t0 >= 1.0,
                           20, 0.02, "requests after reload %d" % (i + 1))
                for s in live:
                    self.assertEcho(s, b"reload %d\n" % i)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        self.assertEqual(failures, [])
        self.assertGreaterEqual(len(done), 100)
        self.assertEqual(proxy.count_log(log_matcher("INFO", ("reloaded",))), 5)
        fam = self.metrics()
        self.assertEqual(sample(fam, "sockpool_connections_total", result="error"), 0)
        self.assertGreater(min(sample(fam, "sockpool_worker_connections_total", worker=w)
                               for w in (0, 1)), 0)

    def test_sigterm_drains_every_worker_then_exits_0(self):
        proxy = self.start(sections=LOOPBACK, workers="2", shutdown_timeout="30s")
        echo = self.start_server(EchoServer)
        live = []
        # Live relays on both workers.
        deadline = time.monotonic() + 10
        while True:
            live.append(self.open(proxy.addr, *echo.addr)[0])
            fam = self.metrics()
            if min(sample(fam, "sockpool_worker_connections_active", worker=w)
                   for w in (0, 1)) > 0:
                break
            self.assertLess(time.monotonic(), deadline, "no live relay on both workers")
        proxy.send_signal(signal.SIGTERM)
        proxy.wait_log(log_matcher("INFO", ("stopping",)), 5)
        wait_until(lambda: not accepts_new_connection(proxy.addr, echo.addr), 5, 0.05,
                   "new connections refused after SIGTERM")
        self.assertIsNone(proxy.proc.poll(), "exited with relays live")
        for i, s in enumerate(live):
            self.assertEcho(s, b"draining %d\n" % i)
        self.assertIsNone(proxy.proc.poll(), "exited with relays live")
        for s in live:
            s.close()
        self.assertEqual(proxy.wait_exit(10), 0)
        proxy.wait_log(log_matcher("INFO", ("stopped",), regex=r"^INFO main: stopped"), 5)
        proxy.stop()

    def test_sigterm_shutdown_timeout_closes_relays_in_every_worker(self):
        proxy = self.start(sections=LOOPBACK, workers="2", shutdown_timeout="1s")
        echo = self.start_server(EchoServer)
        live = [self.open(proxy.addr, *echo.addr)[0] for _ in range(12)]
        fam = self.metrics()
        self.assertGreater(min(sample(fam, "sockpool_worker_connections_active", worker=w)
                               for w in (0, 1)), 0)
        t0 = time.monotonic()
        proxy.send_signal(signal.SIGTERM)
        self.assertEqual(proxy.wait_exit(8), 0)
        self.assertGreater(time.monotonic() - t0, 0.5)
        for s in live:
            self.assertIn(read_until_close(s, 3)[1], ("eof", "reset"))
        proxy.stop()

    def test_workers_1_runs_no_thread(self):
        proxy = self.start(sections=LOOPBACK, workers="1")
        self.assertEqual(threads_of(proxy.proc.pid), ["sockpool"])
        fam = self.metrics()
        self.assertEqual(sample(fam, "sockpool_workers"), 1)
        self.assertEqual(sample(fam, "sockpool_pool_lock_acquisitions_total"), 0)
        self.assertFalse(any("one event loop" in l for l in proxy.log()), proxy.tail())

    def test_auto_is_the_cpus_the_process_may_run_on(self):
        proxy = self.start(sections=LOOPBACK, workers="auto")
        self.assertEqual(sample(self.metrics(), "sockpool_workers"),
                         min(len(os.sched_getaffinity(0)), 64))
        proxy.stop()
        # Pinned to one CPU (as taskset or a cpuset would): one worker. The
        # child inherits the affinity of the thread that starts it.
        cpu = min(os.sched_getaffinity(0))
        old = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {cpu})
        try:
            proxy = self.start(sections=LOOPBACK, workers="auto")
        finally:
            os.sched_setaffinity(0, old)
        self.assertEqual(sample(self.metrics(), "sockpool_workers"), 1)
        self.assertEqual([n for n in threads_of(proxy.proc.pid) if n.startswith("sockpool-")],
                         [])


class SharedPoolState(NetnsCase):
    ADDRS = ("192.0.2.10", "192.0.2.11", DEST4)

    def test_unplumbed_source_suspended_once_and_no_client_sees_it(self):
        proxy = self.start_proxy(make_config(workers="2", sections=(
            source("ip-1", "192.0.2.10") + source("ip-2", "192.0.2.11") +
            '[pool "main"]\nsource = ip-1, ip-2\n')))
        record = self.start_server(RecordServer, DEST4)
        self.ns.remove("192.0.2.11")
        req = request(CMD_CONNECT, *record.addr)

        # Many clients at once, on both workers: each worker races to
        # blame ip-2 first. Every request is retried on ip-1 before any
        # byte is relayed, and the pool goes offline once.
        results = in_parallel(8, 25, lambda i: quick_connect(proxy.addr, req).rep)
        self.assertEqual(results, [0] * 200, "client-visible failures")
        record.wait_connections(200)
        self.assertEqual(record.counts()["192.0.2.11"], 0)
        proxy.wait_log(suspended("ip-2"), 5)
        self.assertEqual(proxy.count_log(suspended("ip-2")), 1, proxy.tail())
        self.assertEqual(proxy.count_log(suspended("ip-1")), 0)
        self.assertEqual(proxy.count_log(log_matcher("WARN", ("exhausted",))), 0)

    def test_suspension_holds_in_every_worker_and_across_a_reload(self):
        proxy = self.start_proxy(make_config(workers="2", sections=(
            source("ip-1", "192.0.2.10") + source("ip-2", "192.0.2.11") +
            '[pool "main"]\nsource = ip-1, ip-2\n')))
        record = self.start_server(RecordServer, DEST4)
        self.ns.remove("192.0.2.11")
        req = request(CMD_CONNECT, *record.addr)
        self.assertEqual(in_parallel(4, 10, lambda i: quick_connect(proxy.addr, req).rep),
                         [0] * 40)
        proxy.wait_log(suspended("ip-2"), 5)
        # Back on the host; its 10 minutes still run, so nobody picks it.
        self.ns.add("192.0.2.11")
        start = len(record.peers)
        self.assertEqual(in_parallel(4, 10, lambda i: quick_connect(proxy.addr, req).rep),
                         [0] * 40)
        record.wait_connections(start + 40)
        self.assertEqual(record.counts(start)["192.0.2.11"], 0)
        # A reload keeps the suspension (same name and address) in every worker.
        mark = proxy.mark()
        proxy.send_signal(signal.SIGHUP)
        proxy.wait_log(log_matcher("INFO", ("reloaded",)), 5, mark)
        start = len(record.peers)
        self.assertEqual(in_parallel(4, 10, lambda i: quick_connect(proxy.addr, req).rep),
                         [0] * 40)
        record.wait_connections(start + 40)
        self.assertEqual(record.counts(start)["192.0.2.11"], 0)
        self.assertEqual(proxy.count_log(suspended("ip-2")), 1)


if __name__ == "__main__":
    main()
