/* socks_load: SOCKS5 load generator and loopback destination server for
 * scripts/bench.sh. One epoll loop per process, no threads.
 *
 *   socks_load serve  [-p PAYLOAD] [-t MAX_S]
 *       Destination server on 127.0.0.1 with two ephemeral ports: echo (reads
 *       PAYLOAD bytes, echoes them, closes) and hold (echoes whatever it reads,
 *       keeps the connection open). Prints `READY echo=P hold=P`.
 *   socks_load cps    [-x PROXY] -d ECHO [-c WORKERS] [-w WARMUP_S] [-t DURATION_S] [-p PAYLOAD]
 *       Each worker loops: connect, greeting, CONNECT, reply, PAYLOAD bytes each
 *       way, EOF, close. Without -x it connects to the destination directly.
 *   socks_load stream [-x PROXY] [-c STREAMS] [-b TOTAL_BYTES] [-t MAX_S] [-r]
 *       Pushes TOTAL_BYTES (split evenly over the streams, each announced in an
 *       8-byte header) or for MAX_S seconds, whichever first, to a sink on a
 *       thread of its own, which counts what arrives. Counting at the sink
 *       rather than through acknowledgements keeps the result independent of
 *       how fairly a proxy serves the reverse direction. With -r the other
 *       way: the header asks a source on that thread for the bytes, and the
 *       client counts what arrives ("down", destination -> client).
 *   socks_load idle    -x PROXY  -d HOLD [-n CONNS] [-c CONCURRENCY] [-t HOLD_S]
 *       Opens CONNS relayed connections (each proven with a 1-byte echo), prints
 *       its RESULT and holds them. SIGUSR1 pings every one and exits; SIGTERM
 *       exits; HOLD_S bounds the wait.
 *
 * Every client mode checks every SOCKS reply (VER 5, method 0, REP 0), every
 * echoed byte and every byte count at the sink, and prints one line
 * `RESULT mode=... key=value ... errors=N` on stdout. Exit status 0 when the
 * run had no error, 1 otherwise, 2 on a usage or setup error. */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PAYLOAD	    1024
#define STREAM_CHUNK	    (256 * 1024)
#define SINK_READ	    (256 * 1024)
#define PROGRESS_TIMEOUT_US (5 * 1000000ull)

static volatile sig_atomic_t got_term, got_usr1;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		got_usr1 = 1;
	else
		got_term = 1;
}

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* CPU time of this process, user + system. */
static uint64_t cpu_us(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static void die(const char *what)
{
	fprintf(stderr, "socks_load: %s: %s\n", what, strerror(errno));
	exit(2);
}

static int parse_hostport(const char *s, struct sockaddr_in *out)
{
	char host[64];
	const char *colon = strrchr(s, ':');

	if (!colon || (size_t)(colon - s) >= sizeof host)
		return -EINVAL;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	memset(out, 0, sizeof *out);
	out->sin_family = AF_INET;
	if (inet_pton(AF_INET, host, &out->sin_addr) != 1)
		return -EINVAL;
	char *end;
	unsigned long port = strtoul(colon + 1, &end, 10);
	if (*end || port == 0 || port > 65535)
		return -EINVAL;
	out->sin_port = htons((uint16_t)port);
	return 0;
}

/* The loader may hold 10,000+ sockets: take the whole hard limit. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static void ep_ctl(int ep, int op, int fd, uint32_t events, void *ptr)
{
	struct epoll_event ev = {.events = events, .data.ptr = ptr};

	if (epoll_ctl(ep, op, fd, &ev) < 0)
		die("epoll_ctl");
}

/* ---- serve ---- */

/* Listening kinds first, in the same order as the connection kinds. */
enum srv_kind {
	SRV_LISTEN_ECHO,
	SRV_LISTEN_SINK,
	SRV_LISTEN_HOLD,
	SRV_LISTEN_SOURCE,
	SRV_ECHO,
	SRV_SINK,
	SRV_HOLD,
	SRV_SOURCE
};

struct srv_conn {
	struct srv_conn *prev, *next; /* open connections, freed at exit */
	int fd;
	uint8_t kind;
	uint8_t hdr_got;
	uint8_t hdr[8];
	uint32_t echoed;
	uint64_t want, got; /* SRV_SOURCE: got counts bytes sent */
};

struct srv {
	int ep;
	struct srv_conn *conns;
	size_t payload;
	atomic_uint_fast64_t errors;
	/* Sink totals, read by the stream client's thread. */
	atomic_uint_fast64_t sink_bytes;
	atomic_uint_fast64_t sink_complete; /* connections that got all they announced */
	atomic_bool stop;
	char buf[1 << 20];
	char chunk[STREAM_CHUNK]; /* what SRV_SOURCE sends */
};

static int srv_listen(struct srv_conn *lc, enum srv_kind kind, int ep)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof sa;
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 4096) < 0)
		die("bind/listen");
	if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		die("getsockname");
	lc->fd = fd;
	lc->kind = (uint8_t)kind;
	ep_ctl(ep, EPOLL_CTL_ADD, fd, EPOLLIN, lc);
	return ntohs(sa.sin_port);
}

static void srv_close(struct srv *s, struct srv_conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	close(c->fd);
	free(c);
}

static void srv_close_all(struct srv *s)
{
	while (s->conns)
		srv_close(s, s->conns);
}

static void srv_accept(struct srv *s, struct srv_conn *lc)
{
	for (int i = 0; i < 64; i++) {
		int fd = accept4(lc->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED) {
				fprintf(stderr, "socks_load: accept: %s\n", strerror(errno));
				atomic_fetch_add(&s->errors, 1);
			}
			return;
		}
		struct srv_conn *c = calloc(1, sizeof *c);
		if (!c)
			die("calloc");
		c->fd = fd;
		c->kind = (uint8_t)(lc->kind - SRV_LISTEN_ECHO + SRV_ECHO);
		c->next = s->conns;
		if (s->conns)
			s->conns->prev = c;
		s->conns = c;
		ep_ctl(s->ep, EPOLL_CTL_ADD, fd, EPOLLIN, c);
	}
}

static bool srv_send_all(struct srv *s, int fd, const void *p, size_t n)
{
	ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

	if (w == (ssize_t)n)
		return true;
	/* Replies are tiny and the reverse path is idle: a short write means the
	 * peer is gone or misbehaving. */
	if (w >= 0 || (errno != EPIPE && errno != ECONNRESET))
		atomic_fetch_add(&s->errors, 1);
	return false;
}

static void srv_on_echo(struct srv *s, struct srv_conn *c)
{
	ssize_t n = recv(c->fd, s->buf, s->payload - c->echoed, 0);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0 || !srv_send_all(s, c->fd, s->buf, (size_t)n)) {
		srv_close(s, c);
		return;
	}
	c->echoed += (uint32_t)n;
	/* Closing first leaves TIME_WAIT on this side, so the loader's ephemeral
	 * ports stay free however many connections per second it makes. */
	if (c->echoed >= s->payload)
		srv_close(s, c);
}

static void srv_on_sink(struct srv *s, struct srv_conn *c)
{
	for (int i = 0; i < 16; i++) {
		ssize_t n;
		if (c->hdr_got < 8) {
			n = recv(c->fd, c->hdr + c->hdr_got, 8u - c->hdr_got, 0);
			if (n > 0) {
				c->hdr_got += (uint8_t)n;
				for (int k = 0; c->hdr_got == 8 && k < 8; k++)
					c->want = c->want << 8 | c->hdr[k];
				continue;
			}
		} else {
			/* One byte past the announced length is enough to see an
			 * error. The bytes are copied out, as a real destination
			 * would (MSG_TRUNC would make "direct" one copy cheaper
			 * than any application). */
			uint64_t room = c->want - c->got + 1;
			if (room > SINK_READ)
				room = SINK_READ;
			n = recv(c->fd, s->buf, (size_t)room, 0);
			if (n > 0) {
				c->got += (uint64_t)n;
				atomic_fetch_add(&s->sink_bytes, (uint64_t)n);
				if (c->got > c->want) {
					fprintf(stderr,
						"socks_load: sink got more than announced\n");
					atomic_fetch_add(&s->errors, 1);
					srv_close(s, c);
					return;
				}
				if (c->got == c->want)
					atomic_fetch_add(&s->sink_complete, 1);
				continue;
			}
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		srv_close(s, c); /* EOF or error: the client decides what it means */
		return;
	}
}

/* The download direction: read the 8-byte length, write that many bytes as
 * fast as the socket takes them, then half-close and wait for the client's
 * close. */
static void srv_on_source(struct srv *s, struct srv_conn *c)
{
	if (c->hdr_got < 8 || c->got == c->want) {
		ssize_t n =
		    recv(c->fd, c->hdr_got < 8 ? (void *)(c->hdr + c->hdr_got) : (void *)s->buf,
			 c->hdr_got < 8 ? 8u - c->hdr_got : 4096, 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0 || c->hdr_got == 8) {
			srv_close(s, c); /* EOF, or bytes nobody asked for */
			return;
		}
		c->hdr_got += (uint8_t)n;
		if (c->hdr_got < 8)
			return;
		for (int k = 0; k < 8; k++)
			c->want = c->want << 8 | c->hdr[k];
		ep_ctl(s->ep, EPOLL_CTL_MOD, c->fd, EPOLLOUT, c);
	}
	while (c->got < c->want) {
		uint64_t left = c->want - c->got;
		ssize_t w = send(c->fd, s->chunk, left < STREAM_CHUNK ? (size_t)left : STREAM_CHUNK,
				 MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			srv_close(s, c); /* the client decides what it means */
			return;
		}
		c->got += (uint64_t)w;
		atomic_fetch_add(&s->sink_bytes, (uint64_t)w);
	}
	shutdown(c->fd, SHUT_WR);
	ep_ctl(s->ep, EPOLL_CTL_MOD, c->fd, EPOLLIN, c);
}

static void srv_on_hold(struct srv *s, struct srv_conn *c)
{
	ssize_t n = recv(c->fd, s->buf, 4096, 0);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0 || !srv_send_all(s, c->fd, s->buf, (size_t)n))
		srv_close(s, c);
}

static void srv_run(struct srv *s, uint64_t end)
{
	struct epoll_event evs[256];

	while (!got_term && !atomic_load(&s->stop) && now_us() < end) {
		int n = epoll_wait(s->ep, evs, 256, 50);
		if (n < 0 && errno != EINTR)
			die("epoll_wait");
		for (int i = 0; i < n; i++) {
			struct srv_conn *c = evs[i].data.ptr;
			switch (c->kind) {
			case SRV_LISTEN_ECHO:
			case SRV_LISTEN_SINK:
			case SRV_LISTEN_HOLD:
			case SRV_LISTEN_SOURCE:
				srv_accept(s, c);
				break;
			case SRV_ECHO:
				srv_on_echo(s, c);
				break;
			case SRV_SINK:
				srv_on_sink(s, c);
				break;
			case SRV_HOLD:
				srv_on_hold(s, c);
				break;
			case SRV_SOURCE:
				srv_on_source(s, c);
				break;
			}
		}
	}
}

static int cmd_serve(size_t payload, unsigned max_s)
{
	static struct srv s;
	struct srv_conn ls[2];

	s.payload = payload;
	s.ep = epoll_create1(EPOLL_CLOEXEC);
	if (s.ep < 0)
		die("epoll_create1");
	int pe = srv_listen(&ls[0], SRV_LISTEN_ECHO, s.ep);
	int ph = srv_listen(&ls[1], SRV_LISTEN_HOLD, s.ep);
	printf("READY echo=%d hold=%d\n", pe, ph);
	fflush(stdout);
	srv_run(&s, now_us() + (uint64_t)max_s * 1000000u);
	srv_close_all(&s);
	uint64_t errors = atomic_load(&s.errors);
	fprintf(stderr, "socks_load serve: exiting errors=%" PRIu64 "\n", errors);
	return errors ? 1 : 0;
}

/* ---- client side: shared SOCKS5 handshake ---- */

enum err_kind {
	ERR_CONNECT, /* connect() to the proxy or destination failed */
	ERR_PROTO,   /* malformed greeting or reply, unexpected bytes */
	ERR_REP,     /* a well-formed reply with REP != 0 */
	ERR_DATA,    /* echoed payload or acknowledged count wrong */
	ERR_EOF,     /* peer closed early */
	ERR_RESET,   /* read or write error (ECONNRESET, ...) */
	ERR_TIMEOUT, /* no progress for PROGRESS_TIMEOUT_US */
	ERR_COUNT
};

static const char *const err_names[ERR_COUNT] = {"connect", "proto", "rep",    "data",
						 "eof",	    "reset", "timeout"};

struct stats {
	uint64_t err[ERR_COUNT];
	uint64_t rep_codes[256];
};

static uint64_t stats_errors(const struct stats *st)
{
	uint64_t n = 0;
	for (int i = 0; i < ERR_COUNT; i++)
		n += st->err[i];
	return n;
}

static void stats_print(const struct stats *st)
{
	printf(" errors=%" PRIu64, stats_errors(st));
	for (int i = 0; i < ERR_COUNT; i++)
		printf(" err_%s=%" PRIu64, err_names[i], st->err[i]);
	printf(" rep_codes=");
	bool any = false;
	for (int i = 1; i < 256; i++) {
		if (st->rep_codes[i]) {
			printf("%s%d:%" PRIu64, any ? "," : "", i, st->rep_codes[i]);
			any = true;
		}
	}
	if (!any)
		printf("none");
}

/* Where a SOCKS client stands in its handshake. */
enum hs_state { HS_CONNECTING, HS_GREETING, HS_REPLY, HS_DONE };

struct hs {
	int fd;
	enum hs_state st;
	uint64_t t_start, t_req, t_progress;
	uint32_t latency_us; /* connect time (direct) or CONNECT-to-reply */
	size_t in_len;
	uint8_t in[MAX_PAYLOAD + 64];
};

struct client_cfg {
	bool direct;
	struct sockaddr_in proxy, dest;
};

/* @return 0 when the connect is under way, -errno when it failed. */
static int hs_start(struct hs *h, const struct client_cfg *cfg, int ep, void *ptr, uint64_t now)
{
	const struct sockaddr_in *to = cfg->direct ? &cfg->dest : &cfg->proxy;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)to, sizeof *to) < 0 && errno != EINPROGRESS) {
		int e = -errno;
		close(fd);
		return e;
	}
	h->fd = fd;
	h->st = HS_CONNECTING;
	h->t_start = h->t_progress = now;
	h->in_len = 0;
	ep_ctl(ep, EPOLL_CTL_ADD, fd, EPOLLOUT, ptr);
	return 0;
}

static bool hs_write(struct hs *h, const void *p, size_t n, struct stats *st)
{
	ssize_t w = send(h->fd, p, n, MSG_NOSIGNAL);

	if (w == (ssize_t)n)
		return true;
	st->err[w >= 0 ? ERR_PROTO : ERR_RESET]++;
	return false;
}

/* Read what is there into h->in. @return bytes read, 0 on EOF (counted as
 * an error unless eof_ok), -1 on EAGAIN, -2 on an error (counted). */
static ssize_t hs_read(struct hs *h, struct stats *st, bool eof_ok)
{
	ssize_t n = recv(h->fd, h->in + h->in_len, sizeof h->in - h->in_len, 0);

	if (n > 0) {
		h->in_len += (size_t)n;
		return n;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return -1;
	if (n == 0) {
		if (!eof_ok)
			st->err[ERR_EOF]++;
		return 0;
	}
	st->err[ERR_RESET]++;
	return -2;
}

static void hs_consume(struct hs *h, size_t n)
{
	memmove(h->in, h->in + n, h->in_len - n);
	h->in_len -= n;
}

/* Drive the handshake on an event. @return 1 when it has just completed
 * (h->latency_us set), 0 to wait for more, -1 when it failed (counted; the
 * caller closes). */
static int hs_on_event(struct hs *h, const struct client_cfg *cfg, int ep, void *ptr,
		       struct stats *st, uint64_t now)
{
	if (h->st == HS_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof err;
		getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			st->err[ERR_CONNECT]++;
			return -1;
		}
		ep_ctl(ep, EPOLL_CTL_MOD, h->fd, EPOLLIN, ptr);
		h->t_progress = now;
		if (cfg->direct) {
			h->latency_us = (uint32_t)(now - h->t_start);
			h->st = HS_DONE;
			return 1;
		}
		static const uint8_t greeting[3] = {5, 1, 0};
		if (!hs_write(h, greeting, sizeof greeting, st))
			return -1;
		h->st = HS_GREETING;
		return 0;
	}
	ssize_t n = hs_read(h, st, false);
	if (n == -1)
		return 0;
	if (n <= 0)
		return -1;
	h->t_progress = now;
	if (h->st == HS_GREETING) {
		if (h->in_len < 2)
			return 0;
		if (h->in[0] != 5 || h->in[1] != 0 || h->in_len != 2) {
			st->err[ERR_PROTO]++;
			return -1;
		}
		hs_consume(h, 2);
		uint8_t req[10] = {5, 1, 0, 1};
		memcpy(req + 4, &cfg->dest.sin_addr, 4);
		memcpy(req + 8, &cfg->dest.sin_port, 2);
		/* Before send(): on loopback the proxy may run and reply before
		 * send() returns to us (wake-up preemption on the same CPU). */
		h->t_req = now_us();
		if (!hs_write(h, req, sizeof req, st))
			return -1;
		h->st = HS_REPLY;
		return 0;
	}
	/* HS_REPLY: VER REP RSV ATYP BND.ADDR BND.PORT */
	if (h->in_len < 5)
		return 0;
	size_t need;
	switch (h->in[3]) {
	case 1:
		need = 10;
		break;
	case 4:
		need = 22;
		break;
	case 3:
		need = 7u + h->in[4];
		break;
	default:
		st->err[ERR_PROTO]++;
		return -1;
	}
	if (h->in_len < need)
		return 0;
	if (h->in[0] != 5 || h->in[2] != 0) {
		st->err[ERR_PROTO]++;
		return -1;
	}
	if (h->in[1] != 0) {
		st->err[ERR_REP]++;
		st->rep_codes[h->in[1]]++;
		return -1;
	}
	/* The destination speaks only when spoken to: nothing may follow. */
	if (h->in_len != need) {
		st->err[ERR_PROTO]++;
		return -1;
	}
	h->in_len = 0;
	h->latency_us = (uint32_t)(now - h->t_req);
	h->st = HS_DONE;
	return 1;
}

static void hs_close(struct hs *h)
{
	if (h->fd >= 0)
		close(h->fd); /* close() also drops it from the epoll set */
	h->fd = -1;
}

/* ---- cps ---- */

enum cps_state { CPS_BACKOFF, CPS_HANDSHAKE, CPS_PAYLOAD, CPS_EOF };

struct cps_worker {
	struct hs hs;
	enum cps_state st;
	uint32_t seq;
	uint32_t id;
	uint64_t retry_at;
	uint8_t sent[MAX_PAYLOAD];
};

struct samples {
	uint32_t *v;
	size_t n, cap;
};

static void samples_add(struct samples *s, uint32_t x)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 65536;
		s->v = realloc(s->v, s->cap * sizeof *s->v);
		if (!s->v)
			die("realloc");
	}
	s->v[s->n++] = x;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static uint32_t samples_pct(const struct samples *s, double p)
{
	if (!s->n)
		return 0;
	size_t i = (size_t)(p * (double)(s->n - 1) + 0.5);
	return s->v[i];
}

static void cps_begin(struct cps_worker *w, const struct client_cfg *cfg, int ep, struct stats *st,
		      uint64_t now)
{
	int rc = hs_start(&w->hs, cfg, ep, w, now);
	if (rc < 0) {
		st->err[ERR_CONNECT]++;
		w->hs.fd = -1;
		w->st = CPS_BACKOFF;
		w->retry_at = now + 1000; /* do not spin on EADDRNOTAVAIL and the like */
		return;
	}
	w->st = CPS_HANDSHAKE;
}

static int cmd_cps(const struct client_cfg *cfg, unsigned workers, double warmup_s, double dur_s,
		   size_t payload)
{
	struct stats st = {0};
	struct samples lat = {0};
	struct cps_worker *ws = calloc(workers, sizeof *ws);
	struct epoll_event evs[256];
	uint64_t completed = 0, completed_total = 0;
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (!ws || ep < 0)
		die("setup");
	uint64_t cpu0 = cpu_us();
	uint64_t t0 = now_us();
	uint64_t t_warm = t0 + (uint64_t)(warmup_s * 1e6);
	uint64_t t_end = t_warm + (uint64_t)(dur_s * 1e6);
	for (unsigned i = 0; i < workers; i++) {
		ws[i].id = i;
		cps_begin(&ws[i], cfg, ep, &st, t0);
	}
	uint64_t next_scan = t0;
	for (;;) {
		uint64_t now = now_us();
		if (now >= t_end || got_term)
			break;
		int n = epoll_wait(ep, evs, 256, 5);
		if (n < 0 && errno != EINTR)
			die("epoll_wait");
		now = now_us();
		for (int i = 0; i < n; i++) {
			struct cps_worker *w = evs[i].data.ptr;
			bool done = false, fail = false;
			if (w->st == CPS_HANDSHAKE) {
				bool connecting = w->hs.st == HS_CONNECTING;
				int rc = hs_on_event(&w->hs, cfg, ep, w, &st, now);
				if (rc < 0 && connecting) {
					/* Refused: wait as after a synchronous failure. */
					hs_close(&w->hs);
					w->st = CPS_BACKOFF;
					w->retry_at = now + 1000;
					continue;
				}
				if (rc < 0) {
					fail = true;
				} else if (rc == 1) {
					w->seq++;
					for (size_t k = 0; k < payload; k++)
						w->sent[k] =
						    (uint8_t)(w->id * 131u + w->seq * 7u + k);
					if (!hs_write(&w->hs, w->sent, payload, &st))
						fail = true;
					else
						w->st = CPS_PAYLOAD;
				}
			} else if (w->st == CPS_PAYLOAD) {
				ssize_t r = hs_read(&w->hs, &st, false);
				if (r == 0 || r == -2) {
					fail = true;
				} else if (r > 0) {
					w->hs.t_progress = now;
					if (w->hs.in_len > payload ||
					    memcmp(w->hs.in, w->sent, w->hs.in_len) != 0) {
						st.err[ERR_DATA]++;
						fail = true;
					} else if (w->hs.in_len == payload) {
						w->hs.in_len = 0;
						w->st = CPS_EOF;
					}
				}
			} else if (w->st == CPS_EOF) {
				ssize_t r = hs_read(&w->hs, &st, true);
				if (r > 0) {
					st.err[ERR_DATA]++;
					fail = true;
				} else if (r == 0) {
					done = true;
				} else if (r == -2) {
					fail = true;
				}
			}
			if (done) {
				completed_total++;
				if (now >= t_warm) {
					completed++;
					samples_add(&lat, w->hs.latency_us);
				}
			}
			if (done || fail) {
				hs_close(&w->hs);
				cps_begin(w, cfg, ep, &st, now);
			}
		}
		if (now >= next_scan) {
			next_scan = now + 10000;
			for (unsigned i = 0; i < workers; i++) {
				struct cps_worker *w = &ws[i];
				if (w->st == CPS_BACKOFF) {
					if (now >= w->retry_at)
						cps_begin(w, cfg, ep, &st, now);
				} else if (now - w->hs.t_progress > PROGRESS_TIMEOUT_US) {
					st.err[ERR_TIMEOUT]++;
					hs_close(&w->hs);
					cps_begin(w, cfg, ep, &st, now);
				}
			}
		}
	}
	uint64_t t_stop = now_us();
	for (unsigned i = 0; i < workers; i++)
		hs_close(&ws[i].hs);
	if (lat.n)
		qsort(lat.v, lat.n, sizeof *lat.v, cmp_u32);
	double measured_s = (double)(t_stop - t_warm) / 1e6;
	printf("RESULT mode=cps target=%s workers=%u duration_s=%.2f ok=%" PRIu64
	       " ok_total=%" PRIu64 " cps=%.0f p50_us=%u p99_us=%u cpu_us=%" PRIu64,
	       cfg->direct ? "direct" : "proxy", workers, measured_s, completed, completed_total,
	       (double)completed / measured_s, samples_pct(&lat, 0.50), samples_pct(&lat, 0.99),
	       cpu_us() - cpu0);
	stats_print(&st);
	printf("\n");
	free(lat.v);
	free(ws);
	close(ep);
	return stats_errors(&st) ? 1 : 0;
}

/* ---- stream ---- */

enum stream_state { ST_HANDSHAKE, ST_READY, ST_SENDING, ST_SENT, ST_FAILED };

struct stream {
	struct hs hs;
	enum stream_state st;
	uint64_t want, sent;
	uint64_t got; /* down: bytes arrived here */
	size_t hdr_sent;
	uint8_t hdr[8];
};

static void stream_fail(struct stream *s)
{
	hs_close(&s->hs);
	s->st = ST_FAILED;
}

/* Write until the socket is full or the announced length is out. */
static void stream_push(struct stream *s, const uint8_t *chunk, int ep, struct stats *st)
{
	while (s->hdr_sent < 8) {
		ssize_t w = send(s->hs.fd, s->hdr + s->hdr_sent, 8 - s->hdr_sent, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EAGAIN)
				return;
			st->err[ERR_RESET]++;
			stream_fail(s);
			return;
		}
		s->hdr_sent += (size_t)w;
	}
	while (s->sent < s->want) {
		uint64_t left = s->want - s->sent;
		ssize_t w = send(s->hs.fd, chunk, left < STREAM_CHUNK ? (size_t)left : STREAM_CHUNK,
				 MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EAGAIN)
				return;
			st->err[ERR_RESET]++;
			stream_fail(s);
			return;
		}
		s->sent += (uint64_t)w;
	}
	/* All written; the socket stays open until the sink has it all, since
	 * some proxies drop queued bytes when the client closes. */
	s->st = ST_SENT;
	ep_ctl(ep, EPOLL_CTL_MOD, s->hs.fd, EPOLLIN, s);
}

/* The sink never writes: any input is an error, EOF an early close. */
static void stream_on_input(struct stream *s, struct stats *st)
{
	ssize_t r = hs_read(&s->hs, st, false);

	if (r == -1)
		return;
	if (r > 0)
		st->err[ERR_DATA]++;
	stream_fail(s);
}

/* Down: the destination writes, the client counts what arrives. @return
 * true when this stream has all it asked for. */
static bool stream_on_download(struct stream *s, uint8_t *buf, struct stats *st)
{
	for (;;) {
		ssize_t n = recv(s->hs.fd, buf, SINK_READ, 0);
		if (n > 0) {
			s->got += (uint64_t)n;
			if (s->got > s->want) {
				st->err[ERR_DATA]++;
				stream_fail(s);
				return false;
			}
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return s->got == s->want;
		if (n == 0 && s->got == s->want) {
			stream_fail(s); /* done: the source half-closed after the last byte */
			return true;
		}
		st->err[n == 0 ? ERR_EOF : ERR_RESET]++;
		stream_fail(s);
		return false;
	}
}

static void *sink_main(void *arg)
{
	srv_run(arg, UINT64_MAX);
	return NULL;
}

static int cmd_stream(const struct client_cfg *cfg_in, unsigned n_streams, uint64_t total,
		      double max_s, bool down)
{
	static struct srv sink;
	struct srv_conn sink_listen;
	struct client_cfg cfg = *cfg_in;
	struct stats st = {0};
	struct stream *ss = calloc(n_streams, sizeof *ss);
	uint8_t *chunk = malloc(down ? SINK_READ : STREAM_CHUNK);
	struct epoll_event evs[64];
	int ep = epoll_create1(EPOLL_CLOEXEC);
	pthread_t sink_thread;

	if (!ss || !chunk || ep < 0)
		die("setup");
	sink.ep = epoll_create1(EPOLL_CLOEXEC);
	if (sink.ep < 0)
		die("epoll_create1");
	cfg.dest.sin_family = AF_INET;
	cfg.dest.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cfg.dest.sin_port = htons((uint16_t)srv_listen(
	    &sink_listen, down ? SRV_LISTEN_SOURCE : SRV_LISTEN_SINK, sink.ep));
	if (pthread_create(&sink_thread, NULL, sink_main, &sink) != 0)
		die("pthread_create");
	for (size_t i = 0; i < STREAM_CHUNK; i++)
		chunk[i] = sink.chunk[i] = (uint8_t)(i * 7u);
	uint64_t cpu0 = cpu_us();
	uint64_t now = now_us();
	uint64_t t_setup_end = now + PROGRESS_TIMEOUT_US;
	for (unsigned i = 0; i < n_streams; i++) {
		struct stream *s = &ss[i];
		s->want = total / n_streams;
		for (int k = 0; k < 8; k++)
			s->hdr[k] = (uint8_t)(s->want >> (56 - 8 * k));
		if (hs_start(&s->hs, &cfg, ep, s, now) < 0) {
			st.err[ERR_CONNECT]++;
			s->hs.fd = -1;
			s->st = ST_FAILED;
		}
	}
	/* Handshakes first, so every stream starts pushing at the same t0. */
	unsigned ready = 0, failed = 0;
	while (ready + failed < n_streams && !got_term) {
		if (now_us() > t_setup_end) {
			for (unsigned i = 0; i < n_streams; i++) {
				if (ss[i].st == ST_HANDSHAKE) {
					st.err[ERR_TIMEOUT]++;
					stream_fail(&ss[i]);
				}
			}
			break;
		}
		int n = epoll_wait(ep, evs, 64, 10);
		now = now_us();
		for (int i = 0; i < n; i++) {
			struct stream *s = evs[i].data.ptr;
			if (s->st != ST_HANDSHAKE)
				continue;
			int rc = hs_on_event(&s->hs, &cfg, ep, s, &st, now);
			if (rc < 0)
				stream_fail(s);
			else if (rc == 1)
				s->st = ST_READY;
		}
		ready = failed = 0;
		for (unsigned i = 0; i < n_streams; i++) {
			ready += ss[i].st == ST_READY;
			failed += ss[i].st == ST_FAILED;
		}
	}
	uint64_t started = 0, down_complete = 0;
	uint64_t t0 = now_us();
	uint64_t t_end = t0 + (uint64_t)(max_s * 1e6);
	for (unsigned i = 0; i < n_streams; i++) {
		if (ss[i].st != ST_READY)
			continue;
		started++;
		if (!down) {
			ss[i].st = ST_SENDING;
			ep_ctl(ep, EPOLL_CTL_MOD, ss[i].hs.fd, EPOLLIN | EPOLLOUT, &ss[i]);
		} else if (hs_write(&ss[i].hs, ss[i].hdr, 8, &st)) {
			/* Down: the header asks the source for `want` bytes. */
			ss[i].st = ST_SENT;
		} else {
			stream_fail(&ss[i]);
		}
	}
	bool timed_out = false;
	uint64_t t_stop;
	for (;;) {
		now = now_us();
		if ((down ? down_complete : atomic_load(&sink.sink_complete)) >= started ||
		    got_term) {
			t_stop = now;
			break;
		}
		if (now >= t_end) {
			t_stop = now;
			timed_out = true;
			break;
		}
		unsigned live = 0;
		for (unsigned i = 0; i < n_streams; i++)
			live += ss[i].st == ST_SENDING || ss[i].st == ST_SENT;
		if (!live) {
			/* Every stream failed: whatever the sink has is all there is. */
			t_stop = now;
			break;
		}
		int n = epoll_wait(ep, evs, 64, 1);
		for (int i = 0; i < n; i++) {
			struct stream *s = evs[i].data.ptr;
			if (s->st != ST_SENDING && s->st != ST_SENT)
				continue;
			if (down) {
				if (stream_on_download(s, chunk, &st))
					down_complete++;
				continue;
			}
			if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				stream_on_input(s, &st);
			if (s->st == ST_SENDING && (evs[i].events & EPOLLOUT))
				stream_push(s, chunk, ep, &st);
		}
	}
	uint64_t got = atomic_load(&sink.sink_bytes); /* data only, headers not counted */
	unsigned complete = (unsigned)atomic_load(&sink.sink_complete);
	uint64_t sent = 0;
	for (unsigned i = 0; i < n_streams; i++)
		sent += ss[i].sent;
	if (down) {
		/* The source counted what it sent; what arrived is counted here. */
		sent = got;
		got = 0;
		for (unsigned i = 0; i < n_streams; i++)
			got += ss[i].got;
		complete = (unsigned)down_complete;
	}
	atomic_store(&sink.stop, true);
	pthread_join(sink_thread, NULL);
	srv_close_all(&sink);
	close(sink_listen.fd);
	close(sink.ep);
	for (unsigned i = 0; i < n_streams; i++)
		hs_close(&ss[i].hs);
	if (got > sent)
		st.err[ERR_DATA]++;
	if (got == 0 && !stats_errors(&st))
		st.err[ERR_TIMEOUT]++; /* nothing got through: a stall, not a result */
	st.err[ERR_DATA] += atomic_load(&sink.errors);
	double secs = (double)(t_stop - t0) / 1e6;
	printf("RESULT mode=stream dir=%s target=%s streams=%u bytes=%" PRIu64
	       " seconds=%.3f mbps=%.1f complete=%u limit=%s cpu_us=%" PRIu64,
	       down ? "down" : "up", cfg.direct ? "direct" : "proxy", n_streams, got, secs,
	       secs > 0 ? (double)got / secs / 1e6 : 0.0, complete,
	       !started	   ? "none"
	       : timed_out ? "time"
			   : "bytes",
	       cpu_us() - cpu0);
	stats_print(&st);
	printf("\n");
	free(ss);
	free(chunk);
	close(ep);
	return stats_errors(&st) ? 1 : 0;
}

/* ---- idle ---- */

enum idle_state { ID_FREE, ID_HANDSHAKE, ID_PING, ID_IDLE, ID_PONG_WAIT, ID_ALIVE, ID_DEAD };

struct idle_conn {
	struct hs hs;
	enum idle_state st;
};

static int cmd_idle(const struct client_cfg *cfg, unsigned total, unsigned concurrency,
		    unsigned hold_s)
{
	struct stats st = {0};
	struct idle_conn *cs = calloc(total, sizeof *cs);
	struct epoll_event evs[256];
	int ep = epoll_create1(EPOLL_CLOEXEC);
	unsigned next = 0, in_flight = 0, opened = 0, failed = 0;
	uint64_t dropped = 0, next_scan = 0;

	if (!cs || ep < 0)
		die("setup");
	for (unsigned i = 0; i < total; i++)
		cs[i].hs.fd = -1;
	uint64_t t0 = now_us();
	while (opened + failed < total && !got_term) {
		uint64_t now = now_us();
		while (in_flight < concurrency && next < total) {
			struct idle_conn *c = &cs[next++];
			if (hs_start(&c->hs, cfg, ep, c, now) < 0) {
				st.err[ERR_CONNECT]++;
				c->st = ID_DEAD;
				failed++;
				continue;
			}
			c->st = ID_HANDSHAKE;
			in_flight++;
		}
		int n = epoll_wait(ep, evs, 256, 10);
		now = now_us();
		for (int i = 0; i < n; i++) {
			struct idle_conn *c = evs[i].data.ptr;
			int rc = 0;
			if (c->st == ID_HANDSHAKE) {
				rc = hs_on_event(&c->hs, cfg, ep, c, &st, now);
				if (rc == 1) {
					/* One byte each way proves the relay is up. */
					rc = hs_write(&c->hs, "p", 1, &st) ? 0 : -1;
					c->st = ID_PING;
				}
			} else if (c->st == ID_PING) {
				ssize_t r = hs_read(&c->hs, &st, false);
				if (r == 0 || r == -2) {
					rc = -1;
				} else if (r > 0) {
					if (c->hs.in_len != 1 || c->hs.in[0] != 'p') {
						st.err[ERR_DATA]++;
						rc = -1;
					} else {
						c->hs.in_len = 0;
						c->st = ID_IDLE;
						in_flight--;
						opened++;
					}
				}
			} else if (c->st == ID_IDLE) {
				/* The proxy closed or wrote on an idle connection. */
				dropped++;
				hs_close(&c->hs);
				c->st = ID_DEAD;
			}
			if (rc < 0) {
				hs_close(&c->hs);
				c->st = ID_DEAD;
				in_flight--;
				failed++;
			}
		}
		if (now < next_scan)
			continue;
		next_scan = now + 100000;
		for (unsigned i = 0; i < next; i++) {
			struct idle_conn *c = &cs[i];
			if ((c->st == ID_HANDSHAKE || c->st == ID_PING) &&
			    now - c->hs.t_progress > PROGRESS_TIMEOUT_US) {
				st.err[ERR_TIMEOUT]++;
				hs_close(&c->hs);
				c->st = ID_DEAD;
				in_flight--;
				failed++;
			}
		}
	}
	printf("RESULT mode=idle target=proxy requested=%u opened=%u seconds=%.2f", total, opened,
	       (double)(now_us() - t0) / 1e6);
	stats_print(&st);
	printf("\n");
	fflush(stdout);

	/* Hold until told to check (SIGUSR1), told to stop, or hold_s is up. */
	uint64_t t_hold_end = now_us() + (uint64_t)hold_s * 1000000u;
	while (!got_usr1 && !got_term && now_us() < t_hold_end) {
		int n = epoll_wait(ep, evs, 256, 100);
		for (int i = 0; i < n; i++) {
			struct idle_conn *c = evs[i].data.ptr;
			if (c->st == ID_IDLE) {
				dropped++;
				hs_close(&c->hs);
				c->st = ID_DEAD;
			}
		}
	}
	int rc = stats_errors(&st) || opened < total ? 1 : 0;
	if (got_usr1) {
		unsigned waiting = 0, alive = 0, dead = 0;
		for (unsigned i = 0; i < total; i++) {
			struct idle_conn *c = &cs[i];
			if (c->st != ID_IDLE)
				continue;
			if (hs_write(&c->hs, "q", 1, &st)) {
				c->st = ID_PONG_WAIT;
				c->hs.t_progress = now_us();
				waiting++;
			} else {
				hs_close(&c->hs);
				c->st = ID_DEAD;
				dead++;
			}
		}
		uint64_t t_check_end = now_us() + PROGRESS_TIMEOUT_US;
		while (waiting && !got_term && now_us() < t_check_end) {
			int n = epoll_wait(ep, evs, 256, 100);
			for (int i = 0; i < n; i++) {
				struct idle_conn *c = evs[i].data.ptr;
				if (c->st != ID_PONG_WAIT)
					continue;
				ssize_t r = hs_read(&c->hs, &st, false);
				if (r == -1)
					continue;
				waiting--;
				if (r == 1 && c->hs.in[0] == 'q') {
					c->st = ID_ALIVE;
					alive++;
				} else {
					c->st = ID_DEAD;
					dead++;
				}
				hs_close(&c->hs);
			}
		}
		dead += waiting;
		printf("ALIVE alive=%u dead=%u dropped_while_idle=%" PRIu64 "\n", alive, dead,
		       dropped);
		if (dead || dropped)
			rc = 1;
	}
	for (unsigned i = 0; i < total; i++)
		hs_close(&cs[i].hs);
	free(cs);
	close(ep);
	return rc;
}

/* ---- main ---- */

static void usage(void)
{
	fprintf(stderr,
		"usage: socks_load serve  [-p PAYLOAD] [-t MAX_S]\n"
		"       socks_load cps    [-x PROXY] -d HOST:PORT [-c WORKERS] [-w WARMUP_S] [-t "
		"SECONDS] [-p PAYLOAD]\n"
		"       socks_load stream [-x PROXY] [-c STREAMS] [-b BYTES] [-t MAX_S] [-r]\n"
		"       socks_load idle    -x PROXY  -d HOST:PORT [-n CONNS] [-c CONCURRENCY] [-t "
		"HOLD_S]\n"
		"PROXY and HOST are IPv4 literals; without -x the client connects directly.\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct client_cfg cfg = {.direct = true};
	const char *mode;
	bool have_dest = false, down = false;
	unsigned conc = 0, conns = 10000;
	double secs = -1, warmup = 1;
	size_t payload = 64;
	uint64_t bytes = 1ull << 30;
	int opt;

	if (argc < 2)
		usage();
	mode = argv[1];
	optind = 2;
	while ((opt = getopt(argc, argv, "x:d:c:w:t:p:b:n:r")) != -1) {
		switch (opt) {
		case 'x':
			if (parse_hostport(optarg, &cfg.proxy) < 0)
				usage();
			cfg.direct = false;
			break;
		case 'd':
			if (parse_hostport(optarg, &cfg.dest) < 0)
				usage();
			have_dest = true;
			break;
		case 'c':
			conc = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'w':
			warmup = strtod(optarg, NULL);
			break;
		case 't':
			secs = strtod(optarg, NULL);
			break;
		case 'p':
			payload = strtoul(optarg, NULL, 10);
			break;
		case 'b':
			bytes = strtoull(optarg, NULL, 10);
			break;
		case 'n':
			conns = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'r':
			down = true;
			break;
		default:
			usage();
		}
	}
	if (payload == 0 || payload > MAX_PAYLOAD)
		usage();
	raise_nofile();
	install_signals();
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(mode, "serve") == 0)
		return cmd_serve(payload, secs > 0 ? (unsigned)secs : 900);
	if (strcmp(mode, "stream") == 0)
		return cmd_stream(&cfg, conc ? conc : 1, bytes, secs > 0 ? secs : 5, down);
	if (!have_dest)
		usage();
	if (strcmp(mode, "cps") == 0)
		return cmd_cps(&cfg, conc ? conc : 64, warmup, secs > 0 ? secs : 5, payload);
	if (strcmp(mode, "idle") == 0) {
		if (cfg.direct || conns == 0)
			usage();
		return cmd_idle(&cfg, conns, conc ? conc : 128, secs > 0 ? (unsigned)secs : 120);
	}
	usage();
	return 2;
}
