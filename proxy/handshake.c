/* handshake: from the greeting to a parsed CONNECT: method choice, password
 * auth (checked in the threadpool behind a small queue), the request, and
 * the KumoMTA BIND that chooses the source of the CONNECT after it. */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "egress.h"
#include "gen.h"
#include "log.h"
#include "session.h"
#include "stat.h"

static void handshake_step(struct session *s);
static void auth_fail_now(struct session *s);

static void on_hs_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct session *s = h->data;

	(void)suggested;
	*buf = uv_buf_init((char *)s->h->hs + s->h->hs_len,
			   (unsigned)(sizeof s->h->hs - s->h->hs_len));
}

static void on_hs_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct session *s = stream->data;

	(void)buf;
	if (nread == 0 || s->state == S_CLOSING)
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
	if (s->state != S_CLOSING && s->state != S_RELAY && s->h->hs_len == sizeof s->h->hs) {
		/* Nothing we parse is this long; the client is not speaking SOCKS5. */
		uv_read_stop(stream);
		if (s->state == S_GREETING || s->state == S_AUTH || s->state == S_REQUEST)
			session_close(s, false);
	}
}

int handshake_start(struct session *s)
{
	return uv_read_start((uv_stream_t *)&s->client, on_hs_alloc, on_hs_read);
}

void handshake_on_timeout(struct session *s)
{
	if (s->state == S_AUTH_FAILED) {
		auth_fail_now(s);
		return;
	}
	log_debug("session", "id=%llu client=%s handshake timeout", (unsigned long long)s->id,
		  s->peer_str);
	if (s->state == S_RESOLVING)
		session_reply(s, SOCKS5_REP_HOST_UNREACHABLE, NULL);
	else
		session_close(s, false);
}

/* Which pool: the user's `pool =`, else the listener's `pool=`, else
 * default_pool (SPEC 3; a BIND source overrides it for the attempt). */
static size_t request_pool(const struct session *s)
{
	int p = s->user >= 0 ? gen_user_pool(s->gen, (size_t)s->user) : -ENOENT;

	if (p < 0 && s->l->pool)
		p = gen_find_pool(s->gen, s->l->pool);
	return p < 0 ? s->gen->default_pool : (size_t)p;
}

/* A user may only BIND sources of their own pool (SPEC 3): the pool that
 * applies to them. `src` is a conf source index, SIZE_MAX for an address
 * that is no configured source. Without auth there is no user to hold to a
 * pool. */
static bool bind_allowed(const struct session *s, size_t src)
{
	if (!s->authed)
		return true;
	return src != SIZE_MAX && gen_pool_has(s->gen, request_pool(s), src);
}

/* Hold source `idx` for this whole session (BIND or source=same): it is
 * refused when suspended or at a cap, and never swapped for another. */
static int pin_source(struct session *s, int idx)
{
	struct pool_source *ps = gen_pool_source(s->gen, (size_t)idx);
	int rc = ps ? poolsync_acquire(s->gen->sync, ps, session_now(s)) : 0;

	if (rc < 0) {
		log_info("session", "id=%llu client=%s source=%s refused: %s",
			 (unsigned long long)s->id, s->peer_str, s->gen->conf->sources[idx].name,
			 rc == -EAGAIN ? "suspended" : "at its connection or rate cap");
		session_reply(s, SOCKS5_REP_GENERAL_FAILURE, NULL);
		return rc;
	}
	s->pinned = idx;
	s->src = ps;
	s->acquired = ps != NULL;
	return 0;
}

static bool is_wildcard(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == 0;
	return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

/* BIND to a named address: pin its source (or take it ad hoc under
 * bind_unlisted = allow) and check that it can be bound now.
 * @return 0, or -1 after the request was answered. */
static int bind_named(struct session *s, const struct sockaddr_storage *ss)
{
	const struct conf *conf = s->gen->conf;
	int idx = gen_find_source(s->gen, (const struct sockaddr *)ss), rc;

	if (idx < 0 && (conf->server.bind_unlisted != CONF_BIND_UNLISTED_ALLOW ||
			!bind_allowed(s, SIZE_MAX))) {
		log_info("session", "id=%llu client=%s BIND to unlisted address refused",
			 (unsigned long long)s->id, s->peer_str);
		session_reply(s, SOCKS5_REP_NOT_ALLOWED, NULL);
		return -1;
	}
	if (idx >= 0 && !bind_allowed(s, (size_t)idx)) {
		log_info(
		    "session",
		    "id=%llu client=%s user=%s BIND to a source outside the user's pool refused "
		    "source=%s",
		    (unsigned long long)s->id, s->peer_str, LOG_Q(s->user_name, 255),
		    conf->sources[idx].name);
		session_reply(s, SOCKS5_REP_NOT_ALLOWED, NULL);
		return -1;
	}
	if (idx < 0) {
		s->h->adhoc = true;
		s->h->adhoc_addr = *ss;
	} else if (pin_source(s, idx) < 0) {
		return -1;
	}
	rc = egress_probe_bind((const struct sockaddr *)ss);
	if (rc < 0) {
		log_info("session", "id=%llu client=%s BIND source unusable error=\"%s\"",
			 (unsigned long long)s->id, s->peer_str, strerror(-rc));
		if (s->src && rc == -EADDRNOTAVAIL)
			poolsync_report_failure(s->gen->sync, s->src, POOL_FAILURE_UNPLUMBED, -rc,
						session_now(s), NULL);
		session_reply(s, SOCKS5_REP_GENERAL_FAILURE, NULL);
		return -1;
	}
	if (s->src)
		poolsync_report_success(s->gen->sync, s->src, session_now(s));
	return 0;
}

/* KumoMTA BIND: choose the source for the CONNECT that follows (SPEC 3). */
static void handle_bind(struct session *s)
{
	struct sockaddr_storage ss;
	socklen_t slen;
	uint8_t buf[SOCKS5_REPLY_MAX];
	int n;

	if (s->bound) {
		session_reply(s, SOCKS5_REP_CMD_NOT_SUPPORTED, NULL);
		return;
	}
	if (s->h->req.dst.atyp == SOCKS5_ATYP_DOMAIN ||
	    socks5_addr_to_sockaddr(&s->h->req.dst, &ss, &slen) < 0 || s->h->req.dst.port != 0) {
		session_reply(s, SOCKS5_REP_NOT_ALLOWED, NULL);
		return;
	}
	if (!is_wildcard(&ss) && bind_named(s, &ss) < 0)
		return;
	s->bound = true;
	/* BND.ADDR is the address asked for, port 0: the MTA chose the IP. */
	n = socks5_write_reply_atyp(buf, sizeof buf, SOCKS5_REP_SUCCEEDED, s->h->req.dst.atyp,
				    (struct sockaddr *)&ss);
	if (n < 0 || session_send(s, buf, (size_t)n) < 0) {
		session_close(s, true);
		return;
	}
	s->state = S_REQUEST;
}

static void handle_request(struct session *s)
{
	if (s->h->req.cmd == SOCKS5_CMD_BIND) {
		handle_bind(s);
		return;
	}
	if (s->h->req.cmd != SOCKS5_CMD_CONNECT) {
		session_reply(s, SOCKS5_REP_CMD_NOT_SUPPORTED, NULL);
		return;
	}
	/* A source=same listener egresses from the address the client reached. */
	if (!s->bound && s->l->source_same) {
		int idx = gen_find_source(s->gen, (struct sockaddr *)&s->h->local);
		if (idx < 0) {
			log_warn("session",
				 "id=%llu source=same: local address is no configured source",
				 (unsigned long long)s->id);
			session_reply(s, SOCKS5_REP_NOT_ALLOWED, NULL);
			return;
		}
		if (pin_source(s, idx) < 0)
			return;
	}
	s->pool = request_pool(s);
	s->request_ns = uv_hrtime();
	proxy_hist_observe(&s->px->stats.handshake, (double)(s->request_ns - s->accepted_ns) / 1e6);
	attempt_begin(s);
}

void handshake_auth_unqueue(struct session *s)
{
	authq_cancel(s->px->authq, &s->h->authq);
}

static void on_auth_work(uv_work_t *w);
static void on_auth_work_done(uv_work_t *w, int status);
static void auth_done(struct session *s, bool ok, bool resume);

static struct session *session_of_entry(struct authq_entry *e)
{
	return container_of(e, struct session_hs, authq)->s;
}

/* Start the check of `s`, which the queue has made RUNNING. A login that
 * waited may find the cache filled by an earlier check of the same
 * credentials (a burst of one MTA's connections after a start or reload):
 * it passes without a crypt of its own. When the threadpool refuses, it
 * fails. Either way the slot goes to the next one. */
static void auth_start(struct session *s)
{
	struct proxy *px = s->px;

	while (s) {
		struct authq_entry *next;
		bool hit =
		    auth_check_cached(s->gen->auth, s->h->user, s->h->pass, s->h->plen) == AUTH_OK;

		if (!hit && uv_queue_work(px->loop, &s->h->auth_work, on_auth_work,
					  on_auth_work_done) == 0) {
			s->refs++;
			return;
		}
		next = authq_done(px->authq, &s->h->authq);
		auth_done(s, hit, true);
		s = next ? session_of_entry(next) : NULL;
	}
}

/* Run the slow check now if a slot is free, else queue the session behind
 * the other clients' logins (round-robin per client address, capped); over
 * its client's cap park it, over the queue's refuse it.
 * @return false when it was parked. */
static bool auth_submit(struct session *s)
{
	struct proxy *px = s->px;
	const struct sockaddr *peer = (const struct sockaddr *)&s->peer;
	int rc = authq_submit(px->authq, &s->h->authq, peer);

	if (rc == 1) {
		auth_start(s);
		return true;
	}
	if (rc == 0)
		return true;
	stat_add(&px->stats.auth_queue_full, 1);
	if (rc == -EBUSY && authq_park(px->authq, &s->h->authq, peer) == 0) {
		log_debug("session",
			  "id=%llu client=%s login parked: the client's password "
			  "checks are at their cap",
			  (unsigned long long)s->id, s->peer_str);
		return false;
	}
	log_debug("session", "id=%llu client=%s login refused: too many password checks pending",
		  (unsigned long long)s->id, s->peer_str);
	auth_done(s, false, false);
	return true;
}

/* A login of `peer` passed a real check, so the cache may now hold what its
 * parked logins send: let them pass, or queue again while there is room. */
static void auth_unpark(struct proxy *px, const struct sockaddr *peer)
{
	unsigned n = authq_parked(px->authq); /* each parked login at most once */
	struct authq_entry *e;

	while (n-- > 0 && (e = authq_unpark(px->authq, peer))) {
		struct session *p = session_of_entry(e);

		if (auth_check_cached(p->gen->auth, p->h->user, p->h->pass, p->h->plen) == AUTH_OK)
			auth_done(p, true, true);
		else if (!auth_submit(p))
			break; /* parked again: the client is at its cap */
	}
}

static void on_auth_work(uv_work_t *w)
{
	struct session *s = container_of(w, struct session_hs, auth_work)->s;

	s->h->auth_ok =
	    auth_verify_slow(s->gen->auth, s->h->user, s->h->pass, s->h->plen) == AUTH_OK;
}

/* The failure reply and the end of a session whose login failed. */
static void auth_fail_now(struct session *s)
{
	uint8_t buf[2];

	session_send(s, buf, socks5_write_auth_status(buf, false));
	session_close(s, false);
}

/* `resume`: reading was stopped for the check and starts again. */
static void auth_done(struct session *s, bool ok, bool resume)
{
	uint8_t buf[2];

	explicit_bzero(s->h->pass, sizeof s->h->pass);
	if (!ok) {
		struct proxy_main *m = s->px->main;
		uint64_t delay;

		/* The process's throttle: a client's tries count on every worker. */
		uv_mutex_lock(&m->auth_mu);
		delay = authq_throttle_fail(m->auth_throttle, (const struct sockaddr *)&s->peer,
					    session_now(s));
		uv_mutex_unlock(&m->auth_mu);
		s->result = PROXY_RESULT_AUTH;
		/* The name is the client's, unchecked: quoted so it cannot forge a line. */
		log_info("session", "id=%llu client=%s user=%s authentication failed%s",
			 (unsigned long long)s->id, s->peer_str, LOG_Q(s->h->user, 255),
			 delay ? " (reply delayed: repeated failures)" : "");
		if (!delay) {
			auth_fail_now(s);
			return;
		}
		/* Repeated failures from this client wait before their answer. */
		stat_add(&s->px->stats.auth_delayed, 1);
		s->state = S_AUTH_FAILED;
		uv_read_stop((uv_stream_t *)&s->client);
		session_timer_arm(s, delay);
		return;
	}
	uv_mutex_lock(&s->px->main->auth_mu);
	authq_throttle_ok(s->px->main->auth_throttle, (const struct sockaddr *)&s->peer);
	uv_mutex_unlock(&s->px->main->auth_mu);
	s->authed = true;
	s->user = gen_find_user(s->gen, s->h->user);
	s->user_name = s->user >= 0 ? s->gen->conf->users[s->user].name : NULL;
	if (session_send(s, buf, socks5_write_auth_status(buf, true)) < 0) {
		session_close(s, true);
		return;
	}
	s->state = S_REQUEST;
	handshake_step(s);
	/* A full buffer (a pipelined request and early data) is read on once
	 * the relay starts. */
	if (resume && s->state != S_CLOSING && s->state != S_RELAY &&
	    s->h->hs_len < sizeof s->h->hs && handshake_start(s) < 0)
		session_close(s, true);
}

static void on_auth_work_done(uv_work_t *w, int status)
{
	struct session *s = container_of(w, struct session_hs, auth_work)->s;
	struct authq_entry *next = authq_done(s->px->authq, &s->h->authq);
	bool ok = status == 0 && s->h->auth_ok;

	if (next)
		auth_start(session_of_entry(next));
	if (ok)
		auth_cache_put(s->gen->auth, s->h->user, s->h->pass, s->h->plen);
	if (s->state == S_AUTH_CHECK)
		auth_done(s, ok, true);
	if (ok)
		auth_unpark(s->px, &s->peer.sa);
	session_unref(s);
}

/* @return 1 to parse on, 0 to wait for more bytes or a callback. */
static int step_greeting(struct session *s, const uint8_t *p, size_t len)
{
	struct socks5_greeting g;
	uint8_t out[2], m;
	size_t used = 0;
	int r = socks5_parse_greeting(p, len, &used, &g);

	if (r == SOCKS5_NEED_MORE)
		return 0;
	if (r == SOCKS5_ERROR) {
		if (g.err.send_reply)
			session_send(s, out, socks5_write_method(out, g.err.code));
		session_close(s, false);
		return 0;
	}
	s->h->hs_off += used;
	m = socks5_choose_method(&g, s->gen->conf->server.auth == CONF_AUTH_PASSWORD);
	if (session_send(s, out, socks5_write_method(out, m)) < 0 ||
	    m == SOCKS5_METHOD_UNACCEPTABLE) {
		session_close(s, false);
		return 0;
	}
	s->state = m == SOCKS5_METHOD_PASSWORD ? S_AUTH : S_REQUEST;
	return 1;
}

static int step_auth(struct session *s, const uint8_t *p, size_t len)
{
	struct socks5_auth a;
	uint8_t out[2];
	size_t used = 0;
	int r = socks5_parse_auth(p, len, &used, &a), rc;

	if (r == SOCKS5_NEED_MORE)
		return 0;
	if (r == SOCKS5_ERROR) {
		session_send(s, out, socks5_write_auth_status(out, false));
		session_close(s, false);
		return 0;
	}
	s->h->hs_off += used;
	memcpy(s->h->user, a.user, sizeof s->h->user);
	memcpy(s->h->pass, a.pass, sizeof s->h->pass);
	s->h->plen = a.plen;
	explicit_bzero(&a, sizeof a);
	rc = auth_check_cached(s->gen->auth, s->h->user, s->h->pass, s->h->plen);
	if (rc == AUTH_NEED_SLOW) {
		/* crypt() takes milliseconds by design: keep it off the loop
		 * that serves every other connection. */
		s->state = S_AUTH_CHECK;
		uv_read_stop((uv_stream_t *)&s->client);
		auth_submit(s);
		return 0;
	}
	auth_done(s, rc == AUTH_OK, false);
	return 0;
}

static int step_request(struct session *s, const uint8_t *p, size_t len)
{
	size_t used = 0;
	int r = socks5_parse_request(p, len, &used, &s->h->req);

	if (r == SOCKS5_NEED_MORE)
		return 0;
	if (r == SOCKS5_ERROR) {
		log_debug("session", "id=%llu client=%s bad request: %s", (unsigned long long)s->id,
			  s->peer_str, socks5_fault_str(s->h->req.err.fault));
		session_reply(s, s->h->req.err.code, NULL);
		return 0;
	}
	s->h->hs_off += used;
	handle_request(s);
	/* CONNECT may follow a BIND in the same packet. */
	return s->state == S_REQUEST;
}

/* Parse as many handshake messages as the buffer holds. */
static void handshake_step(struct session *s)
{
	int more = 1;

	while (more) {
		const uint8_t *p = s->h->hs + s->h->hs_off;
		size_t len = s->h->hs_len - s->h->hs_off;

		switch (s->state) {
		case S_GREETING:
			more = step_greeting(s, p, len);
			break;
		case S_AUTH:
			more = step_auth(s, p, len);
			break;
		case S_REQUEST:
			more = step_request(s, p, len);
			break;
		default:
			return;
		}
	}
}
