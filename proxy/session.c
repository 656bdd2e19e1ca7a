/* session: one client connection, from greeting to the end of the relay.
 *
 * A session embeds its client handle and timer, and owns at most one
 * outbound attempt at a time. It counts what is still open or pending
 * (handles, DNS and auth requests) in `refs` and frees itself when the last
 * of them has called back. Every callback first checks the state it expects.
 */
#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "auth.h"
#include "egress.h"
#include "log.h"
#include "pool.h"
#include "proxy.h"
#include "socks5.h"
#include "upstream.h"

/* Password hashes checked at once in libuv's threadpool. The pool also runs
 * DNS lookups: clients that have not logged in must not be able to queue
 * enough crypt() calls to starve other clients' lookups. */
#define SESSION_AUTH_PARALLEL 2

/* Destinations tried per request: a domain's first addresses. */
#define SESSION_MAX_DESTS 8
/* Handshake bytes kept: greeting + auth + request, pipelined, plus a little
 * early data. */
#define SESSION_HS_BUF (SOCKS5_GREETING_MAX + SOCKS5_AUTH_MAX + 2 * SOCKS5_REQUEST_MAX + 256)

enum session_state {
	S_GREETING,
	S_AUTH,
	S_AUTH_CHECK,	/* password hash being checked off the loop */
	S_REQUEST,	/* first request, or CONNECT after BIND */
	S_RESOLVING,
	S_CONNECTING,
	S_POOL_WAIT,	/* every source suspended; waiting for the earliest expiry */
	S_RELAY,
	S_CLOSING,
};

struct attempt {
	uv_tcp_t tcp;
	uv_connect_t req;
	struct session *s;
	bool via_proxy;		/* connected to a source's upstream SOCKS5 proxy */
	bool handshaking;	/* upstream handshake under way */
	struct upstream *up;	/* freed in the close callback (upstream.h) */
};

/* One direction of the relay: bytes read from `from` are written to `to`. */
struct half {
	struct session *s;
	uv_stream_t *from;
	uv_stream_t *to;
	bool eof;	/* `from` said EOF */
	bool writing;	/* a uv_write of the remainder is pending on `to` */
	bool shut;	/* shutdown of `to` done */
	bool shutting;
	uint64_t bytes;
	uv_shutdown_t shut_req;
};

struct wreq {
	uv_write_t req;
	struct half *half;
	struct session *s;
	size_t len;
	char data[];
};

/* What only the handshake and the connect phase need. It is freed when the
 * relay starts, so an established connection holds just the session and
 * its outbound handle. */
struct session_hs {
	struct session *s;
	uv_getaddrinfo_t gai;
	uv_work_t auth_work;
	struct sockaddr_storage local;

	uint8_t hs[SESSION_HS_BUF];
	size_t hs_len;
	size_t hs_off;

	bool auth_ok;	/* result of the slow check */
	char user[256];
	char pass[256];
	uint8_t plen;

	struct socks5_request req;
	bool adhoc;		/* BIND to an unlisted address, bind_unlisted = allow */
	struct sockaddr_storage adhoc_addr;

	struct sockaddr_storage dests[SESSION_MAX_DESTS];
	size_t n_dests;
	size_t dest_i;
	struct pool_tried tried;
	uint8_t last_rep;
	uint64_t wait_deadline;
	bool pinned_tried;	/* the pinned source had its go at this destination */
	bool client_eof;	/* client half-closed before the relay began */
	bool saw_candidate;	/* some source could have served the request */
	bool saw_busy;		/* some source was skipped for its cap */
};

struct session {
	struct session *prev, *next;
	struct proxy *px;
	struct proxy_gen *gen;
	uint64_t id;
	enum session_state state;
	unsigned refs;
	uv_tcp_t client;
	uv_timer_t timer;
	struct attempt *out;
	struct session_hs *h;	/* NULL once relaying */
	struct session *auth_prev, *auth_next; /* waiting for a password check */
	bool auth_queued;
	bool client_counted;
	bool authed;
	bool bound;		/* a BIND was answered */
	bool acquired;
	struct sockaddr_storage peer;
	char peer_str[64];
	struct listener *l;	/* outlives every session */
	const char *user_name;	/* the authenticated user, in gen->conf */

	size_t pool;		/* conf pool index this request draws from */
	int pinned;		/* conf source index chosen by BIND or source=same, -1 none */
	struct pool_source *src;	/* source of the current attempt */
	const struct conf_source *cs;
	uint64_t started_ms;
	uint64_t last_active_ms;
	char dest_str[SOCKS5_ADDR_STRLEN];

	enum proxy_result result;
	uint64_t accepted_ns;	/* uv_hrtime() at accept */
	uint64_t request_ns;	/* uv_hrtime() when the CONNECT was parsed */

	struct half up;		/* client -> outbound */
	struct half down;	/* outbound -> client */
};

static void session_close(struct session *s, bool reset);
static void attempt_next(struct session *s);
static void relay_start(struct session *s, const struct sockaddr *bnd, const uint8_t *extra,
			size_t extra_len);
static void src_drop(struct session *s);
static void proxy_failure(struct session *s, int err, const char *why);
static void auth_unqueue(struct session *s);

/* ---- lifetime ---- */

static void session_unref(struct session *s)
{
	struct proxy *px = s->px;

	assert(s->refs > 0);
	if (--s->refs > 0)
		return;
	if (s->prev)
		s->prev->next = s->next;
	else
		px->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	px->n_sessions--;
	px->stats.active--;
	px->stats.total[s->result]++;
	if (s->client_counted)
		proxy_client_remove(px, (struct sockaddr *)&s->peer);
	if (s->acquired)
		pool_source_release(s->src);
	proxy_gen_unref(s->gen);
	if (s->h) {
		explicit_bzero(s->h->pass, sizeof s->h->pass);
		free(s->h);
	}
	free(s);
	proxy_session_gone(px);
}

static void on_handle_closed(uv_handle_t *h)
{
	session_unref(h->data);
}

static void on_attempt_closed(uv_handle_t *h)
{
	struct attempt *a = container_of((uv_tcp_t *)h, struct attempt, tcp);
	struct session *s = a->s;

	free(a->up);
	free(a);
	session_unref(s);
}

/* uv_tcp_close_reset refuses a handle with a shutdown in flight; such a
 * handle is closed plainly (its FIN is on the way anyway). */
static void tcp_close(uv_tcp_t *h, bool reset, uv_close_cb cb)
{
	if (reset && uv_tcp_close_reset(h, cb) == 0)
		return;
	uv_close((uv_handle_t *)h, cb);
}

static void attempt_close(struct session *s, bool reset)
{
	struct attempt *a = s->out;

	if (!a)
		return;
	s->out = NULL;
	if (a->handshaking) {
		upstream_cancel(a->up);
		a->handshaking = false;
	}
	tcp_close(&a->tcp, reset, on_attempt_closed);
}

static void access_log(struct session *s, const char *result)
{
	char src[64] = "-";

	if (!s->gen->conf->server.access_log)
		return;
	if (s->cs)
		snprintf(src, sizeof src, "%s", s->cs->name);
	log_info("access", "id=%llu client=%s user=%s dest=%s source=%s result=%s bytes_up=%llu "
			   "bytes_down=%llu duration_ms=%llu",
		 (unsigned long long)s->id, s->peer_str, s->user_name ? s->user_name : "-",
		 s->dest_str[0] ? s->dest_str : "-", src, result, (unsigned long long)s->up.bytes,
		 (unsigned long long)s->down.bytes,
		 (unsigned long long)(uv_now(s->px->loop) - s->started_ms));
}

static void session_close(struct session *s, bool reset)
{
	enum session_state was = s->state;

	if (was == S_CLOSING)
		return;
	access_log(s, was == S_RELAY ? "done" : proxy_result_name(s->result));
	if (was == S_RELAY)
		s->px->stats.relaying--;
	s->state = S_CLOSING;
	uv_timer_stop(&s->timer);
	if (!uv_is_closing((uv_handle_t *)&s->timer))
		uv_close((uv_handle_t *)&s->timer, on_handle_closed);
	if (!uv_is_closing((uv_handle_t *)&s->client))
		tcp_close(&s->client, reset, on_handle_closed);
	attempt_close(s, reset);
	/* A pending DNS lookup calls back with UV_EAI_CANCELED; a running
	 * password check cannot be stopped and finds S_CLOSING when done. */
	if (was == S_RESOLVING)
		uv_cancel((uv_req_t *)&s->h->gai);
	if (s->auth_queued)
		auth_unqueue(s);
}

void session_close_all(struct proxy *px)
{
	struct session *s = px->sessions;

	while (s) {
		struct session *next = s->next;
		session_close(s, true);
		s = next;
	}
}

/* ---- writing handshake replies ---- */

static void on_reply_written(uv_write_t *req, int status)
{
	struct wreq *w = container_of(req, struct wreq, req);
	struct session *s = w->s;

	free(w);
	if (status < 0)
		session_close(s, true);
	session_unref(s);
}

/* Write a whole handshake reply in one go: Exim reads each reply with one
 * read of exactly its length. */
static int send_bytes(struct session *s, const void *data, size_t len)
{
	uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
	int n = uv_try_write((uv_stream_t *)&s->client, &b, 1);
	struct wreq *w;

	if (n == (int)len)
		return 0;
	if (n < 0 && n != UV_EAGAIN)
		return n;
	if (n < 0)
		n = 0;
	w = malloc(sizeof *w + len - (size_t)n);
	if (!w)
		return UV_ENOMEM;
	w->s = s;
	w->half = NULL;
	w->len = len - (size_t)n;
	memcpy(w->data, (const char *)data + n, w->len);
	b = uv_buf_init(w->data, (unsigned)w->len);
	if (uv_write(&w->req, (uv_stream_t *)&s->client, &b, 1, on_reply_written) < 0) {
		free(w);
		return UV_EPIPE;
	}
	s->refs++;
	return 0;
}

static void reply_and_close(struct session *s, uint8_t rep, const struct sockaddr *bnd)
{
	uint8_t buf[SOCKS5_REPLY_MAX];
	int n = socks5_write_reply_atyp(buf, sizeof buf, rep, s->h->req.dst.atyp, bnd);

	switch (rep) {
	case SOCKS5_REP_NOT_ALLOWED:
		s->result = PROXY_RESULT_NOT_ALLOWED;
		break;
	case SOCKS5_REP_NET_UNREACHABLE:
	case SOCKS5_REP_HOST_UNREACHABLE:
	case SOCKS5_REP_CONN_REFUSED:
	case SOCKS5_REP_TTL_EXPIRED:
		s->result = PROXY_RESULT_DEST;
		break;
	case SOCKS5_REP_GENERAL_FAILURE:
		if (s->result != PROXY_RESULT_EXHAUSTED)
			s->result = PROXY_RESULT_ERROR;
		break;
	default:
		s->result = PROXY_RESULT_HANDSHAKE;
		break;
	}
	log_debug("session", "id=%llu client=%s dest=%s reply=0x%02x (%s)",
		  (unsigned long long)s->id, s->peer_str, s->dest_str[0] ? s->dest_str : "-", rep,
		  socks5_rep_str(rep));
	if (n > 0)
		send_bytes(s, buf, (size_t)n);
	session_close(s, false);
}

/* ---- timers ---- */

static void on_timer(uv_timer_t *t);

static void timer_arm(struct session *s, uint64_t ms)
{
	uv_timer_start(&s->timer, on_timer, ms, 0);
}

static void on_timer(uv_timer_t *t)
{
	struct session *s = container_of(t, struct session, timer);
	uint64_t now = uv_now(s->px->loop);
	const struct conf_server *srv = &s->gen->conf->server;

	switch (s->state) {
	case S_GREETING:
	case S_AUTH:
	case S_AUTH_CHECK:
	case S_REQUEST:
	case S_RESOLVING:
		log_debug("session", "id=%llu client=%s handshake timeout", (unsigned long long)s->id,
			  s->peer_str);
		if (s->state == S_RESOLVING)
			reply_and_close(s, SOCKS5_REP_HOST_UNREACHABLE, NULL);
		else
			session_close(s, false);
		break;
	case S_CONNECTING:
		/* connect_timeout for this attempt: the destination is blamed,
		 * unless it was the source's proxy that did not answer. */
		if (s->out && s->out->via_proxy) {
			attempt_close(s, true);
			proxy_failure(s, UV_ETIMEDOUT, "upstream proxy timed out");
			break;
		}
		attempt_close(s, true);
		s->h->last_rep = SOCKS5_REP_TTL_EXPIRED;
		s->h->dest_i++;
		pool_tried_init(&s->h->tried);
		src_drop(s);
		attempt_next(s);
		break;
	case S_POOL_WAIT:
		s->state = S_CONNECTING;
		proxy_pools_changed(s->px);
		attempt_next(s);
		break;
	case S_RELAY:
		if (srv->idle_timeout_ms == 0)
			break;
		/* The timer is not re-armed on every read; it checks on expiry
		 * how long the connection has really been quiet. */
		if (now - s->last_active_ms >= srv->idle_timeout_ms) {
			log_debug("session", "id=%llu idle timeout", (unsigned long long)s->id);
			session_close(s, false);
		} else {
			timer_arm(s, s->last_active_ms + srv->idle_timeout_ms - now);
		}
		break;
	case S_CLOSING:
		break;
	}
}

/* ---- handshake ---- */

static void on_hs_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct session *s = h->data;

	(void)suggested;
	if (s->state == S_RELAY) {
		*buf = uv_buf_init(s->px->relay_buf, sizeof s->px->relay_buf);
		return;
	}
	*buf = uv_buf_init((char *)s->h->hs + s->h->hs_len, (unsigned)(sizeof s->h->hs - s->h->hs_len));
}

static void handshake_step(struct session *s);

static void on_hs_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct session *s = stream->data;

	(void)buf;
	if (nread == 0)
		return;
	if (s->state == S_CLOSING)
		return;
	if (nread == UV_EOF &&
	    (s->state == S_RESOLVING || s->state == S_CONNECTING || s->state == S_POOL_WAIT)) {
		/* A half-close right behind the request: keep it for the relay. */
		s->h->client_eof = true;
		uv_read_stop(stream);
		return;
	}
	if (nread < 0) {
		session_close(s, nread != UV_EOF);
		return;
	}
	s->h->hs_len += (size_t)nread;
	handshake_step(s);
	if (s->state != S_CLOSING && s->h->hs_len == sizeof s->h->hs && s->state != S_RELAY) {
		/* Nothing we parse is this long; the client is not speaking SOCKS5. */
		uv_read_stop(stream);
		if (s->state == S_GREETING || s->state == S_AUTH || s->state == S_REQUEST)
			session_close(s, false);
	}
}

static bool source_allowed_for(struct session *s, size_t src)
{
	const struct conf *conf = s->gen->conf;
	int u;

	/* A user may only BIND sources of their own pool. */
	if (s->authed && (u = conf_find_user(conf, s->h->user)) >= 0 && conf->users[u].pool) {
		int p = conf_find_pool(conf, conf->users[u].pool);
		return p >= 0 && egress_pool_has(conf, (size_t)p, src);
	}
	return true;
}

static void set_request_pool(struct session *s)
{
	const struct conf *conf = s->gen->conf;
	int u, p = -1;

	if (s->authed && (u = conf_find_user(conf, s->h->user)) >= 0 && conf->users[u].pool)
		p = conf_find_pool(conf, conf->users[u].pool);
	if (p < 0 && s->l->pool)
		p = conf_find_pool(conf, s->l->pool);
	if (p < 0)
		p = conf_find_pool(conf, conf->server.default_pool);
	s->pool = p < 0 ? 0 : (size_t)p;
}

/* Hold source `idx` for this whole session (BIND or source=same): it is
 * refused when suspended or at a cap, and never swapped for another. */
static int pin_source(struct session *s, int idx)
{
	struct pool_source *ps = egress_pool_source(s->gen, (size_t)idx);
	int rc = ps ? pool_source_acquire(ps, uv_now(s->px->loop)) : 0;

	if (rc < 0) {
		log_info("session", "id=%llu client=%s source=%s refused: %s",
			 (unsigned long long)s->id, s->peer_str, s->gen->conf->sources[idx].name,
			 rc == -EAGAIN ? "suspended" : "at its connection or rate cap");
		reply_and_close(s, SOCKS5_REP_GENERAL_FAILURE, NULL);
		return rc;
	}
	s->pinned = idx;
	s->src = ps;
	s->acquired = ps != NULL;
	return 0;
}

/* BIND as KumoMTA uses it: choose the source for the CONNECT that follows. */
static void handle_bind(struct session *s)
{
	const struct conf *conf = s->gen->conf;
	struct sockaddr_storage ss;
	socklen_t slen;
	uint8_t buf[SOCKS5_REPLY_MAX];
	bool wildcard;
	int idx, n, rc;

	if (s->bound) {
		reply_and_close(s, SOCKS5_REP_CMD_NOT_SUPPORTED, NULL);
		return;
	}
	if (s->h->req.dst.atyp == SOCKS5_ATYP_DOMAIN ||
	    socks5_addr_to_sockaddr(&s->h->req.dst, &ss, &slen) < 0 || s->h->req.dst.port != 0) {
		reply_and_close(s, SOCKS5_REP_NOT_ALLOWED, NULL);
		return;
	}
	if (ss.ss_family == AF_INET)
		wildcard = ((struct sockaddr_in *)&ss)->sin_addr.s_addr == 0;
	else
		wildcard = IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&ss)->sin6_addr);

	if (!wildcard) {
		idx = egress_find_source(conf, (struct sockaddr *)&ss);
		if (idx < 0) {
			if (conf->server.bind_unlisted != CONF_BIND_UNLISTED_ALLOW ||
			    (s->authed && !source_allowed_for(s, SIZE_MAX))) {
				log_info("session", "id=%llu client=%s BIND to unlisted address refused",
					 (unsigned long long)s->id, s->peer_str);
				reply_and_close(s, SOCKS5_REP_NOT_ALLOWED, NULL);
				return;
			}
			s->h->adhoc = true;
			s->h->adhoc_addr = ss;
		} else {
			if (!source_allowed_for(s, (size_t)idx)) {
				log_info("session",
					 "id=%llu client=%s user=%s BIND to a source outside the user's pool refused source=%s",
					 (unsigned long long)s->id, s->peer_str, s->user_name,
					 conf->sources[idx].name);
				reply_and_close(s, SOCKS5_REP_NOT_ALLOWED, NULL);
				return;
			}
			if (pin_source(s, idx) < 0)
				return;
		}
		rc = egress_probe_bind((struct sockaddr *)&ss);
		if (rc < 0) {
			log_info("session", "id=%llu client=%s BIND source unusable error=\"%s\"",
				 (unsigned long long)s->id, s->peer_str, strerror(-rc));
			if (s->src && rc == -EADDRNOTAVAIL) {
				pool_report_failure(s->src, POOL_FAILURE_UNPLUMBED, -rc,
						    uv_now(s->px->loop));
				proxy_pools_changed(s->px);
			}
			reply_and_close(s, SOCKS5_REP_GENERAL_FAILURE, NULL);
			return;
		}
		if (s->src)
			pool_report_success(s->src, uv_now(s->px->loop));
	}
	s->bound = true;
	/* BND.ADDR is the address asked for, port 0: the MTA chose the IP. */
	n = socks5_write_reply_atyp(buf, sizeof buf, SOCKS5_REP_SUCCEEDED, s->h->req.dst.atyp,
				    (struct sockaddr *)&ss);
	if (n < 0 || send_bytes(s, buf, (size_t)n) < 0) {
		session_close(s, true);
		return;
	}
	s->state = S_REQUEST;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res);

static void start_connect(struct session *s)
{
	const struct conf *conf = s->gen->conf;
	struct sockaddr_storage ss;
	socklen_t slen;

	socks5_addr_str(&s->h->req.dst, s->dest_str, sizeof s->dest_str);
	uv_timer_stop(&s->timer);
	pool_tried_init(&s->h->tried);
	s->h->n_dests = s->h->dest_i = 0;
	s->h->last_rep = SOCKS5_REP_GENERAL_FAILURE;
	s->h->wait_deadline = uv_now(s->px->loop) + conf->server.connect_timeout_ms;
	if (s->h->req.dst.atyp == SOCKS5_ATYP_DOMAIN) {
		struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
		char port[8];
		int rc;

		snprintf(port, sizeof port, "%u", s->h->req.dst.port);
		s->state = S_RESOLVING;
		timer_arm(s, conf->server.connect_timeout_ms);
		rc = uv_getaddrinfo(s->px->loop, &s->h->gai, on_resolved, s->h->req.dst.u.domain, port,
				    &hints);
		if (rc < 0) {
			reply_and_close(s, SOCKS5_REP_HOST_UNREACHABLE, NULL);
			return;
		}
		s->refs++;
		return;
	}
	socks5_addr_to_sockaddr(&s->h->req.dst, &ss, &slen);
	if (conf_cidr_list_match(&conf->server.deny_destinations, (struct sockaddr *)&ss)) {
		log_info("session", "id=%llu client=%s dest=%s denied by deny_destinations",
			 (unsigned long long)s->id, s->peer_str, s->dest_str);
		reply_and_close(s, SOCKS5_REP_NOT_ALLOWED, NULL);
		return;
	}
	s->h->dests[0] = ss;
	s->h->n_dests = 1;
	s->state = S_CONNECTING;
	attempt_next(s);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct session *s = container_of(req, struct session_hs, gai)->s;
	const struct conf *conf = s->gen->conf;
	bool denied = false;

	if (s->state != S_RESOLVING) {
		uv_freeaddrinfo(res);
		session_unref(s);
		return;
	}
	if (status < 0) {
		log_debug("session", "id=%llu dest=%s resolve failed: %s", (unsigned long long)s->id,
			  s->dest_str, uv_strerror(status));
		reply_and_close(s, SOCKS5_REP_HOST_UNREACHABLE, NULL);
		session_unref(s);
		return;
	}
	for (struct addrinfo *ai = res; ai && s->h->n_dests < SESSION_MAX_DESTS; ai = ai->ai_next) {
		bool dup = false;
		if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
		    ai->ai_addrlen > sizeof(struct sockaddr_storage))
			continue;
		if (conf_cidr_list_match(&conf->server.deny_destinations, ai->ai_addr)) {
			denied = true;
			continue;
		}
		for (size_t i = 0; i < s->h->n_dests && !dup; i++)
			dup = memcmp(&s->h->dests[i], ai->ai_addr, ai->ai_addrlen) == 0;
		if (!dup) {
			memset(&s->h->dests[s->h->n_dests], 0, sizeof s->h->dests[0]);
			memcpy(&s->h->dests[s->h->n_dests++], ai->ai_addr, ai->ai_addrlen);
		}
	}
	uv_freeaddrinfo(res);
	if (s->h->n_dests == 0) {
		reply_and_close(s, denied ? SOCKS5_REP_NOT_ALLOWED : SOCKS5_REP_HOST_UNREACHABLE,
				NULL);
	} else {
		uv_timer_stop(&s->timer);
		s->state = S_CONNECTING;
		attempt_next(s);
	}
	session_unref(s);
}

static void handle_request(struct session *s)
{
	if (s->h->req.cmd == SOCKS5_CMD_BIND) {
		handle_bind(s);
		return;
	}
	if (s->h->req.cmd != SOCKS5_CMD_CONNECT) {
		reply_and_close(s, SOCKS5_REP_CMD_NOT_SUPPORTED, NULL);
		return;
	}
	/* A source=same listener egresses from the address the client reached. */
	if (!s->bound && s->l->source_same) {
		int idx = egress_find_source(s->gen->conf, (struct sockaddr *)&s->h->local);
		if (idx < 0) {
			log_warn("session", "id=%llu source=same: local address is no configured source",
				 (unsigned long long)s->id);
			reply_and_close(s, SOCKS5_REP_NOT_ALLOWED, NULL);
			return;
		}
		if (pin_source(s, idx) < 0)
			return;
	}
	set_request_pool(s);
	s->request_ns = uv_hrtime();
	proxy_hist_observe(&s->px->stats.handshake, (double)(s->request_ns - s->accepted_ns) / 1e6);
	start_connect(s);
}

static void auth_unqueue(struct session *s)
{
	struct proxy *px = s->px;

	if (s->auth_prev)
		s->auth_prev->auth_next = s->auth_next;
	else
		px->auth_wait_head = s->auth_next;
	if (s->auth_next)
		s->auth_next->auth_prev = s->auth_prev;
	else
		px->auth_wait_tail = s->auth_prev;
	s->auth_prev = s->auth_next = NULL;
	s->auth_queued = false;
}

static void on_auth_work(uv_work_t *w);
static void on_auth_work_done(uv_work_t *w, int status);
static void auth_done(struct session *s, bool ok);

/* Run the slow check now if a slot is free, else queue the session. */
static void auth_submit(struct session *s)
{
	struct proxy *px = s->px;

	if (px->auth_running >= SESSION_AUTH_PARALLEL) {
		s->auth_prev = px->auth_wait_tail;
		if (px->auth_wait_tail)
			px->auth_wait_tail->auth_next = s;
		else
			px->auth_wait_head = s;
		px->auth_wait_tail = s;
		s->auth_queued = true;
		return;
	}
	if (uv_queue_work(px->loop, &s->h->auth_work, on_auth_work, on_auth_work_done) < 0) {
		auth_done(s, false);
		return;
	}
	px->auth_running++;
	s->refs++;
}

static void on_auth_work(uv_work_t *w)
{
	struct session *s = container_of(w, struct session_hs, auth_work)->s;

	s->h->auth_ok = auth_verify_slow(s->gen->auth, s->h->user, s->h->pass, s->h->plen) == AUTH_OK;
}

static void auth_done(struct session *s, bool ok)
{
	uint8_t buf[2];

	explicit_bzero(s->h->pass, sizeof s->h->pass);
	if (!ok) {
		s->result = PROXY_RESULT_AUTH;
		log_info("session", "id=%llu client=%s user=%s authentication failed",
			 (unsigned long long)s->id, s->peer_str, s->h->user);
		send_bytes(s, buf, socks5_write_auth_status(buf, false));
		session_close(s, false);
		return;
	}
	s->authed = true;
	int u = conf_find_user(s->gen->conf, s->h->user);
	s->user_name = u >= 0 ? s->gen->conf->users[u].name : NULL;
	if (send_bytes(s, buf, socks5_write_auth_status(buf, true)) < 0) {
		session_close(s, true);
		return;
	}
	s->state = S_REQUEST;
	handshake_step(s);
	/* A full buffer (a pipelined request and early data) is read on once
	 * the relay starts. */
	if (s->state != S_CLOSING && s->h->hs_len < sizeof s->h->hs)
		uv_read_start((uv_stream_t *)&s->client, on_hs_alloc, on_hs_read);
}

static void on_auth_work_done(uv_work_t *w, int status)
{
	struct session *s = container_of(w, struct session_hs, auth_work)->s;
	struct proxy *px = s->px;

	px->auth_running--;
	if (px->auth_wait_head) {
		struct session *next = px->auth_wait_head;
		auth_unqueue(next);
		auth_submit(next);
	}

	if (s->state == S_AUTH_CHECK) {
		if (status == 0 && s->h->auth_ok)
			auth_cache_put(s->gen->auth, s->h->user, s->h->pass, s->h->plen);
		auth_done(s, status == 0 && s->h->auth_ok);
	}
	session_unref(s);
}

/* Parse as many handshake messages as the buffer holds. */
static void handshake_step(struct session *s)
{
	for (;;) {
		const uint8_t *p = s->h->hs + s->h->hs_off;
		size_t len = s->h->hs_len - s->h->hs_off, used = 0;
		uint8_t out[4];
		int r;

		switch (s->state) {
		case S_GREETING: {
			struct socks5_greeting g;
			uint8_t m;

			r = socks5_parse_greeting(p, len, &used, &g);
			if (r == SOCKS5_NEED_MORE)
				return;
			if (r == SOCKS5_ERROR) {
				if (g.err.send_reply)
					send_bytes(s, out, socks5_write_method(out, g.err.code));
				session_close(s, false);
				return;
			}
			s->h->hs_off += used;
			m = socks5_choose_method(&g, s->gen->conf->server.auth == CONF_AUTH_PASSWORD);
			if (send_bytes(s, out, socks5_write_method(out, m)) < 0 ||
			    m == SOCKS5_METHOD_UNACCEPTABLE) {
				session_close(s, false);
				return;
			}
			s->state = m == SOCKS5_METHOD_PASSWORD ? S_AUTH : S_REQUEST;
			break;
		}
		case S_AUTH: {
			struct socks5_auth a;
			int rc;

			r = socks5_parse_auth(p, len, &used, &a);
			if (r == SOCKS5_NEED_MORE)
				return;
			if (r == SOCKS5_ERROR) {
				send_bytes(s, out, socks5_write_auth_status(out, false));
				session_close(s, false);
				return;
			}
			s->h->hs_off += used;
			memcpy(s->h->user, a.user, sizeof s->h->user);
			memcpy(s->h->pass, a.pass, sizeof s->h->pass);
			s->h->plen = a.plen;
			explicit_bzero(&a, sizeof a);
			rc = auth_check_cached(s->gen->auth, s->h->user, s->h->pass, s->h->plen);
			if (rc == AUTH_NEED_SLOW) {
				/* crypt() takes milliseconds by design: keep it off
				 * the loop that serves every other connection. */
				s->state = S_AUTH_CHECK;
				uv_read_stop((uv_stream_t *)&s->client);
				auth_submit(s);
				return;
			}
			auth_done(s, rc == AUTH_OK);
			return;
		}
		case S_REQUEST:
			r = socks5_parse_request(p, len, &used, &s->h->req);
			if (r == SOCKS5_NEED_MORE)
				return;
			if (r == SOCKS5_ERROR) {
				log_debug("session", "id=%llu client=%s bad request: %s",
					  (unsigned long long)s->id, s->peer_str,
					  socks5_fault_str(s->h->req.err.fault));
				reply_and_close(s, s->h->req.err.code, NULL);
				return;
			}
			s->h->hs_off += used;
			handle_request(s);
			if (s->state != S_REQUEST)
				return;
			break; /* CONNECT may follow a BIND in the same packet */
		default:
			return;
		}
	}
}

/* ---- outbound attempts ---- */

static void on_connected(uv_connect_t *req, int status);
static void upstream_begin(struct session *s, struct attempt *a);

/* Give back the acquisition on the current source (not on a pinned one:
 * that is held from BIND to the end of the session). */
static void src_drop(struct session *s)
{
	if (s->acquired && s->pinned < 0) {
		pool_source_release(s->src);
		s->acquired = false;
	}
}

static void source_failure(struct session *s, enum pool_failure kind, int uv_err)
{
	uint64_t now = uv_now(s->px->loop);
	struct pool_source_info info;

	pool_report_failure(s->src, kind, uv_err, now);
	/* A source the failure suspended is skipped by the pool anyway, and
	 * must stay visible to it so that an all-suspended pool answers WAIT. */
	pool_source_get_info(s->src, now, &info);
	if (info.state != POOL_STATE_SUSPENDED && pool_tried_add(&s->h->tried, s->src) == -ENOSPC)
		s->h->dest_i++; /* enough sources tried for this destination */
	src_drop(s);
	proxy_pools_changed(s->px);
}

/* Start one attempt from `cs` (pool source `ps`, may be NULL for an ad hoc
 * BIND address) to the current destination.
 * @return 0 (attempt under way) or a libuv error; *blame says whose. */
static int attempt_start(struct session *s, enum egress_blame *blame)
{
	const struct sockaddr *dest = (struct sockaddr *)&s->h->dests[s->h->dest_i];
	const struct sockaddr *target = dest;
	const struct conf_server *srv = &s->gen->conf->server;
	bool via_proxy = s->cs && s->cs->kind == CONF_SOURCE_PROXY;
	struct attempt *a;
	const void *key = NULL;
	size_t keylen = 0;
	int rc;

	*blame = EGRESS_BLAME_LOCAL;
	a = calloc(1, sizeof *a);
	if (!a)
		return UV_ENOMEM;
	a->s = s;
	a->via_proxy = via_proxy;
	if (via_proxy)
		target = (const struct sockaddr *)&s->cs->proxy_server;
	rc = uv_tcp_init_ex(s->px->loop, &a->tcp, target->sa_family);
	if (rc < 0) {
		free(a);
		return rc;
	}
	a->tcp.data = s;
	s->out = a;
	s->refs++;
	if (s->h->req.dst.atyp == SOCKS5_ATYP_DOMAIN) {
		key = s->h->req.dst.u.domain;
		keylen = s->h->req.dst.domain_len;
	} else {
		key = dest;
		keylen = dest->sa_family == AF_INET ? sizeof(struct sockaddr_in)
						    : sizeof(struct sockaddr_in6);
	}
	rc = egress_bind(&a->tcp, s->cs, s->h->adhoc ? (struct sockaddr *)&s->h->adhoc_addr : NULL, dest,
			 key, keylen);
	if (rc < 0) {
		*blame = rc == UV_EADDRNOTAVAIL ? EGRESS_BLAME_UNPLUMBED : EGRESS_BLAME_LOCAL;
		attempt_close(s, false);
		return rc;
	}
	/* A bind that worked clears the unplumbed window (rspamd ok()). */
	if (s->src && (s->cs->kind == CONF_SOURCE_ADDRESS || s->cs->kind == CONF_SOURCE_PREFIX))
		pool_report_success(s->src, uv_now(s->px->loop));
	if (srv->tcp_keepalive_ms)
		uv_tcp_keepalive(&a->tcp, 1, (unsigned)(srv->tcp_keepalive_ms / 1000 ?: 1));
	uv_tcp_nodelay(&a->tcp, 1);
	rc = uv_tcp_connect(&a->req, &a->tcp, target, on_connected);
	if (rc < 0) {
		*blame = via_proxy ? EGRESS_BLAME_PROXY : egress_blame_connect(rc);
		attempt_close(s, false);
		return rc;
	}
	timer_arm(s, srv->connect_timeout_ms);
	return 0;
}

static const char *session_pool_name(struct session *s)
{
	return s->gen->conf->pools[s->pool].name;
}

static void pool_exhausted(struct session *s, uint64_t until)
{
	char when[64] = "never";
	uint64_t now = uv_now(s->px->loop);

	if (until != UINT64_MAX) {
		time_t t = time(NULL) + (time_t)((until - now + 999) / 1000);
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
	}
	s->result = PROXY_RESULT_EXHAUSTED;
	log_warn("pool", "pool %s exhausted until %s client=%s dest=%s", session_pool_name(s), when,
		 s->peer_str, s->dest_str);
	proxy_pool_exhausted(s->px, session_pool_name(s));
	reply_and_close(s, SOCKS5_REP_GENERAL_FAILURE, NULL);
}

static enum pool_failure failure_kind(enum egress_blame blame)
{
	switch (blame) {
	case EGRESS_BLAME_UNPLUMBED:
		return POOL_FAILURE_UNPLUMBED;
	case EGRESS_BLAME_PROXY:
		return POOL_FAILURE_PROXY_UNHEALTHY;
	default:
		return POOL_FAILURE_PORTS_EXHAUSTED;
	}
}

/* Pick a source and start an attempt, walking sources then destinations,
 * until one attempt is under way or the request must be answered. */
static void attempt_next(struct session *s)
{
	uint64_t now = uv_now(s->px->loop);
	uint64_t soonest = UINT64_MAX;

	while (s->h->dest_i < s->h->n_dests) {
		const struct sockaddr *dest = (struct sockaddr *)&s->h->dests[s->h->dest_i];
		enum egress_blame blame;
		int rc;

		if (s->pinned >= 0 || s->h->adhoc) {
			/* The MTA chose the IP: exactly this source, no failover. */
			s->cs = s->h->adhoc ? NULL : &s->gen->conf->sources[s->pinned];
			if (s->h->pinned_tried) {
				s->h->pinned_tried = false;
				s->h->dest_i++;
				continue;
			}
			if (s->h->adhoc ? s->h->adhoc_addr.ss_family != dest->sa_family
				     : !egress_source_fits(s->cs, dest->sa_family)) {
				s->h->last_rep = SOCKS5_REP_NET_UNREACHABLE;
				s->h->dest_i++;
				continue;
			}
			s->h->pinned_tried = true;
		} else {
			struct pool_request pr = {
				.family = dest->sa_family == AF_INET ? POOL_FAMILY_V4
								     : POOL_FAMILY_V6,
				.tried = &s->h->tried,
			};
			const struct conf *conf = s->gen->conf;
			struct pool_pick pick;
			uint8_t ipkey[16];

			switch (conf->pools[s->pool].hash_key) {
			case CONF_HASH_KEY_CLIENT:
				if (s->peer.ss_family == AF_INET) {
					memcpy(ipkey, &((struct sockaddr_in *)&s->peer)->sin_addr, 4);
					pr.key_len = 4;
				} else {
					memcpy(ipkey, &((struct sockaddr_in6 *)&s->peer)->sin6_addr, 16);
					pr.key_len = 16;
				}
				pr.key = ipkey;
				break;
			case CONF_HASH_KEY_USERNAME:
				pr.key = s->h->user;
				pr.key_len = strlen(s->h->user);
				break;
			case CONF_HASH_KEY_DESTINATION:
				if (s->h->req.dst.atyp == SOCKS5_ATYP_DOMAIN) {
					pr.key = s->h->req.dst.u.domain;
					pr.key_len = s->h->req.dst.domain_len;
				} else {
					pr.key = s->h->req.dst.atyp == SOCKS5_ATYP_IPV4
							 ? s->h->req.dst.u.ipv4
							 : s->h->req.dst.u.ipv6;
					pr.key_len = s->h->req.dst.atyp == SOCKS5_ATYP_IPV4 ? 4 : 16;
				}
				break;
			}
			if (pool_pick(egress_pool(s->gen, s->pool), &pr, now, &pick) < 0)
				pick.status = POOL_NONE;
			if (pick.status != POOL_NONE)
				s->h->saw_candidate = true;
			if (pick.status == POOL_PICKED &&
			    pool_source_acquire(pick.source, now) < 0)
				pick.status = POOL_BUSY; /* cannot happen under one lock */
			if (pick.status != POOL_PICKED) {
				/* Suspended or at a cap: a later time may help. */
				if (pick.status != POOL_NONE && pick.until_ms < soonest)
					soonest = pick.until_ms;
				if (pick.status == POOL_BUSY)
					s->h->saw_busy = true;
				s->h->dest_i++;
				pool_tried_init(&s->h->tried);
				continue;
			}
			s->src = pick.source;
			s->acquired = true;
			s->cs = egress_conf_source(s->gen, s->src);
		}

		rc = attempt_start(s, &blame);
		if (rc == 0) {
			s->state = S_CONNECTING;
			return;
		}
		switch (blame) {
		case EGRESS_BLAME_UNPLUMBED:
		case EGRESS_BLAME_PORTS:
		case EGRESS_BLAME_PROXY:
			if (s->src) {
				source_failure(s, failure_kind(blame), rc);
				/* The MTA chose this source: no failover, except
				 * past a busy port range, which is no fault of it. */
				if (s->pinned >= 0 && blame != EGRESS_BLAME_PORTS) {
					reply_and_close(s, SOCKS5_REP_GENERAL_FAILURE, NULL);
					return;
				}
				continue;
			}
			s->h->last_rep = SOCKS5_REP_GENERAL_FAILURE;
			s->h->dest_i++;
			break;
		case EGRESS_BLAME_DEST:
			s->h->last_rep = egress_rep_for(rc);
			s->h->dest_i++;
			pool_tried_init(&s->h->tried);
			src_drop(s);
			break;
		default:
			src_drop(s);
			log_warn("session", "id=%llu outbound socket failed error=\"%s\"",
				 (unsigned long long)s->id, uv_strerror(rc));
			s->h->last_rep = SOCKS5_REP_GENERAL_FAILURE;
			s->h->dest_i++;
			pool_tried_init(&s->h->tried);
			break;
		}
	}

	if (soonest != UINT64_MAX) {
		/* Every eligible source is suspended: wait for the first one to
		 * come back if that is soon enough, then start over. */
		if (soonest <= s->h->wait_deadline) {
			s->state = S_POOL_WAIT;
			s->h->dest_i = 0;
			pool_tried_init(&s->h->tried);
			timer_arm(s, soonest > now ? soonest - now : 0);
			return;
		}
		pool_exhausted(s, soonest);
		return;
	}
	if (!s->h->saw_candidate && s->pinned < 0 && !s->h->adhoc) {
		/* No source of any destination's family. */
		s->h->last_rep = SOCKS5_REP_NET_UNREACHABLE;
	}
	if (s->h->saw_busy && s->h->last_rep == SOCKS5_REP_GENERAL_FAILURE) {
		/* A source at its cap is skipped quietly, but a request refused
		 * because every source is is something the operator must see. */
		s->result = PROXY_RESULT_EXHAUSTED;
		log_warn("pool", "pool %s busy: every source is at its max_connections or rate cap "
				 "client=%s dest=%s",
			 session_pool_name(s), s->peer_str, s->dest_str);
	}
	reply_and_close(s, s->h->last_rep, NULL);
}

/* The source's upstream proxy failed us: blame it and try the next source
 * (SPEC 4.2), or fail the request when the MTA chose this source. */
static void proxy_failure(struct session *s, int err, const char *why)
{
	log_debug("session", "id=%llu source=%s upstream proxy failed: %s (%s)",
		  (unsigned long long)s->id, s->cs ? s->cs->name : "-", why,
		  err ? uv_strerror(err) : "protocol error");
	source_failure(s, POOL_FAILURE_PROXY_UNHEALTHY, err ? err : UV_EPROTO);
	if (s->pinned >= 0) {
		reply_and_close(s, SOCKS5_REP_GENERAL_FAILURE, NULL);
		return;
	}
	attempt_next(s);
}

static void on_upstream_done(struct upstream *u, const struct upstream_result *res, void *ctx)
{
	struct session *s = ctx;
	struct attempt *a = s->out;
	struct sockaddr_storage bnd;
	socklen_t blen;
	uint8_t extra[UPSTREAM_READ_MAX];
	size_t extra_len = 0;

	if (!a || a->up != u || s->state != S_CONNECTING)
		return;
	a->handshaking = false;
	uv_timer_stop(&s->timer);
	switch (res->status) {
	case UPSTREAM_OK:
		extra_len = res->extra_len;
		memcpy(extra, res->extra, extra_len);
		pool_report_success(s->src, uv_now(s->px->loop));
		/* BND.ADDR: what the upstream says the destination sees. */
		if (socks5_addr_to_sockaddr(&res->bnd, &bnd, &blen) < 0)
			relay_start(s, NULL, extra, extra_len);
		else
			relay_start(s, (struct sockaddr *)&bnd, extra, extra_len);
		return;
	case UPSTREAM_DEST_FAILED:
		attempt_close(s, false);
		s->h->last_rep = res->rep;
		s->h->dest_i++;
		pool_tried_init(&s->h->tried);
		src_drop(s);
		attempt_next(s);
		return;
	case UPSTREAM_PROXY_FAILED:
		attempt_close(s, false);
		proxy_failure(s, res->err, res->why);
		return;
	}
}

/* Connected to the source's proxy: negotiate, then CONNECT through it. */
static void upstream_begin(struct session *s, struct attempt *a)
{
	const struct conf_source *cs = s->cs;
	struct socks5_addr dst;
	struct upstream_params p = {
		.username = cs->proxy_username,
		.password = cs->proxy_password,
		.bind_source = cs->has_proxy_source_address
				       ? (const struct sockaddr *)&cs->proxy_source_address
				       : NULL,
		.dest = &dst,
	};
	int rc;

	socks5_addr_from_sockaddr(&dst, (struct sockaddr *)&s->h->dests[s->h->dest_i]);
	a->up = calloc(1, sizeof *a->up);
	rc = a->up ? upstream_start(a->up, (uv_stream_t *)&a->tcp, &p, on_upstream_done, s)
		   : UV_ENOMEM;
	if (rc < 0) {
		attempt_close(s, false);
		proxy_failure(s, rc, "cannot start the upstream handshake");
		return;
	}
	a->handshaking = true;
}

static void on_connected(uv_connect_t *req, int status)
{
	struct attempt *a = container_of(req, struct attempt, req);
	struct session *s = a->s;
	enum egress_blame blame;

	if (s->state != S_CONNECTING || s->out != a)
		return; /* an abandoned attempt: its close callback frees it */
	if (status == 0 && a->via_proxy) {
		upstream_begin(s, a);
		return;
	}
	uv_timer_stop(&s->timer);
	if (status == 0) {
		relay_start(s, NULL, NULL, 0);
		return;
	}
	attempt_close(s, false);
	if (a->via_proxy) {
		proxy_failure(s, status, "cannot connect to the upstream proxy");
		return;
	}
	blame = egress_blame_connect(status);
	if (blame == EGRESS_BLAME_PORTS && s->src) {
		source_failure(s, POOL_FAILURE_PORTS_EXHAUSTED, status);
		if (s->pinned >= 0)
			s->h->pinned_tried = false, s->h->dest_i++;
	} else {
		s->h->last_rep = egress_rep_for(status);
		s->h->dest_i++;
		pool_tried_init(&s->h->tried);
		src_drop(s);
	}
	attempt_next(s);
}

/* ---- relay ---- */

static void relay_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void half_finish(struct session *s, struct half *h);

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct half *h = container_of(req, struct half, shut_req);
	struct session *s = h->s; /* not h->from->data: `from` may be closed and freed */

	h->shutting = false;
	if (s->state != S_RELAY)
		return;
	h->shut = true;
	if (status < 0 || (s->up.shut && s->down.shut))
		session_close(s, false);
}

/* `from` is done: pass the EOF on once everything before it is written. */
static void half_finish(struct session *s, struct half *h)
{
	if (h->shut || h->shutting || h->writing)
		return;
	h->shutting = true;
	if (uv_shutdown(&h->shut_req, h->to, on_shutdown) < 0) {
		h->shutting = false;
		session_close(s, false);
	}
}

static void on_relay_written(uv_write_t *req, int status)
{
	struct wreq *w = container_of(req, struct wreq, req);
	struct session *s = w->s;
	struct half *h = w->half;

	free(w);
	if (s->state != S_RELAY)
		return;
	h->writing = false;
	if (status < 0) {
		session_close(s, true);
		return;
	}
	if (h->eof)
		half_finish(s, h);
	else
		uv_read_start(h->from, on_hs_alloc, relay_read);
}

/* Write what the kernel takes now; keep only the rest, and stop reading
 * this side until it is written (backpressure: at most one read's worth is
 * ever buffered per direction). */
static void relay_forward(struct session *s, struct half *h, const char *data, size_t len)
{
	uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
	int n = uv_try_write(h->to, &b, 1);
	struct wreq *w;

	if (n == (int)len)
		return;
	if (n < 0 && n != UV_EAGAIN) {
		session_close(s, true);
		return;
	}
	if (n < 0)
		n = 0;
	w = malloc(sizeof *w + len - (size_t)n);
	if (!w) {
		session_close(s, true);
		return;
	}
	w->s = s;
	w->half = h;
	w->len = len - (size_t)n;
	memcpy(w->data, data + n, w->len);
	b = uv_buf_init(w->data, (unsigned)w->len);
	if (uv_write(&w->req, h->to, &b, 1, on_relay_written) < 0) {
		free(w);
		session_close(s, true);
		return;
	}
	h->writing = true;
	uv_read_stop(h->from);
}

/* libuv 1.44 reports a reset that arrives behind data as a plain EOF
 * (POLLHUP after a short read); the socket's pending error tells them
 * apart, so that a reset is passed on as a reset. */
static bool socket_error(uv_stream_t *stream)
{
	uv_os_fd_t fd;
	int err = 0;
	socklen_t len = sizeof err;

	if (uv_fileno((uv_handle_t *)stream, &fd) < 0)
		return false;
	return getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0;
}

static void relay_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct session *s = stream->data;
	struct half *h = stream == (uv_stream_t *)&s->client ? &s->up : &s->down;

	if (s->state != S_RELAY || nread == 0)
		return;
	if (nread > 0) {
		h->bytes += (uint64_t)nread;
		if (h == &s->up)
			s->px->stats.bytes_up += (uint64_t)nread;
		else
			s->px->stats.bytes_down += (uint64_t)nread;
		s->last_active_ms = uv_now(s->px->loop);
		relay_forward(s, h, buf->base, (size_t)nread);
		return;
	}
	if (nread == UV_EOF && !socket_error(stream)) {
		h->eof = true;
		uv_read_stop(stream);
		half_finish(s, h);
		return;
	}
	/* A reset (or any read error) on one side is passed on as a reset. */
	session_close(s, true);
}

/* Answer success and start relaying. `bnd` is the address to report (NULL:
 * the outbound socket's own); `extra` are destination bytes that arrived
 * with the upstream proxy's reply. */
static void relay_start(struct session *s, const struct sockaddr *bnd_in, const uint8_t *extra,
			size_t extra_len)
{
	const struct conf_server *srv = &s->gen->conf->server;
	struct sockaddr_storage bnd;
	int blen = sizeof bnd;
	uint8_t buf[SOCKS5_REPLY_MAX];
	int n;

	if (bnd_in)
		memcpy(&bnd, bnd_in, bnd_in->sa_family == AF_INET ? sizeof(struct sockaddr_in)
								   : sizeof(struct sockaddr_in6));
	else
		uv_tcp_getsockname(&s->out->tcp, (struct sockaddr *)&bnd, &blen);
	n = socks5_write_reply_atyp(buf, sizeof buf, SOCKS5_REP_SUCCEEDED, s->h->req.dst.atyp,
				    (struct sockaddr *)&bnd);
	if (n < 0 || send_bytes(s, buf, (size_t)n) < 0) {
		session_close(s, true);
		return;
	}
	if (s->src) {
		if (s->cs->kind == CONF_SOURCE_DEFAULT_ROUTE)
			pool_report_success(s->src, uv_now(s->px->loop));
	}
	if (log_enabled(LOG_DEBUG)) {
		char b[64];
		log_debug("session", "id=%llu client=%s dest=%s source=%s bound=%s connected",
			  (unsigned long long)s->id, s->peer_str, s->dest_str,
			  s->cs ? s->cs->name : "-",
			  conf_addr_str((struct sockaddr *)&bnd, b, sizeof b));
	}
	s->state = S_RELAY;
	s->result = PROXY_RESULT_OK;
	s->px->stats.relaying++;
	proxy_hist_observe(&s->px->stats.connect, (double)(uv_hrtime() - s->request_ns) / 1e6);
	s->up = (struct half){
		.s = s, .from = (uv_stream_t *)&s->client, .to = (uv_stream_t *)&s->out->tcp};
	s->down = (struct half){
		.s = s, .from = (uv_stream_t *)&s->out->tcp, .to = (uv_stream_t *)&s->client};
	s->last_active_ms = uv_now(s->px->loop);
	if (srv->idle_timeout_ms)
		timer_arm(s, srv->idle_timeout_ms);

	if (extra_len) {
		s->down.bytes += extra_len;
		s->px->stats.bytes_down += extra_len;
		relay_forward(s, &s->down, (const char *)extra, extra_len);
		if (s->state != S_RELAY)
			return;
	}
	if (!s->down.writing)
		uv_read_start(s->down.from, on_hs_alloc, relay_read);
	/* Bytes the client sent right behind its request go out first. */
	uv_read_stop((uv_stream_t *)&s->client);
	if (s->h->hs_len > s->h->hs_off) {
		s->up.bytes += s->h->hs_len - s->h->hs_off;
		s->px->stats.bytes_up += s->h->hs_len - s->h->hs_off;
		relay_forward(s, &s->up, (char *)s->h->hs + s->h->hs_off, s->h->hs_len - s->h->hs_off);
		s->h->hs_off = s->h->hs_len;
	}
	if (s->state != S_RELAY)
		return;
	if (s->h->client_eof) {
		s->up.eof = true;
		half_finish(s, &s->up);
	} else if (!s->up.writing) {
		uv_read_start(s->up.from, on_hs_alloc, relay_read);
	}
	/* Nothing of the handshake is needed any more; leftovers were copied. */
	explicit_bzero(s->h->pass, sizeof s->h->pass);
	free(s->h);
	s->h = NULL;
}

/* ---- accept ---- */

void session_accept(struct listener *l)
{
	struct proxy *px = l->px;
	const struct conf_server *srv = &px->gen->conf->server;
	struct session *s = calloc(1, sizeof *s);
	int len, rc;

	if (s)
		s->h = calloc(1, sizeof *s->h);
	if (!s || !s->h) {
		free(s);
		log_error("server", "out of memory accepting a connection");
		return;
	}
	s->h->s = s;
	s->px = px;
	s->gen = px->gen;
	s->gen->refs++;
	s->id = ++px->next_session_id;
	s->pinned = -1;
	s->l = l;
	s->started_ms = uv_now(px->loop);
	s->next = px->sessions;
	if (s->next)
		s->next->prev = s;
	px->sessions = s;
	px->n_sessions++;
	px->stats.active++;
	s->accepted_ns = uv_hrtime();
	s->result = PROXY_RESULT_HANDSHAKE;

	uv_tcp_init(px->loop, &s->client);
	uv_timer_init(px->loop, &s->timer);
	s->client.data = s->timer.data = s;
	s->refs = 2;
	s->state = S_GREETING;
	rc = uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&s->client);
	if (rc < 0) {
		session_close(s, false);
		return;
	}
	len = sizeof s->peer;
	uv_tcp_getpeername(&s->client, (struct sockaddr *)&s->peer, &len);
	if (l->source_same) {
		len = sizeof s->h->local;
		uv_tcp_getsockname(&s->client, (struct sockaddr *)&s->h->local, &len);
	}
	conf_addr_str((struct sockaddr *)&s->peer, s->peer_str, sizeof s->peer_str);

	if (!conf_cidr_list_match(&srv->allow, (struct sockaddr *)&s->peer)) {
		s->result = PROXY_RESULT_REFUSED;
		log_info("server", "client=%s refused: not in allow", s->peer_str);
		session_close(s, true);
		return;
	}
	if (srv->max_connections && px->n_sessions > srv->max_connections) {
		s->result = PROXY_RESULT_REFUSED;
		log_warn("server", "client=%s refused: max_connections=%u reached", s->peer_str,
			 srv->max_connections);
		session_close(s, true);
		return;
	}
	if (proxy_client_add(px, (struct sockaddr *)&s->peer) < 0) {
		s->result = PROXY_RESULT_REFUSED;
		log_warn("server", "client=%s refused: max_connections_per_client=%u reached",
			 s->peer_str, srv->max_connections_per_client);
		session_close(s, true);
		return;
	}
	s->client_counted = true;
	/* TCP_NODELAY and keepalive come from the listening socket, unless a
	 * reload changed tcp_keepalive since it was opened. */
	if (srv->tcp_keepalive_ms != l->keepalive_ms)
		uv_tcp_keepalive(&s->client, srv->tcp_keepalive_ms > 0,
				 (unsigned)(srv->tcp_keepalive_ms / 1000 ?: 1));
	timer_arm(s, srv->handshake_timeout_ms);
	rc = uv_read_start((uv_stream_t *)&s->client, on_hs_alloc, on_hs_read);
	if (rc < 0)
		session_close(s, true);
}
