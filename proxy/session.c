/* session: one client connection's lifetime: accept, the session timer,
 * handshake replies, close and free. The phases live in handshake.c,
 * attempt.c and relay.c (see session.h). */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gen.h"
#include "log.h"
#include "session.h"
#include "slab.h"
#include "throttle.h"
#include "stat.h"

uint64_t session_now(const struct session *s)
{
	return uv_now(s->px->loop);
}

void session_unref(struct session *s)
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
	atomic_fetch_sub_explicit(&px->main->n_sessions, 1, memory_order_relaxed);
	stat_sub(&px->stats.active, 1);
	stat_add(&px->stats.total[s->result], 1);
	if (s->client_counted)
		proxy_client_remove(px, (struct sockaddr *)&s->peer);
	if (s->acquired)
		poolsync_release(s->gen->sync, s->src);
	proxy_gen_unref(s->gen);
	session_hs_free(s);
	slab_free(px->slab_session, s);
	proxy_session_gone(px);
}

static void on_handle_closed(uv_handle_t *h)
{
	session_unref(h->data);
}

/* uv_tcp_close_reset refuses a handle with a shutdown in flight; such a
 * handle is closed plainly (its FIN is on the way anyway). */
void session_tcp_close(uv_tcp_t *h, bool reset, uv_close_cb cb)
{
	if (reset && uv_tcp_close_reset(h, cb) == 0)
		return;
	uv_close((uv_handle_t *)h, cb);
}

static void access_log(struct session *s, const char *result)
{
	if (!log_access_enabled())
		return;
	log_access("id=%llu client=%s user=%s dest=%s source=%s result=%s bytes_up=%llu "
		   "bytes_down=%llu duration_ms=%llu",
		   (unsigned long long)s->id, s->peer_str, LOG_Q(s->user_name, 255),
		   LOG_Q(s->dest_str[0] ? s->dest_str : NULL, SOCKS5_ADDR_STRLEN),
		   s->cs ? s->cs->name : "-", result, (unsigned long long)s->up.bytes,
		   (unsigned long long)s->down.bytes,
		   (unsigned long long)(session_now(s) - s->started_ms));
}

void session_close(struct session *s, bool reset)
{
	enum session_state was = s->state;

	if (was == S_CLOSING)
		return;
	access_log(s, was == S_RELAY ? "done" : proxy_result_name(s->result));
	if (was == S_RELAY)
		stat_sub(&s->px->stats.relaying, 1);
	s->state = S_CLOSING;
	if (was == S_RELAY)
		relay_stop(s);
	uv_timer_stop(&s->timer);
	if (!uv_is_closing((uv_handle_t *)&s->timer))
		uv_close((uv_handle_t *)&s->timer, on_handle_closed);
	if (!uv_is_closing((uv_handle_t *)&s->client))
		session_tcp_close(&s->client, reset, on_handle_closed);
	attempt_close(s, reset);
	/* A pending DNS lookup calls back with UV_EAI_CANCELED; a running
	 * password check cannot be stopped and finds S_CLOSING when done. */
	if (was == S_RESOLVING)
		uv_cancel((uv_req_t *)&s->h->gai);
	if (s->h)
		handshake_auth_unqueue(s);
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

static void on_reply_written(uv_write_t *req, int status)
{
	struct wreq *w = container_of(req, struct wreq, req);
	struct session *s = w->s;

	free(w);
	if (status < 0)
		session_close(s, true);
	session_unref(s);
}

int session_send(struct session *s, const void *data, size_t len)
{
	uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
	int n = uv_try_write((uv_stream_t *)&s->client, &b, 1);
	struct wreq *w;
	int rc;

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
	rc = uv_write(&w->req, (uv_stream_t *)&s->client, &b, 1, on_reply_written);
	if (rc < 0) {
		free(w);
		return rc;
	}
	s->refs++;
	return 0;
}

static enum proxy_result result_of(uint8_t rep, enum proxy_result was)
{
	switch (rep) {
	case SOCKS5_REP_NOT_ALLOWED:
		return PROXY_RESULT_NOT_ALLOWED;
	case SOCKS5_REP_NET_UNREACHABLE:
	case SOCKS5_REP_HOST_UNREACHABLE:
	case SOCKS5_REP_CONN_REFUSED:
	case SOCKS5_REP_TTL_EXPIRED:
		return PROXY_RESULT_DEST;
	case SOCKS5_REP_GENERAL_FAILURE:
		return was == PROXY_RESULT_EXHAUSTED ? was : PROXY_RESULT_ERROR;
	default:
		return PROXY_RESULT_HANDSHAKE;
	}
}

void session_reply(struct session *s, uint8_t rep, const struct sockaddr *bnd)
{
	uint8_t buf[SOCKS5_REPLY_MAX];
	int n = socks5_write_reply_atyp(buf, sizeof buf, rep, s->h->req.dst.atyp, bnd);

	s->result = result_of(rep, s->result);
	log_debug("session", "id=%llu client=%s dest=%s reply=0x%02x (%s)",
		  (unsigned long long)s->id, s->peer_str,
		  LOG_Q(s->dest_str[0] ? s->dest_str : NULL, SOCKS5_ADDR_STRLEN), rep,
		  socks5_rep_str(rep));
	if (n > 0)
		session_send(s, buf, (size_t)n);
	session_close(s, false);
}

static void on_timer(uv_timer_t *t)
{
	struct session *s = container_of(t, struct session, timer);

	switch (s->state) {
	case S_GREETING:
	case S_AUTH:
	case S_AUTH_CHECK:
	case S_AUTH_FAILED:
	case S_REQUEST:
	case S_RESOLVING:
		handshake_on_timeout(s);
		break;
	case S_CONNECTING:
	case S_POOL_WAIT:
		attempt_on_timer(s);
		break;
	case S_RELAY:
		relay_on_timer(s);
		break;
	case S_CLOSING:
		break;
	}
}

void session_timer_arm(struct session *s, uint64_t ms)
{
	/* Cannot fail on an initialised, open timer with a callback. */
	uv_timer_start(&s->timer, on_timer, ms, 0);
}

void session_hs_free(struct session *s)
{
	if (!s->h)
		return;
	explicit_bzero(s->h->pass, sizeof s->h->pass);
	slab_free(s->px->slab_hs, s->h);
	s->h = NULL;
}

struct attempt *session_attempt_alloc(struct session *s)
{
	return slab_alloc(s->px->slab_attempt);
}

void session_attempt_free(struct session *s, struct attempt *a)
{
	slab_free(s->px->slab_attempt, a);
}

/* One empty chunk is kept per slab, so that connections opened one at a
 * time do not map and unmap a chunk each. */
static int session_slabs(struct proxy *px)
{
	int rc = 0;

	if (!px->slab_session && (rc = slab_new(sizeof(struct session), 1, &px->slab_session)) < 0)
		return rc;
	if (!px->slab_hs && (rc = slab_new(sizeof(struct session_hs), 1, &px->slab_hs)) < 0)
		return rc;
	if (!px->slab_attempt && (rc = slab_new(sizeof(struct attempt), 1, &px->slab_attempt)) < 0)
		return rc;
	return 0;
}

void session_slabs_destroy(struct proxy *px)
{
	slab_destroy(px->slab_session);
	slab_destroy(px->slab_hs);
	slab_destroy(px->slab_attempt);
	px->slab_session = px->slab_hs = px->slab_attempt = NULL;
}

static struct session *session_new(struct listener *l)
{
	struct proxy *px = l->px;
	struct session *s;

	if (session_slabs(px) < 0 || !(s = slab_alloc(px->slab_session)))
		return NULL;
	s->px = px;
	if (!(s->h = slab_alloc(px->slab_hs))) {
		slab_free(px->slab_session, s);
		return NULL;
	}
	s->h->s = s;
	s->px = px;
	s->gen = px->gen;
	proxy_gen_ref(s->gen);
	s->id = px->next_session_id += px->main->n_workers;
	s->pinned = -1;
	s->user = -1;
	s->l = l;
	s->started_ms = uv_now(px->loop);
	s->accepted_ns = uv_hrtime();
	s->result = PROXY_RESULT_HANDSHAKE;
	s->next = px->sessions;
	if (s->next)
		s->next->prev = s;
	px->sessions = s;
	px->n_sessions++;
	atomic_fetch_add_explicit(&px->main->n_sessions, 1, memory_order_relaxed);
	stat_add(&px->stats.active, 1);
	stat_add(&px->stats.accepted, 1);
	return s;
}

/* Who the client is, and whether it may connect at all. @return 0, or a
 * negative error after which the session is closed. */
static int session_admit(struct session *s)
{
	const struct conf_server *srv = &s->gen->conf->server;
	struct proxy *px = s->px;
	int len = sizeof s->peer, rc;

	rc = uv_tcp_getpeername(&s->client, (struct sockaddr *)&s->peer, &len);
	if (rc < 0)
		return rc; /* gone already */
	if (s->l->source_same) {
		len = sizeof s->h->local;
		rc = uv_tcp_getsockname(&s->client, (struct sockaddr *)&s->h->local, &len);
		if (rc < 0)
			return rc;
	}
	conf_addr_str((struct sockaddr *)&s->peer, s->peer_str, sizeof s->peer_str);
	s->result = PROXY_RESULT_REFUSED;
	if (!conf_cidr_list_match(&srv->allow, (struct sockaddr *)&s->peer)) {
		proxy_refused(px, PROXY_REFUSED_ALLOW, s->peer_str, 0);
		return -EPERM;
	}
	/* Counted across workers: the session is in the count already. */
	if (srv->max_connections &&
	    atomic_load_explicit(&px->main->n_sessions, memory_order_relaxed) >
		srv->max_connections) {
		proxy_refused(px, PROXY_REFUSED_MAX_CONNECTIONS, s->peer_str, srv->max_connections);
		return -EBUSY;
	}
	/* Off (0, the default: an MTA is one client) costs no lock. */
	if (srv->max_connections_per_client) {
		if (proxy_client_add(px, (struct sockaddr *)&s->peer) < 0) {
			proxy_refused(px, PROXY_REFUSED_PER_CLIENT, s->peer_str,
				      srv->max_connections_per_client);
			return -EBUSY;
		}
		s->client_counted = true;
	}
	s->result = PROXY_RESULT_HANDSHAKE;
	return 0;
}

/* A connection callback that does not uv_accept() makes libuv 1.44 stop
 * reading the listener until it does: one failed allocation would stall the
 * listener for good. Closing the pending descriptor (libuv keeps it in
 * accepted_fd) drops that one connection and lets accepting go on. */
static void listener_drop_pending(struct listener *l)
{
	if (l->tcp.accepted_fd >= 0) {
		close(l->tcp.accepted_fd);
		l->tcp.accepted_fd = -1;
	}
}

void session_accept(struct listener *l)
{
	struct proxy *px = l->px;
	const struct conf_server *srv = &px->gen->conf->server;
	struct session *s = session_new(l);
	int rc;

	if (!s) {
		log_error("server", "out of memory accepting a connection");
		listener_drop_pending(l);
		return;
	}
	s->client.data = s->timer.data = s;
	s->state = S_GREETING;
	s->refs = 1;
	if ((rc = uv_timer_init(px->loop, &s->timer)) < 0) {
		log_error("server", "cannot set up a connection error=\"%s\"", uv_strerror(rc));
		listener_drop_pending(l);
		session_unref(s);
		return;
	}
	if ((rc = uv_tcp_init(px->loop, &s->client)) < 0) {
		log_error("server", "cannot set up a connection error=\"%s\"", uv_strerror(rc));
		listener_drop_pending(l);
		s->state = S_CLOSING;
		uv_close((uv_handle_t *)&s->timer, on_handle_closed);
		return;
	}
	s->refs = 2;
	if (uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&s->client) < 0) {
		session_close(s, false);
		return;
	}
	if (session_admit(s) < 0) {
		session_close(s, true);
		return;
	}
	/* TCP_NODELAY and keepalive come from the listening socket, unless a
	 * reload changed tcp_keepalive since it was opened. */
	if (srv->tcp_keepalive_ms != l->keepalive_ms &&
	    (rc = uv_tcp_keepalive(&s->client, srv->tcp_keepalive_ms > 0,
				   (unsigned)(srv->tcp_keepalive_ms / 1000 ?: 1))) < 0)
		log_debug("session", "id=%llu keepalive not set error=\"%s\"",
			  (unsigned long long)s->id, uv_strerror(rc));
	session_timer_arm(s, srv->handshake_timeout_ms);
	if (handshake_start(s) < 0)
		session_close(s, true);
}
