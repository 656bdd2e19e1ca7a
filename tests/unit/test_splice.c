/* Unit tests for the splice relay (proxy/splice.c): real loopback TCP pairs,
 * a libuv loop on the test thread relaying between the two inner ends, and
 * blocking peers on helper threads at the two outer ends:
 *
 *   a (client) <-> b ==splice== c <-> d (destination)
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "splice.h"

#define WATCHDOG_MS 10000

struct fixture {
	uv_loop_t loop;
	uv_timer_t watchdog;
	bool timed_out;
	struct splice_loop *sl;
	struct splice_relay r;
	int a, b, c, d;
	bool ended;
	int status;
	uint64_t moved[2];
};

static void tcp_pair(int *outer, int *inner)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof sa;
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(l >= 0);
	assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(l, 1), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &len), 0);
	*outer = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(*outer >= 0);
	assert_int_equal(connect(*outer, (struct sockaddr *)&sa, sizeof sa), 0);
	*inner = accept4(l, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	assert_true(*inner >= 0);
	close(l);
}

static void on_watchdog(uv_timer_t *t)
{
	struct fixture *f = t->data;

	f->timed_out = true;
	uv_stop(&f->loop);
}

static void on_end(struct splice_relay *r, int status)
{
	struct fixture *f = r->data;

	assert_false(f->ended); /* at most once */
	f->ended = true;
	f->status = status;
}

static void on_moved(struct splice_relay *r, int dir, size_t n)
{
	struct fixture *f = r->data;

	f->moved[dir] += n;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);

	assert_non_null(f);
	signal(SIGPIPE, SIG_IGN);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	assert_int_equal(uv_timer_init(&f->loop, &f->watchdog), 0);
	f->watchdog.data = f;
	uv_timer_start(&f->watchdog, on_watchdog, WATCHDOG_MS, 0);
	assert_int_equal(splice_loop_new(&f->loop, 0, &f->sl), 0);
	tcp_pair(&f->a, &f->b);
	tcp_pair(&f->d, &f->c);
	*state = f;
	return 0;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	splice_relay_stop(&f->r, false);
	close_fd(&f->a);
	close_fd(&f->b);
	close_fd(&f->c);
	close_fd(&f->d);
	assert_int_equal(splice_loop_pipes_in_use(f->sl), 0);
	splice_loop_close(f->sl);
	uv_close((uv_handle_t *)&f->watchdog, NULL);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	free(f);
	return 0;
}

static void start(struct fixture *f, bool dir0_eof)
{
	assert_int_equal(
	    splice_relay_start(f->sl, &f->r, f->b, f->c, dir0_eof, on_end, on_moved, f), 0);
}

/* Run the loop until `done(f)` holds; the watchdog fails the test. */
static void run_until(struct fixture *f, bool (*done)(struct fixture *))
{
	while (!done(f) && !f->timed_out)
		uv_run(&f->loop, UV_RUN_ONCE);
	assert_false(f->timed_out);
}

static bool is_ended(struct fixture *f)
{
	return f->ended;
}

/* ---- blocking peers on threads ---- */

struct peer_job {
	int fd;
	bool write; /* else read */
	size_t len; /* bytes to write, or the most to read */
	uint8_t seed;
	bool shut_after; /* write: shutdown(SHUT_WR) when done */
	/* read results */
	size_t got;
	bool pattern_ok;
	int err; /* errno of a failed read or write, 0 on EOF */
	pthread_t t;
};

static uint8_t pattern(uint8_t seed, size_t i)
{
	return (uint8_t)(seed + i * 31u + (i >> 13));
}

static void *peer_main(void *arg)
{
	struct peer_job *j = arg;
	static __thread uint8_t buf[65536];

	j->pattern_ok = true;
	if (j->write) {
		size_t off = 0;
		while (off < j->len) {
			size_t n = j->len - off < sizeof buf ? j->len - off : sizeof buf;
			for (size_t i = 0; i < n; i++)
				buf[i] = pattern(j->seed, off + i);
			ssize_t w = send(j->fd, buf, n, MSG_NOSIGNAL);
			if (w < 0) {
				j->err = errno;
				return NULL;
			}
			off += (size_t)w;
		}
		if (j->shut_after)
			shutdown(j->fd, SHUT_WR);
		return NULL;
	}
	for (;;) {
		ssize_t n = recv(j->fd, buf, sizeof buf, 0);
		if (n < 0) {
			j->err = errno;
			return NULL;
		}
		if (n == 0)
			return NULL;
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] != pattern(j->seed, j->got + (size_t)i))
				j->pattern_ok = false;
		j->got += (size_t)n;
		if (j->got > j->len)
			j->pattern_ok = false;
	}
}

static void peer_start(struct peer_job *j)
{
	assert_int_equal(pthread_create(&j->t, NULL, peer_main, j), 0);
}

static void peer_join(struct peer_job *j)
{
	assert_int_equal(pthread_join(j->t, NULL), 0);
}

/* ---- tests ---- */

/* 16 MiB each way at once, each followed by a half-close: every byte
 * arrives in order, the relay ends cleanly once both EOFs are passed on,
 * and no pipe is left in use. */
static void test_splice_relay_moves_bytes_both_ways(void **state)
{
	struct fixture *f = *state;
	const size_t n = 16u << 20;
	struct peer_job wa = {.fd = f->a, .write = true, .len = n, .seed = 1, .shut_after = true};
	struct peer_job wd = {.fd = f->d, .write = true, .len = n, .seed = 2, .shut_after = true};
	struct peer_job rd = {.fd = f->d, .len = n, .seed = 1};
	struct peer_job ra = {.fd = f->a, .len = n, .seed = 2};

	start(f, false);
	peer_start(&rd);
	peer_start(&ra);
	peer_start(&wa);
	peer_start(&wd);
	run_until(f, is_ended);
	peer_join(&wa);
	peer_join(&wd);
	peer_join(&rd);
	peer_join(&ra);
	assert_int_equal(f->status, 0);
	assert_int_equal(wa.err, 0);
	assert_int_equal(wd.err, 0);
	assert_int_equal(rd.err, 0);
	assert_int_equal(ra.err, 0);
	assert_int_equal(rd.got, n);
	assert_int_equal(ra.got, n);
	assert_true(rd.pattern_ok);
	assert_true(ra.pattern_ok);
	assert_int_equal(f->r.dir[0].bytes, n);
	assert_int_equal(f->r.dir[1].bytes, n);
	assert_int_equal(f->moved[0], n);
	assert_int_equal(f->moved[1], n);
	assert_int_equal(splice_loop_pipes_in_use(f->sl), 0);
	assert_true(splice_loop_pipes_pooled(f->sl) >= 1);
}

static bool dir0_shut(struct fixture *f)
{
	return f->r.dir[0].shut;
}

static bool read_ready(int fd, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	return poll(&p, 1, timeout_ms) == 1;
}

/* EOF from the client keeps the other direction open: the destination
 * reads the EOF, then answers, and the client still gets the answer. */
static void test_splice_relay_half_close(void **state)
{
	struct fixture *f = *state;
	char buf[16];

	start(f, false);
	assert_int_equal(send(f->a, "req", 3, 0), 3);
	assert_int_equal(shutdown(f->a, SHUT_WR), 0);
	run_until(f, dir0_shut);
	assert_int_equal(recv(f->d, buf, sizeof buf, 0), 3);
	assert_memory_equal(buf, "req", 3);
	assert_int_equal(recv(f->d, buf, sizeof buf, 0), 0); /* EOF passed on */
	assert_false(f->ended);
	assert_int_equal(send(f->d, "answer", 6, 0), 6);
	while (!read_ready(f->a, 0) && !f->timed_out)
		uv_run(&f->loop, UV_RUN_ONCE);
	assert_int_equal(recv(f->a, buf, sizeof buf, 0), 6);
	assert_memory_equal(buf, "answer", 6);
	assert_int_equal(shutdown(f->d, SHUT_WR), 0);
	run_until(f, is_ended);
	assert_int_equal(f->status, 0);
	assert_int_equal(recv(f->a, buf, sizeof buf, 0), 0);
}

/* A client that half-closed right behind its request (dir0_eof): the EOF
 * goes on at start, the reverse direction still works. */
static void test_splice_relay_starts_with_eof(void **state)
{
	struct fixture *f = *state;
	char buf[8];

	start(f, true);
	assert_true(f->r.dir[0].shut);
	assert_int_equal(recv(f->d, buf, sizeof buf, 0), 0);
	assert_int_equal(send(f->d, "hi", 2, 0), 2);
	assert_int_equal(shutdown(f->d, SHUT_WR), 0);
	run_until(f, is_ended);
	assert_int_equal(f->status, 0);
	assert_int_equal(recv(f->a, buf, sizeof buf, 0), 2);
	assert_int_equal(recv(f->a, buf, sizeof buf, 0), 0);
}

static void reset_close(int *fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	assert_int_equal(setsockopt(*fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
	close_fd(fd);
}

/* A reset from the destination, right behind data, ends the relay with an
 * error (not as a clean EOF), so the owner passes a reset on. */
static void test_splice_relay_reset_after_data(void **state)
{
	struct fixture *f = *state;

	start(f, false);
	assert_int_equal(send(f->d, "data", 4, 0), 4);
	reset_close(&f->d);
	run_until(f, is_ended);
	assert_true(f->status < 0);
	assert_int_not_equal(f->status, SPLICE_UNSUPPORTED);
	assert_int_equal(splice_loop_pipes_in_use(f->sl), 0);
}

/* A reset from the client while idle ends the relay with ECONNRESET. */
static void test_splice_relay_reset_idle(void **state)
{
	struct fixture *f = *state;

	start(f, false);
	reset_close(&f->a);
	run_until(f, is_ended);
	assert_int_equal(f->status, -ECONNRESET);
}

static void on_settle_tick(uv_timer_t *t)
{
	(void)t;
}

/* Run the loop until the relay has read nothing from the client for 100 ms
 * (the watchdog bounds it). */
static void settle(struct fixture *f)
{
	uv_timer_t tick;
	uint64_t before;

	assert_int_equal(uv_timer_init(&f->loop, &tick), 0);
	do {
		before = f->r.dir[0].bytes;
		uv_timer_start(&tick, on_settle_tick, 100, 0);
		while (uv_is_active((uv_handle_t *)&tick) && !f->timed_out)
			uv_run(&f->loop, UV_RUN_ONCE);
	} while (f->r.dir[0].bytes != before && !f->timed_out);
	uv_close((uv_handle_t *)&tick, NULL);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_false(f->timed_out);
}

/* A destination that does not read: the relay holds at most one pipe of
 * bytes, stops reading the client (whose writes then block), and delivers
 * everything once the destination reads again. */
static void test_splice_relay_backpressure(void **state)
{
	struct fixture *f = *state;
	const size_t n = 64u << 20;
	struct peer_job wa = {.fd = f->a, .write = true, .len = n, .seed = 3, .shut_after = true};
	struct peer_job rd = {.fd = f->d, .len = n, .seed = 3};
	uint64_t bytes;

	start(f, false);
	peer_start(&wa);
	settle(f);
	bytes = f->r.dir[0].bytes;
	assert_true(bytes < n);
	assert_true(bytes > 0);
	assert_false(f->r.sock[1].writable);
	assert_true(splice_relay_pending(&f->r, 0) <= SPLICE_PIPE_SIZE);
	assert_int_equal(splice_loop_pipes_in_use(f->sl), 1);
	peer_start(&rd);
	run_until(f, dir0_shut);
	peer_join(&wa);
	peer_join(&rd);
	assert_int_equal(wa.err, 0);
	assert_int_equal(rd.got, n);
	assert_true(rd.pattern_ok);
	assert_false(f->ended); /* the other direction is still open */
}

static bool one_byte_each_way(struct fixture *f)
{
	return f->r.dir[0].written == 1 && f->r.dir[1].written == 1;
}

/* An idle relayed connection holds no pipe: after a ping each way both
 * pipes are back in the pool. */
static void test_splice_relay_idle_holds_no_pipe(void **state)
{
	struct fixture *f = *state;
	char c;

	start(f, false);
	assert_int_equal(send(f->a, "p", 1, 0), 1);
	assert_int_equal(send(f->d, "q", 1, 0), 1);
	run_until(f, one_byte_each_way);
	assert_int_equal(recv(f->d, &c, 1, 0), 1);
	assert_int_equal(c, 'p');
	assert_int_equal(recv(f->a, &c, 1, 0), 1);
	assert_int_equal(c, 'q');
	assert_null(f->r.dir[0].pipe);
	assert_null(f->r.dir[1].pipe);
	assert_int_equal(splice_loop_pipes_in_use(f->sl), 0);
	assert_true(splice_loop_pipes_pooled(f->sl) >= 1);
	assert_false(f->ended);
}

/* An fd that splice(2) cannot read (an eventfd here) ends the relay with
 * SPLICE_UNSUPPORTED before any byte moved, so the owner can copy. */
static void test_splice_relay_unsupported_fd(void **state)
{
	struct fixture *f = *state;
	int efd = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);

	assert_true(efd >= 0);
	assert_int_equal(splice_relay_start(f->sl, &f->r, efd, f->c, false, on_end, on_moved, f),
			 0);
	run_until(f, is_ended);
	assert_int_equal(f->status, SPLICE_UNSUPPORTED);
	assert_int_equal(f->moved[0] + f->moved[1], 0);
	close(efd);
}

/* Stopped with keep_fds, the relay leaves the sockets alone: bytes sent
 * afterwards stay where they are for the owner to read. */
static void test_splice_relay_stop_keeps_fds(void **state)
{
	struct fixture *f = *state;
	char c;

	start(f, false);
	splice_relay_stop(&f->r, true);
	assert_int_equal(send(f->a, "x", 1, 0), 1);
	assert_true(read_ready(f->b, 1000));
	for (int i = 0; i < 5; i++)
		uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(recv(f->b, &c, 1, 0), 1);
	assert_int_equal(c, 'x');
	assert_false(f->ended);
	assert_int_equal(f->r.dir[0].bytes, 0);
}

static struct splice_relay r2;
static bool r2_ended;
static int r2_status;

static void on_end2(struct splice_relay *r, int status)
{
	(void)r;
	r2_ended = true;
	r2_status = status;
}

/* The lowest free fd number: every number below it is open. */
static int lowest_free_fd(void)
{
	int fd = dup(0);

	assert_true(fd >= 0);
	close(fd);
	return fd;
}

/* With no fd left for a new pipe, a busy relay waits for the reserve pipe
 * that another one holds, instead of failing, and goes on once it is given
 * back; every byte arrives. */
static void test_splice_relay_waits_for_a_pipe_at_the_fd_limit(void **state)
{
	struct fixture *f = *state;
	const size_t n = 4u << 20;
	int a2, b2, c2, d2;
	struct rlimit old, lim;

	tcp_pair(&a2, &b2);
	tcp_pair(&d2, &c2);
	r2_ended = false;
	struct peer_job wa = {.fd = f->a, .write = true, .len = n, .seed = 5, .shut_after = true};
	struct peer_job rd = {.fd = f->d, .len = n, .seed = 5};
	struct peer_job wa2 = {.fd = a2, .write = true, .len = n, .seed = 7, .shut_after = true};
	struct peer_job rd2 = {.fd = d2, .len = n, .seed = 7};

	start(f, false);
	assert_int_equal(splice_relay_start(f->sl, &r2, b2, c2, false, on_end2, NULL, NULL), 0);
	/* Only the reserve pipe (made by splice_loop_new) is there. */
	assert_int_equal(splice_loop_pipes_pooled(f->sl), 1);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	lim = old;
	lim.rlim_cur = (rlim_t)lowest_free_fd();
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &lim), 0);
	assert_int_equal(dup(0), -1); /* the limit holds */
	/* Relay 1 fills the reserve pipe toward a destination that does not
	 * read yet; relay 2 then has bytes to move and no pipe. */
	peer_start(&wa);
	settle(f);
	assert_int_equal(splice_loop_pipes_in_use(f->sl), 1);
	peer_start(&rd2);
	peer_start(&wa2);
	while (!r2.waiting && !f->timed_out)
		uv_run(&f->loop, UV_RUN_ONCE);
	assert_true(r2.waiting);
	assert_int_equal(r2.dir[0].bytes, 0);
	assert_false(r2_ended);
	/* Relay 1's destination reads: its pipe drains, comes back, relay 2
	 * takes it. */
	peer_start(&rd);
	while (!(f->r.dir[0].shut && r2.dir[0].shut) && !f->timed_out)
		uv_run(&f->loop, UV_RUN_ONCE);
	assert_false(f->timed_out);
	peer_join(&wa);
	peer_join(&rd);
	peer_join(&wa2);
	peer_join(&rd2);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	assert_false(f->ended); /* the reverse directions are still open */
	assert_false(r2_ended);
	assert_int_equal(wa.err, 0);
	assert_int_equal(wa2.err, 0);
	assert_int_equal(rd.got, n);
	assert_int_equal(rd2.got, n);
	assert_true(rd.pattern_ok);
	assert_true(rd2.pattern_ok);
	assert_int_equal(splice_loop_pipes_in_use(f->sl), 0);
	assert_int_equal(splice_loop_pipes_pooled(f->sl), 1);
	splice_relay_stop(&r2, false);
	close(a2);
	close(b2);
	close(c2);
	close(d2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_splice_relay_moves_bytes_both_ways, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_splice_relay_half_close, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_splice_relay_starts_with_eof, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_splice_relay_reset_after_data, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_splice_relay_reset_idle, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_splice_relay_backpressure, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_splice_relay_idle_holds_no_pipe, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_splice_relay_unsupported_fd, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_splice_relay_stop_keeps_fds, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_splice_relay_waits_for_a_pipe_at_the_fd_limit,
					    setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
