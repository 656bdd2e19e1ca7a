/* Unit tests for the upstream SOCKS5 client (proxy/upstream.c): a real libuv
 * loop on loopback against a scripted fake proxy in a thread, and against
 * microsocks run as a subprocess. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "socks5.h"
#include "upstream.h"

#define WATCHDOG_MS 5000

/* ---- the fake proxy: one connection, one script, in a thread ---- */

enum step_kind {
	RECV,	   /* read exactly len bytes (they must equal data: see assert_got) */
	SEND,	   /* one write */
	SEND_SLOW, /* one byte per write, 2 ms apart: each its own segment */
	QUIET,	   /* for 100 ms the client must send nothing (EOF is fine) */
	WAIT_EOF,  /* read (and record) until the client closes or resets */
	PAUSE,	   /* sleep 100 ms */
};

struct step {
	enum step_kind kind;
	const void *data;
	size_t len;
};

#define STEP(k, arr)                                                                               \
	{                                                                                          \
		k, arr, sizeof(arr)                                                                \
	}

struct fake {
	int lfd;
	uint16_t port;
	const struct step *steps;
	size_t nsteps;
	pthread_t thread;
	/* Written by the thread, read after pthread_join. No cmocka asserts in
	 * the thread: they longjmp. */
	size_t steps_done;
	uint8_t got[8192];
	size_t got_len;
	bool spoke_early; /* a QUIET step saw data */
};

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static bool write_all(int fd, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

static bool run_step(struct fake *f, int fd, const struct step *s)
{
	const uint8_t *d = s->data;
	size_t want = f->got_len + s->len;
	struct pollfd pfd = {fd, POLLIN, 0};
	uint8_t peek;

	switch (s->kind) {
	case RECV:
		if (want > sizeof(f->got))
			return false;
		while (f->got_len < want) {
			ssize_t n = recv(fd, f->got + f->got_len, want - f->got_len, 0);

			if (n <= 0)
				return false;
			f->got_len += (size_t)n;
		}
		return true;
	case SEND:
		return write_all(fd, d, s->len);
	case SEND_SLOW:
		for (size_t i = 0; i < s->len; i++) {
			if (!write_all(fd, d + i, 1))
				return false;
			sleep_ms(2);
		}
		return true;
	case QUIET:
		if (poll(&pfd, 1, 100) == 1 && recv(fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT) > 0)
			f->spoke_early = true;
		return true;
	case PAUSE:
		sleep_ms(100);
		return true;
	case WAIT_EOF:
		for (;;) {
			ssize_t n = recv(fd, f->got + f->got_len, sizeof(f->got) - f->got_len, 0);

			/* A reset is an end too: the client closed with data unread. */
			if (n <= 0)
				return n == 0 || errno == ECONNRESET;
			f->got_len += (size_t)n;
		}
	}
	return false;
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	struct pollfd pfd = {f->lfd, POLLIN, 0};
	struct timeval tv = {WATCHDOG_MS / 1000, 0};
	int one = 1;
	int fd;

	if (poll(&pfd, 1, WATCHDOG_MS) != 1)
		return NULL;
	fd = accept(f->lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (f->steps_done < f->nsteps && run_step(f, fd, &f->steps[f->steps_done]))
		f->steps_done++;
	close(fd);
	return NULL;
}

static int listen_loopback(uint16_t *port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 8), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

static void fake_start(struct fake *f, const struct step *steps, size_t nsteps)
{
	memset(f, 0, sizeof(*f));
	f->steps = steps;
	f->nsteps = nsteps;
	f->lfd = listen_loopback(&f->port);
	assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_join(struct fake *f)
{
	assert_int_equal(pthread_join(f->thread, NULL), 0);
	close(f->lfd);
}

/* The server ran its whole script and read exactly the RECV steps' bytes. */
static void assert_got(const struct fake *f)
{
	size_t off = 0;

	assert_int_equal(f->steps_done, f->nsteps);
	for (size_t i = 0; i < f->nsteps; i++) {
		if (f->steps[i].kind != RECV)
			continue;
		assert_true(off + f->steps[i].len <= f->got_len);
		assert_memory_equal(f->got + off, f->steps[i].data, f->steps[i].len);
		off += f->steps[i].len;
	}
	assert_int_equal(off, f->got_len);
	assert_false(f->spoke_early);
}

/* ---- the client: a libuv loop playing the session's part ---- */

enum cancel_mode { CANCEL_NEVER, CANCEL_AT_START, CANCEL_AFTER_50MS };

struct client {
	uv_loop_t loop;
	uv_tcp_t tcp;
	uv_connect_t creq;
	uv_timer_t watchdog;
	uv_timer_t canceller;
	struct upstream *u; /* heap; freed in cb, or in the close callback after cancel */
	const struct upstream_params *params;
	enum cancel_mode cancel;
	size_t want; /* read on after cb until this many bytes (extra included) */
	bool closing;
	bool timed_out;
	int connect_status;
	int start_rc;
	int calls;
	bool u_matches;	    /* cb got the u we started */
	bool data_restored; /* stream->data was ours again in cb */
	int active_after_cancel;
	bool data_after_cancel;
	struct upstream_result res; /* res.extra is dangling: use data */
	uint8_t data[8192];
	size_t data_len;
};

static void on_tcp_closed(uv_handle_t *h)
{
	struct client *c = h->data;

	/* After upstream_cancel() u lives until here (upstream.h). */
	if (c->u != NULL) {
		test_free(c->u);
		c->u = NULL;
	}
}

static void client_close(struct client *c)
{
	if (c->closing)
		return;
	c->closing = true;
	uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
	uv_close((uv_handle_t *)&c->watchdog, NULL);
	uv_close((uv_handle_t *)&c->canceller, NULL);
}

static void on_watchdog(uv_timer_t *t)
{
	struct client *c = t->data;

	c->timed_out = true;
	if (c->u != NULL)
		upstream_cancel(c->u);
	client_close(c);
}

static void on_close_timer(uv_timer_t *t)
{
	client_close(t->data);
}

/* Cancel, then keep the stream open a while: no callback of upstream's may
 * run, and data that arrives meanwhile must stay unread. */
static void on_cancel_timer(uv_timer_t *t)
{
	struct client *c = t->data;

	upstream_cancel(c->u);
	upstream_cancel(c->u); /* twice is harmless */
	c->active_after_cancel = uv_is_active((uv_handle_t *)&c->tcp);
	c->data_after_cancel = c->tcp.data == c;
	uv_timer_start(&c->canceller, on_close_timer, 200, 0);
}

static void on_after_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct client *c = h->data;

	(void)suggested;
	*buf =
	    uv_buf_init((char *)c->data + c->data_len, (unsigned)(sizeof(c->data) - c->data_len));
}

static void on_after_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct client *c = s->data;

	(void)buf;
	if (nread > 0)
		c->data_len += (size_t)nread;
	if (nread < 0 || c->data_len >= c->want) {
		uv_read_stop(s);
		client_close(c);
	}
}

static void on_result(struct upstream *u, const struct upstream_result *res, void *ctx)
{
	struct client *c = ctx;

	c->calls++;
	c->u_matches = u == c->u;
	c->data_restored = c->tcp.data == c;
	c->res = *res;
	c->res.extra = NULL;
	if (res->extra_len > 0) {
		memcpy(c->data, res->extra, res->extra_len);
		c->data_len = res->extra_len;
	}
	/* The caller may free u in cb (res points into it: copied above);
	 * ASan catches any later touch. */
	test_free(u);
	c->u = NULL;
	if (c->res.status == UPSTREAM_OK && c->data_len < c->want) {
		/* The session takes the stream over with its own callbacks. */
		assert_int_equal(
		    uv_read_start((uv_stream_t *)&c->tcp, on_after_alloc, on_after_read), 0);
		return;
	}
	client_close(c);
}

static void on_connected(uv_connect_t *req, int status)
{
	struct client *c = req->data;

	c->connect_status = status;
	if (status < 0) {
		client_close(c);
		return;
	}
	c->u = test_malloc(sizeof(*c->u));
	c->start_rc = upstream_start(c->u, (uv_stream_t *)&c->tcp, c->params, on_result, c);
	if (c->start_rc < 0) {
		test_free(c->u);
		c->u = NULL;
		client_close(c);
		return;
	}
	if (c->cancel == CANCEL_AT_START) {
		upstream_cancel(c->u);
		client_close(c);
	} else if (c->cancel == CANCEL_AFTER_50MS) {
		uv_timer_start(&c->canceller, on_cancel_timer, 50, 0);
	}
}

/* Connect to 127.0.0.1:port, run upstream_start on the stream, run the loop
 * until everything is closed. The test then asserts uv_loop_close() == 0. */
static void client_run(struct client *c, uint16_t port, const struct upstream_params *p)
{
	struct sockaddr_in sin;

	c->params = p;
	c->start_rc = 1;
	assert_int_equal(uv_loop_init(&c->loop), 0);
	assert_int_equal(uv_tcp_init(&c->loop, &c->tcp), 0);
	assert_int_equal(uv_timer_init(&c->loop, &c->watchdog), 0);
	assert_int_equal(uv_timer_init(&c->loop, &c->canceller), 0);
	c->tcp.data = c;
	c->watchdog.data = c;
	c->canceller.data = c;
	c->creq.data = c;
	assert_int_equal(uv_timer_start(&c->watchdog, on_watchdog, WATCHDOG_MS, 0), 0);
	assert_int_equal(uv_ip4_addr("127.0.0.1", port, &sin), 0);
	assert_int_equal(uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&sin, on_connected),
			 0);
	assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
	assert_null(c->u);
	assert_false(c->timed_out);
	assert_int_equal(c->connect_status, 0);
}

/* One finished handshake: started, cb once, with the state it promised. */
static void assert_result(const struct client *c, enum upstream_status status)
{
	assert_int_equal(c->start_rc, 0);
	assert_int_equal(c->calls, 1);
	assert_true(c->u_matches);
	assert_true(c->data_restored);
	assert_int_equal(c->res.status, status);
	assert_non_null(c->res.why);
}

static struct client *client_new(void)
{
	struct client *c = test_calloc(1, sizeof(*c));

	return c;
}

/* Every test ends here: the loop must have nothing left open. */
static void client_free(struct client *c)
{
	assert_int_equal(uv_loop_close(&c->loop), 0);
	test_free(c);
}

/* ---- wire bytes, spelled out independently of socks5.c ---- */

static const uint8_t GREETING_NONE[] = {5, 1, 0};
static const uint8_t GREETING_BOTH[] = {5, 2, 0, 2};
static const uint8_t METHOD_NONE[] = {5, 0};
static const uint8_t METHOD_PASSWORD[] = {5, 2};
static const uint8_t METHOD_REFUSED[] = {5, 0xFF};
static const uint8_t AUTH_USER_SECRET[] = {1,	4,   'u', 's', 'e', 'r', 6,
					   's', 'e', 'c', 'r', 'e', 't'};
static const uint8_t AUTH_OK[] = {1, 0};
static const uint8_t AUTH_FAIL[] = {1, 1};
/* CONNECT 192.0.2.1:25 */
static const uint8_t CONNECT_V4[] = {5, 1, 0, 1, 192, 0, 2, 1, 0, 25};
/* BIND 198.51.100.7:0 (the sockaddr says port 4567) */
static const uint8_t BIND_V4[] = {5, 2, 0, 1, 198, 51, 100, 7, 0, 0};
static const uint8_t BIND_V6[] = {5, 2, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0,
				  0, 0, 0, 0, 0,    0,	  0,	0,    7, 0, 0};
static const uint8_t BIND_OK[] = {5, 0, 0, 1, 198, 51, 100, 7, 0xc3, 0x50};
static const uint8_t BIND_FAIL[] = {5, 1, 0, 1, 0, 0, 0, 0, 0, 0};
/* BND 203.0.113.9:40000 */
static const uint8_t REPLY_OK[] = {5, 0, 0, 1, 203, 0, 113, 9, 0x9c, 0x40};
static const uint8_t REPLY_OK_DOMAIN[] = {5, 0, 0, 3, 7, 'p', 'r', 'o', 'x', 'y', '.', 'x', 0, 80};
static const uint8_t REPLY_REFUSED[] = {5, 5, 0, 1, 0, 0, 0, 0, 0, 0};
static const uint8_t REPLY_OK_BANNER[] = {5,   0,   0,	 1,   203, 0,	113, 9,	  0x9c, 0x40, '2',
					  '2', '0', ' ', 'b', 'a', 'n', 'n', 'e', 'r',	'\r', '\n'};

static struct socks5_addr dest_v4(void)
{
	struct socks5_addr a = {.atyp = SOCKS5_ATYP_IPV4, .port = 25, .u.ipv4 = {192, 0, 2, 1}};

	return a;
}

static struct sockaddr_in bind_v4(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(4567)};

	inet_pton(AF_INET, "198.51.100.7", &sin.sin_addr);
	return sin;
}

static void assert_bnd_v4(const struct socks5_addr *a)
{
	static const uint8_t ip[4] = {203, 0, 113, 9};

	assert_int_equal(a->atyp, SOCKS5_ATYP_IPV4);
	assert_memory_equal(a->u.ipv4, ip, 4);
	assert_int_equal(a->port, 40000);
}

#define RUN(c, f, steps, params)                                                                   \
	do {                                                                                       \
		fake_start(&(f), steps, sizeof(steps) / sizeof((steps)[0]));                       \
		client_run(c, (f).port, params);                                                   \
		fake_join(&(f));                                                                   \
	} while (0)

/* ---- scripted tests ---- */

static void test_upstream_noauth_connect_ok(void **state)
{
	static const struct step steps[] = {
	    STEP(RECV, GREETING_NONE), STEP(SEND, METHOD_NONE), STEP(RECV, CONNECT_V4),
	    STEP(SEND, REPLY_OK_BANNER), /* reply and banner in one segment */
	};
	struct socks5_addr dest = dest_v4();
	struct upstream_params p = {.dest = &dest};
	struct client *c = client_new();
	struct fake f;

	(void)state;
	RUN(c, f, steps, &p);
	assert_got(&f);
	assert_result(c, UPSTREAM_OK);
	assert_bnd_v4(&c->res.bnd);
	assert_int_equal(c->res.extra_len, 12);
	assert_memory_equal(c->data, "220 banner\r\n", 12);
	client_free(c);
}

static void test_upstream_password_ok(void **state)
{
	static const struct step steps[] = {
	    STEP(RECV, GREETING_BOTH), STEP(SEND, METHOD_PASSWORD), STEP(RECV, AUTH_USER_SECRET),
	    STEP(SEND, AUTH_OK),       STEP(RECV, CONNECT_V4),	    STEP(SEND, REPLY_OK),
	};
	struct socks5_addr dest = dest_v4();
	struct upstream_params p = {.username = "user", .password = "secret", .dest = &dest};
	struct client *c = client_new();
	struct fake f;

	(void)state;
	RUN(c, f, steps, &p);
	assert_got(&f);
	assert_result(c, UPSTREAM_OK);
	assert_bnd_v4(&c->res.bnd);
	assert_int_equal(c->res.extra_len, 0);
	client_free(c);
}

/* Credentials configured, but the proxy needs none: NONE was offered too. */
static void test_upstream_password_offered_none_chosen(void **state)
{
	static const struct step steps[] = {
	    STEP(RECV, GREETING_BOTH),
	    STEP(SEND, METHOD_NONE),
	    STEP(RECV, CONNECT_V4),
	    STEP(SEND, REPLY_OK),
	};
	struct socks5_addr dest = dest_v4();
	struct upstream_params p = {.username = "user", .password = "secret", .dest = &dest};
	struct client *c = client_new();
	struct fake f;

	(void)state;
	RUN(c, f, steps, &p);
	assert_got(&f);
	assert_result(c, UPSTREAM_OK);
	client_free(c);
}

static void test_upstream_password_refused(void **state)
{
	static const struct step steps[] = {
	    STEP(RECV, GREETING_BOTH),
	    STEP(SEND, METHOD_PASSWORD),
	    STEP(RECV, AUTH_USER_SECRET),
	    STEP(SEND, AUTH_FAIL),
	    {QUIET, NULL, 0},
	};
	struct socks5_addr dest = dest_v4();
	struct upstream_params p = {.username = "user", .password = "secret", .dest = &dest};
	struct client *c = client_new();
	struct fake f;

	(void)state;
	RUN(c, f, steps, &p);
	assert_got(&f); /* and no CONNECT after the refusal */
	assert_result(c, UPSTREAM_PROXY_FAILED);
	assert_int_equal(c->res.err, 0);
	client_free(c);
}

static void test_upstream_method_refused(void **state)
{
	static const struct step steps[] = {
	    STEP(RECV, GREETING_NONE),
	    STEP(SEND, METHOD_REFUSED),
	    {QUIET, NULL, 0},
	};
	struct socks5_addr dest = dest_v4();
	struct upstream_params p = {.dest = &dest};
	struct client *c = client_new();
	struct fake f;

	(void)state;
	RUN(c, f, steps, &p);
	assert_got(&f);
	assert_result(c, UPSTREAM_PROXY_FAILED);
	assert_int_equal(c->res.err, 0);
	client_free(c);
}

/* Offered NONE only; a proxy that picks PASSWORD is broken, not obeyed. */
static void test_upstream_method_not_offered(void **state)
{
	static const struct step steps[] = {
	    STEP(RECV, GREETING_NONE),
	    STEP(SEND, METHOD_PASSWORD),
	    {QUIET, NULL, 0},
	};
	struct socks5_addr dest = dest_v4();
	struct upstream_params p = {.dest = &dest};
	struct client *c = client_new();
	struct fake f;

	(void)state;
	RUN(c, f, steps, &p);
	assert_got(&f);
	assert_result(c, UPSTREAM_PROXY_FAILED);
	client_free(c);
}

/* KumoMTA's order: BIND src:0, wait for its reply, only then CONNECT. The
 * QUIET step fails the test if CONNECT was pipelined behind BIND. */
static void test_upstream_bind_then_connect(void **state)
{
	static const struct step steps[] = {
	    STEP(RECV, GREETING_NONE), STEP(SEND, METHOD_NONE), STEP(RECV, BIND_V4),
	    {QUIET, NULL, 0},	       STEP(SEND, BIND_OK),	STEP(RECV, CONNECT_V4),
	    STEP(SEND, REPLY_OK),
	};
	struct socks5_addr dest = dest_v4();
	struct sockaddr_in src = bind_v4();
	struct upstream_params p = {.bind_source = (struct sockaddr *)&src, .dest = &dest};
	struct client *c = client_new();
	struct fake f;

	(void)state;
	RUN(c, f, steps, &p);
	assert_got(&f);
	assert_result(c, UPSTREAM_OK);
	assert_bnd_v4(&c->res.bnd);
	client_free(c);
}

static void test_upstream_bind_ipv6_source_with_auth(void **state)
{
	static const struct step steps[] = {
	    STEP(RECV, GREETING_BOTH), STEP(SEND, METHOD_PASSWORD), STEP(RECV, AUTH_USER_SECRET),
	    {QUIET, NULL, 0},	       STEP(SEND, AUTH_OK),	    STEP(RECV, BIND_V6),
	    {QUIET, NULL, 0},	       STEP(SEND, BIND_OK),	    STEP(RECV, CONNECT_V4),
	    STEP(SEND, REPLY_OK),
	};
	struct socks5_addr dest = dest_v4();
	struct sockaddr_in6 src = {.sin6_family = AF_INET6, .sin6_port = htons(99)};
	struct upstream_params p = {.username = "user",
				    .password = "secret",
				    .bind_source = (struct sockaddr *)&src,
				    .dest = &dest};
	struct client *c = client_new();
	struct fake f;

	(void)state;
	inet_pton(AF_INET6, "2001:db8::7", &src.sin6_addr);
	RUN(c, f, steps, &p);
	assert_got(&f);
	assert_result(c, UPSTREAM_OK);
	client_free(c);
}

/* A failure reply to our BIND blames the proxy (SPEC 4.2), and no CONNECT
 * follows it. */
static void test_upstream_bind_refused(void **state)
{
	static const struct step steps[] = {
	    STEP(RECV, GREETING_NONE), STEP(SEND, METHOD_NONE), STEP(RECV, BIND_V4),
	    STEP(SEND, BIND_FAIL),     {QUIET, NULL, 0},
	};
	struct socks5_addr dest = dest_v4();
	struct sockaddr_in src = bind_v4();
	struct upstream_params p = {.bind_source = (struct sockaddr *)&src, .dest = &dest};
	struct client *c = client_new();
	struct fake f;

	(void)state;
	RUN(c, f, steps, &p);
	assert_got(&f);
	assert_result(c, UPSTREAM_PROXY_FAILED);
	assert_int_equal(c->res.rep, SOCKS5_REP_GENERAL_FAILURE);
	assert_int_equal(c->res.err, 0);
	client_free(c);
}

static void test_upstream_connect_refused_is_dest_failure(void **state)
{
	static const struct step steps[] = {
	    STEP(RECV, GREETING_NONE),
	    STEP(SEND, METHOD_NONE),
	    STEP(RECV, CONNECT_V4),
	    STEP(SEND, REPLY_REFUSED),
	};
	struct socks5_addr dest = dest_v4();
	struct upstream_params p = {.dest = &dest};
	struct client *c = client_new();
	struct fake f;

	(void)state;
	RUN(c, f, steps, &p);
	assert_got(&f);
	assert_result(c, UPSTREAM_DEST_FAILED);
	assert_int_equal(c->res.rep, SOCKS5_REP_CONN_REFUSED);
	client_free(c);
}

static void test_upstream_proxy_closes_after_greeting(void **state)
{
	static const struct step steps[] = {STEP(RECV, GREETING_NONE)};
	struct socks5_addr dest = dest_v4();
	struct upstream_params p = {.dest = &dest};
	struct client *c = client_new();
	struct fake f;

	(void)state;
	RUN(c, f, steps, &p);
	assert_got(&f);
	assert_result(c, UPSTREAM_PROXY_FAILED);
	assert_int_equal(c->res.err, UV_EOF);
	client_free(c);
}

/* EOF inside a reply, after part of it arrived. */
static void test_upstream_proxy_closes_mid_reply(void **state)
{
	static const uint8_t half[] = {5, 0, 0, 1, 203};
	static const struct step steps[] = {
	    STEP(RECV, GREETING_NONE),
	    STEP(SEND, METHOD_NONE),
	    STEP(RECV, CONNECT_V4),
	    STEP(SEND, half),
	};
	struct socks5_addr dest = dest_v4();
	struct upstream_params p = {.dest = &dest};
	struct client *c = client_new();
	struct fake f;

	(void)state;
	RUN(c, f, steps, &p);
	assert_got(&f);
	assert_result(c, UPSTREAM_PROXY_FAILED);
	assert_int_equal(c->res.err, UV_EOF);
	client_free(c);
}

static void test_upstream_malformed_method_reply(void **state)
{
	static const uint8_t socks4ish[] = {4, 0};
	static const struct step steps[] = {
	    STEP(RECV, GREETING_NONE),
	    STEP(SEND, socks4ish),
	    {QUIET, NULL, 0},
	};
	struct socks5_addr dest = dest_v4();
	struct upstream_params p = {.dest = &dest};
	struct client *c = client_new();
	struct fake f;

	(void)state;
	RUN(c, f, steps, &p);
	assert_got(&f);
	assert_result(c, UPSTREAM_PROXY_FAILED);
	assert_int_equal(c->res.err, 0);
	client_free(c);
}

static void test_upstream_malformed_connect_reply(void **state)
{
	static const uint8_t bad_atyp[] = {5, 0, 0, 9, 0, 0, 0, 0, 0, 0};
	static const struct step steps[] = {
	    STEP(RECV, GREETING_NONE),
	    STEP(SEND, METHOD_NONE),
	    STEP(RECV, CONNECT_V4),
	    STEP(SEND, bad_atyp),
	};
	struct socks5_addr dest = dest_v4();
	struct upstream_params p = {.dest = &dest};
	struct client *c = client_new();
	struct fake f;

	(void)state;
	RUN(c, f, steps, &p);
	assert_got(&f);
	assert_result(c, UPSTREAM_PROXY_FAILED);
	assert_int_equal(c->res.err, 0);
	client_free(c);
}

/* Every reply arrives one byte per segment: every parser sees every split. */
static void test_upstream_replies_split_bytewise(void **state)
{
	static const struct step steps[] = {
	    STEP(RECV, GREETING_BOTH),	  STEP(SEND_SLOW, METHOD_PASSWORD),
	    STEP(RECV, AUTH_USER_SECRET), STEP(SEND_SLOW, AUTH_OK),
	    STEP(RECV, BIND_V4),	  STEP(SEND_SLOW, BIND_OK),
	    STEP(RECV, CONNECT_V4),	  STEP(SEND_SLOW, REPLY_OK_DOMAIN),
	};
	struct socks5_addr dest = dest_v4();
	struct sockaddr_in src = bind_v4();
	struct upstream_params p = {.username = "user",
				    .password = "secret",
				    .bind_source = (struct sockaddr *)&src,
				    .dest = &dest};
	struct client *c = client_new();
	struct fake f;

	(void)state;
	RUN(c, f, steps, &p);
	assert_got(&f);
	assert_result(c, UPSTREAM_OK);
	assert_int_equal(c->res.bnd.atyp, SOCKS5_ATYP_DOMAIN);
	assert_string_equal(c->res.bnd.u.domain, "proxy.x");
	assert_int_equal(c->res.bnd.port, 80);
	assert_int_equal(c->res.extra_len, 0);
	client_free(c);
}

/* The proxy sends all its replies and then some banner in one segment of
 * UPSTREAM_READ_MAX + 1 bytes, before our auth request: the first read fills
 * the buffer, so libuv reads again at once, while our auth write is still
 * in flight. Each reply must still be acted on only after its request went
 * out, in order, and the banner must arrive whole. */
static void test_upstream_early_replies(void **state)
{
	static uint8_t all[UPSTREAM_READ_MAX + 1];
	static const struct step steps[] = {
	    STEP(RECV, GREETING_BOTH),
	    STEP(SEND, all),
	    STEP(RECV, AUTH_USER_SECRET),
	    STEP(RECV, CONNECT_V4),
	};
	size_t head = sizeof(METHOD_PASSWORD) + sizeof(AUTH_OK) + sizeof(REPLY_OK);
	struct socks5_addr dest = dest_v4();
	struct upstream_params p = {.username = "user", .password = "secret", .dest = &dest};
	struct client *c = client_new();
	struct fake f;

	(void)state;
	memcpy(all, METHOD_PASSWORD, sizeof(METHOD_PASSWORD));
	memcpy(all + sizeof(METHOD_PASSWORD), AUTH_OK, sizeof(AUTH_OK));
	memcpy(all + sizeof(METHOD_PASSWORD) + sizeof(AUTH_OK), REPLY_OK, sizeof(REPLY_OK));
	for (size_t i = head; i < sizeof(all); i++)
		all[i] = (uint8_t)('a' + i % 26);
	c->want = sizeof(all) - head;
	RUN(c, f, steps, &p);
	assert_got(&f);
	assert_result(c, UPSTREAM_OK);
	assert_bnd_v4(&c->res.bnd);
	assert_int_equal(c->data_len, sizeof(all) - head);
	assert_memory_equal(c->data, all + head, sizeof(all) - head);
	client_free(c);
}

/* A DOMAIN destination goes out as a name, unresolved. */
static void test_upstream_domain_dest_passed_through(void **state)
{
	static const uint8_t connect_domain[] = {5,   1,   0,	3,   11,  'e', 'x', 'a', 'm',
						 'p', 'l', 'e', '.', 'o', 'r', 'g', 0,	 25};
	static const struct step steps[] = {
	    STEP(RECV, GREETING_NONE),
	    STEP(SEND, METHOD_NONE),
	    STEP(RECV, connect_domain),
	    STEP(SEND, REPLY_OK),
	};
	struct socks5_addr dest = {.atyp = SOCKS5_ATYP_DOMAIN, .domain_len = 11, .port = 25};
	struct upstream_params p = {.dest = &dest};
	struct client *c = client_new();
	struct fake f;

	(void)state;
	memcpy(dest.u.domain, "example.org", 12);
	RUN(c, f, steps, &p);
	assert_got(&f);
	assert_result(c, UPSTREAM_OK);
	client_free(c);
}

static void test_upstream_ipv6_dest(void **state)
{
	static const uint8_t connect_v6[] = {5, 1, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0,
					     0, 0, 0, 0, 0,    0,    0,	   0,	 1, 1, 0xbb};
	static const struct step steps[] = {
	    STEP(RECV, GREETING_NONE),
	    STEP(SEND, METHOD_NONE),
	    STEP(RECV, connect_v6),
	    STEP(SEND, REPLY_OK),
	};
	struct socks5_addr dest = {.atyp = SOCKS5_ATYP_IPV6, .port = 443};
	struct upstream_params p = {.dest = &dest};
	struct client *c = client_new();
	struct fake f;

	(void)state;
	inet_pton(AF_INET6, "2001:db8::1", dest.u.ipv6);
	RUN(c, f, steps, &p);
	assert_got(&f);
	assert_result(c, UPSTREAM_OK);
	client_free(c);
}

/* More than fits in res->extra arrives with the reply: the rest stays in the
 * socket and the caller's own reads get it, in order, nothing lost. */
static void test_upstream_rest_stays_in_socket(void **state)
{
	static uint8_t reply_and_data[sizeof(REPLY_OK) + 3000];
	static const struct step steps[] = {
	    STEP(RECV, GREETING_NONE),
	    STEP(SEND, METHOD_NONE),
	    STEP(RECV, CONNECT_V4),
	    STEP(SEND, reply_and_data),
	};
	struct socks5_addr dest = dest_v4();
	struct upstream_params p = {.dest = &dest};
	struct client *c = client_new();
	struct fake f;

	(void)state;
	memcpy(reply_and_data, REPLY_OK, sizeof(REPLY_OK));
	for (size_t i = 0; i < 3000; i++)
		reply_and_data[sizeof(REPLY_OK) + i] = (uint8_t)(i * 7 + i / 251);
	c->want = 3000;
	RUN(c, f, steps, &p);
	assert_got(&f);
	assert_result(c, UPSTREAM_OK);
	assert_true(c->res.extra_len <= UPSTREAM_READ_MAX - sizeof(REPLY_OK));
	assert_int_equal(c->data_len, 3000);
	assert_memory_equal(c->data, reply_and_data + sizeof(REPLY_OK), 3000);
	client_free(c);
}

/* Cancel right after start, while the greeting's write callback is still
 * pending: no cb, and u (freed in the close callback) outlives it. */
static void test_upstream_cancel_with_write_pending(void **state)
{
	static const struct step steps[] = {{WAIT_EOF, NULL, 0}};
	struct socks5_addr dest = dest_v4();
	struct upstream_params p = {.dest = &dest};
	struct client *c = client_new();
	struct fake f;

	(void)state;
	c->cancel = CANCEL_AT_START;
	RUN(c, f, steps, &p);
	assert_int_equal(f.steps_done, 1);
	assert_int_equal(c->start_rc, 0);
	assert_int_equal(c->calls, 0);
	client_free(c);
}

/* Cancel while waiting for a reply that has half arrived; the rest of it
 * arrives after the cancel and must not be read. */
static void test_upstream_cancel_while_waiting(void **state)
{
	static const uint8_t half[] = {5};
	static const uint8_t rest[] = {0};
	static const struct step steps[] = {
	    STEP(RECV, GREETING_NONE), STEP(SEND, half),    {PAUSE, NULL, 0},
	    STEP(SEND, rest),	       {WAIT_EOF, NULL, 0},
	};
	struct socks5_addr dest = dest_v4();
	struct upstream_params p = {.dest = &dest};
	struct client *c = client_new();
	struct fake f;

	(void)state;
	c->cancel = CANCEL_AFTER_50MS;
	RUN(c, f, steps, &p);
	assert_got(&f); /* no CONNECT went out */
	assert_int_equal(c->start_rc, 0);
	assert_int_equal(c->calls, 0);
	assert_int_equal(c->active_after_cancel, 0);
	assert_true(c->data_after_cancel);
	client_free(c);
}

/* A health probe (no destination): greeting and auth, then OK, no CONNECT. */
static void test_upstream_probe_stops_after_auth(void **state)
{
	static const struct step steps[] = {
	    STEP(RECV, GREETING_BOTH), STEP(SEND, METHOD_PASSWORD), STEP(RECV, AUTH_USER_SECRET),
	    STEP(SEND, AUTH_OK),       {WAIT_EOF, NULL, 0},
	};
	struct upstream_params p = {.username = "user", .password = "secret"};
	struct client *c = client_new();
	struct fake f;

	(void)state;
	RUN(c, f, steps, &p);
	assert_got(&f); /* exactly greeting + auth: no CONNECT followed */
	assert_result(c, UPSTREAM_OK);
	client_free(c);
}

static void test_upstream_probe_without_auth_and_refused(void **state)
{
	static const struct step ok[] = {
	    STEP(RECV, GREETING_NONE),
	    STEP(SEND, METHOD_NONE),
	    {WAIT_EOF, NULL, 0},
	};
	static const struct step refused[] = {
	    STEP(RECV, GREETING_BOTH),
	    STEP(SEND, METHOD_PASSWORD),
	    STEP(RECV, AUTH_USER_SECRET),
	    STEP(SEND, AUTH_FAIL),
	};
	struct upstream_params none = {0};
	struct upstream_params auth = {.username = "user", .password = "secret"};
	struct client *c = client_new();
	struct fake f;

	(void)state;
	RUN(c, f, ok, &none);
	assert_got(&f);
	assert_result(c, UPSTREAM_OK);
	client_free(c);
	c = client_new();
	RUN(c, f, refused, &auth);
	assert_got(&f);
	assert_result(c, UPSTREAM_PROXY_FAILED);
	client_free(c);
}

static void dummy_cb(struct upstream *u, const struct upstream_result *res, void *ctx)
{
	(void)u;
	(void)res;
	(*(int *)ctx)++;
}

/* Bad parameters fail at once, before any I/O, and leave the stream alone;
 * so does a stream that cannot be read (not connected). */
static void test_upstream_start_errors(void **state)
{
	char long_name[300];
	struct socks5_addr dest = dest_v4();
	struct socks5_addr empty_domain = {.atyp = SOCKS5_ATYP_DOMAIN, .domain_len = 0, .port = 1};
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct upstream_params ok = {.dest = &dest};
	struct upstream_params p;
	struct upstream *u = test_malloc(sizeof(*u));
	uv_loop_t loop;
	uv_tcp_t tcp;
	int calls = 0;
	int sentinel;

	(void)state;
	memset(long_name, 'a', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(uv_tcp_init(&loop, &tcp), 0);
	tcp.data = &sentinel;

	assert_int_equal(upstream_start(u, (uv_stream_t *)&tcp, NULL, dummy_cb, &calls), -EINVAL);
	assert_int_equal(upstream_start(u, (uv_stream_t *)&tcp, &ok, NULL, &calls), -EINVAL);
	p = (struct upstream_params){.dest = &empty_domain};
	assert_int_equal(upstream_start(u, (uv_stream_t *)&tcp, &p, dummy_cb, &calls), -EINVAL);
	p = (struct upstream_params){.username = "", .dest = &dest};
	assert_int_equal(upstream_start(u, (uv_stream_t *)&tcp, &p, dummy_cb, &calls), -EINVAL);
	p = (struct upstream_params){.username = long_name, .dest = &dest};
	assert_int_equal(upstream_start(u, (uv_stream_t *)&tcp, &p, dummy_cb, &calls), -EINVAL);
	p = (struct upstream_params){.username = "u", .password = long_name, .dest = &dest};
	assert_int_equal(upstream_start(u, (uv_stream_t *)&tcp, &p, dummy_cb, &calls), -EINVAL);
	p = (struct upstream_params){.password = "orphan", .dest = &dest};
	assert_int_equal(upstream_start(u, (uv_stream_t *)&tcp, &p, dummy_cb, &calls), -EINVAL);
	p = (struct upstream_params){.bind_source = (struct sockaddr *)&sun, .dest = &dest};
	assert_int_equal(upstream_start(u, (uv_stream_t *)&tcp, &p, dummy_cb, &calls),
			 -EAFNOSUPPORT);
	assert_ptr_equal(tcp.data, &sentinel);

	/* Valid parameters, but the stream is not connected. */
	assert_int_equal(upstream_start(u, (uv_stream_t *)&tcp, &ok, dummy_cb, &calls),
			 UV_ENOTCONN);
	assert_ptr_equal(tcp.data, &sentinel);
	assert_int_equal(uv_is_active((uv_handle_t *)&tcp), 0);

	uv_close((uv_handle_t *)&tcp, NULL);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(calls, 0);
	test_free(u);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- against a real peer: microsocks ---- */

struct microsocks {
	pid_t pid;
	uint16_t port;
};

static uint16_t free_port(void)
{
	uint16_t port;
	int fd = listen_loopback(&port);

	close(fd);
	return port;
}

/* Poll until microsocks accepts connections (no bare sleep); false if it
 * exited (not installed: then *pid = 0, reaped) or never listened. */
static bool wait_listening(pid_t *pid, uint16_t port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
				  .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

	for (int i = 0; i < 500; i++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int rc = connect(fd, (struct sockaddr *)&sin, sizeof(sin));

		close(fd);
		if (rc == 0)
			return true;
		if (waitpid(*pid, NULL, WNOHANG) == *pid) {
			*pid = 0;
			return false;
		}
		sleep_ms(10);
	}
	return false;
}

/* fork+exec rather than posix_spawn: PR_SET_PDEATHSIG kills microsocks
 * even when this test binary crashes before its teardown. */
static pid_t spawn_with_deathsig(char *const argv[])
{
	pid_t parent = getpid();
	pid_t pid = fork();
	int null;

	if (pid != 0)
		return pid;
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
		_exit(127);
	null = open("/dev/null", O_WRONLY);
	if (null >= 0) {
		dup2(null, 1);
		dup2(null, 2);
	}
	execvp(argv[0], argv);
	_exit(127);
}

static int microsocks_start(void **state, bool with_auth)
{
	struct microsocks *m = test_calloc(1, sizeof(*m));
	char port[8];
	char *argv_auth[] = {"microsocks", "-i",   "127.0.0.1", "-p",	  port,
			     "-u",	   "user", "-P",	"secret", NULL};
	char *argv_open[] = {"microsocks", "-i", "127.0.0.1", "-p", port, NULL};

	m->port = free_port();
	snprintf(port, sizeof(port), "%u", m->port);
	m->pid = spawn_with_deathsig(with_auth ? argv_auth : argv_open);
	/* Not installed (exit 127) or not listening: the tests fail. */
	if (m->pid > 0 && !wait_listening(&m->pid, m->port) && m->pid > 0) {
		kill(m->pid, SIGKILL);
		waitpid(m->pid, NULL, 0);
		m->pid = 0;
	}
	*state = m;
	return 0;
}

static int microsocks_open_setup(void **state)
{
	return microsocks_start(state, false);
}

static int microsocks_auth_setup(void **state)
{
	return microsocks_start(state, true);
}

static int microsocks_teardown(void **state)
{
	struct microsocks *m = *state;

	if (m->pid > 0) {
		kill(m->pid, SIGTERM);
		waitpid(m->pid, NULL, 0);
	}
	test_free(m);
	return 0;
}

/* scripts/deps.sh installs microsocks: its absence is a failure. */
static struct microsocks *microsocks_or_fail(void **state)
{
	struct microsocks *m = *state;

	if (m->pid <= 0)
		fail_msg("microsocks is not installed or did not start");
	return m;
}

static const char BANNER[] = "220 real.example ESMTP\r\n";

static const struct step banner_steps[] = {
    {SEND, BANNER, sizeof(BANNER) - 1},
    {WAIT_EOF, NULL, 0},
};

/* CONNECT through microsocks to a local server; its banner reaches us
 * through extra and/or the caller's own reads. */
static void run_microsocks_connect(struct microsocks *m, const struct upstream_params *base,
				   bool as_domain)
{
	struct client *c = client_new();
	struct upstream_params p = *base;
	struct socks5_addr dest = {.atyp = SOCKS5_ATYP_IPV4, .u.ipv4 = {127, 0, 0, 1}};
	struct fake target;

	fake_start(&target, banner_steps, 2);
	dest.port = target.port;
	if (as_domain) {
		dest.atyp = SOCKS5_ATYP_DOMAIN;
		dest.domain_len = 9;
		memcpy(dest.u.domain, "127.0.0.1", 10);
	}
	p.dest = &dest;
	c->want = sizeof(BANNER) - 1;
	client_run(c, m->port, &p);
	fake_join(&target);
	assert_result(c, UPSTREAM_OK);
	assert_int_equal(c->data_len, sizeof(BANNER) - 1);
	assert_memory_equal(c->data, BANNER, sizeof(BANNER) - 1);
	assert_int_equal(target.steps_done, 2);
	client_free(c);
}

static void test_upstream_microsocks_connect(void **state)
{
	struct microsocks *m = microsocks_or_fail(state);
	struct upstream_params p = {0};

	run_microsocks_connect(m, &p, false);
	run_microsocks_connect(m, &p, true);
}

static void test_upstream_microsocks_password(void **state)
{
	struct microsocks *m = microsocks_or_fail(state);
	struct upstream_params good = {.username = "user", .password = "secret"};
	struct upstream_params bad = {.username = "user", .password = "wrong"};
	struct socks5_addr dest = {.atyp = SOCKS5_ATYP_IPV4, .port = 9, .u.ipv4 = {127, 0, 0, 1}};
	struct client *c = client_new();

	run_microsocks_connect(m, &good, false);

	bad.dest = &dest;
	client_run(c, m->port, &bad);
	assert_result(c, UPSTREAM_PROXY_FAILED);
	client_free(c);
}

/* The destination refuses: microsocks says REP 5, we pass it through. */
static void test_upstream_microsocks_dest_refused(void **state)
{
	struct microsocks *m = microsocks_or_fail(state);
	struct socks5_addr dest = {.atyp = SOCKS5_ATYP_IPV4, .u.ipv4 = {127, 0, 0, 1}};
	struct upstream_params p = {.dest = &dest};
	struct client *c = client_new();
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	/* Bound but not listening: connecting to it is refused, and no one
	 * else can take the port meanwhile. */
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	dest.port = ntohs(sin.sin_port);
	client_run(c, m->port, &p);
	close(fd);
	assert_result(c, UPSTREAM_DEST_FAILED);
	assert_int_equal(c->res.rep, SOCKS5_REP_CONN_REFUSED);
	client_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_upstream_noauth_connect_ok),
	    cmocka_unit_test(test_upstream_password_ok),
	    cmocka_unit_test(test_upstream_password_offered_none_chosen),
	    cmocka_unit_test(test_upstream_password_refused),
	    cmocka_unit_test(test_upstream_method_refused),
	    cmocka_unit_test(test_upstream_method_not_offered),
	    cmocka_unit_test(test_upstream_bind_then_connect),
	    cmocka_unit_test(test_upstream_bind_ipv6_source_with_auth),
	    cmocka_unit_test(test_upstream_bind_refused),
	    cmocka_unit_test(test_upstream_connect_refused_is_dest_failure),
	    cmocka_unit_test(test_upstream_proxy_closes_after_greeting),
	    cmocka_unit_test(test_upstream_proxy_closes_mid_reply),
	    cmocka_unit_test(test_upstream_malformed_method_reply),
	    cmocka_unit_test(test_upstream_malformed_connect_reply),
	    cmocka_unit_test(test_upstream_replies_split_bytewise),
	    cmocka_unit_test(test_upstream_early_replies),
	    cmocka_unit_test(test_upstream_domain_dest_passed_through),
	    cmocka_unit_test(test_upstream_ipv6_dest),
	    cmocka_unit_test(test_upstream_rest_stays_in_socket),
	    cmocka_unit_test(test_upstream_cancel_with_write_pending),
	    cmocka_unit_test(test_upstream_cancel_while_waiting),
	    cmocka_unit_test(test_upstream_start_errors),
	    cmocka_unit_test(test_upstream_probe_stops_after_auth),
	    cmocka_unit_test(test_upstream_probe_without_auth_and_refused),
	    cmocka_unit_test_setup_teardown(test_upstream_microsocks_connect, microsocks_open_setup,
					    microsocks_teardown),
	    cmocka_unit_test_setup_teardown(test_upstream_microsocks_password,
					    microsocks_auth_setup, microsocks_teardown),
	    cmocka_unit_test_setup_teardown(test_upstream_microsocks_dest_refused,
					    microsocks_open_setup, microsocks_teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
