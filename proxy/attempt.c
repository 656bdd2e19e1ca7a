/* attempt: the outbound side of a request: resolve the destination, apply
 * the destination policy, pick a source, bind, connect (straight or through
 * the source's upstream SOCKS5 proxy), and retry on the next source or the
 * next destination address as classify.h's verdict says (SPEC 4.1, 4.2). */
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "classify.h"
#include "egress.h"
#include "gen.h"
#include "guard.h"
#include "log.h"
#include "session.h"
#include "stat.h"
#include "throttle.h"
#include "upstream.h"

static void attempt_next(struct session *s);

static void on_attempt_closed(uv_handle_t *h)
{
	struct attempt *a = container_of((uv_tcp_t *)h, struct attempt, tcp);
	struct session *s = a->s;

	free(a->up);
	session_attempt_free(s, a);
	session_unref(s);
}

void attempt_close(struct session *s, bool reset)
{
	struct attempt *a = s->out;

	if (!a)
		return;
	s->out = NULL;
	if (a->handshaking) {
		upstream_cancel(a->up);
		a->handshaking = false;
	}
	session_tcp_close(&a->tcp, reset, on_attempt_closed);
}

void attempt_src_drop(struct session *s)
{
	if (s->acquired && s->pinned < 0) {
		poolsync_release(s->gen->sync, s->src);
		s->acquired = false;
	}
}

/* The one "next destination address" step: forget the sources tried for
 * this one; `rep` (0: keep the last) answers if none is left. */
static void next_dest(struct session *s, uint8_t rep)
{
	if (rep)
		s->h->last_rep = rep;
	s->h->dest_i++;
	pool_tried_init(&s->h->tried);
	attempt_src_drop(s);
}

/* The destination policy (SPEC 4.5, dstpolicy.h), for every destination
 * address about to be tried: a literal one from the request and each one a
 * domain resolved to. A refusal is a DEBUG line here; the request is counted
 * once when it is answered 0x02.
 * @return true when sockpool may connect to `sa` for this session. */
static bool dest_allowed(const struct session *s, const struct sockaddr *sa)
{
	enum dstpolicy_verdict v =
	    guard_destination(s->px, s->gen->conf, (const struct sockaddr *)&s->peer, sa);
	char addr[64];

	if (v == DSTPOLICY_ALLOW)
		return true;
	log_debug("session", "id=%llu client=%s dest=%s address=%s refused: %s",
		  (unsigned long long)s->id, s->peer_str, LOG_Q(s->dest_str, SOCKS5_ADDR_STRLEN),
		  conf_addr_str(sa, addr, sizeof addr), dstpolicy_verdict_str(v));
	return false;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res);

void attempt_begin(struct session *s)
{
	const struct conf *conf = s->gen->conf;
	struct sockaddr_storage ss;
	socklen_t slen;

	socks5_addr_str(&s->h->req.dst, s->dest_str, sizeof s->dest_str);
	uv_timer_stop(&s->timer);
	pool_tried_init(&s->h->tried);
	s->h->n_dests = s->h->dest_i = 0;
	s->h->last_rep = SOCKS5_REP_GENERAL_FAILURE;
	s->h->wait_deadline = session_now(s) + conf->server.connect_timeout_ms;
	if (s->h->req.dst.atyp == SOCKS5_ATYP_DOMAIN) {
		struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
		char port[8];

		snprintf(port, sizeof port, "%u", s->h->req.dst.port);
		s->state = S_RESOLVING;
		session_timer_arm(s, conf->server.connect_timeout_ms);
		if (uv_getaddrinfo(s->px->loop, &s->h->gai, on_resolved, s->h->req.dst.u.domain,
				   port, &hints) < 0) {
			session_reply(s, SOCKS5_REP_HOST_UNREACHABLE, NULL);
			return;
		}
		s->refs++;
		return;
	}
	socks5_addr_to_sockaddr(&s->h->req.dst, &ss, &slen);
	if (!dest_allowed(s, (struct sockaddr *)&ss)) {
		stat_add(&s->px->stats.dest_denied, 1);
		session_reply(s, SOCKS5_REP_NOT_ALLOWED, NULL);
		return;
	}
	memset(&s->h->dests[0], 0, sizeof s->h->dests[0]);
	memcpy(&s->h->dests[0], &ss, slen);
	s->h->n_dests = 1;
	s->state = S_CONNECTING;
	attempt_next(s);
}

/* Keep the first distinct addresses of a lookup that the policy allows.
 * @return whether the policy refused any. */
static bool dests_add(struct session *s, const struct addrinfo *res)
{
	bool denied = false;

	for (const struct addrinfo *ai = res; ai && s->h->n_dests < SESSION_MAX_DESTS;
	     ai = ai->ai_next) {
		bool dup = false;
		if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
		    ai->ai_addrlen > sizeof s->h->dests[0])
			continue;
		if (!dest_allowed(s, ai->ai_addr)) {
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
	return denied;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct session *s = container_of(req, struct session_hs, gai)->s;
	bool denied;

	if (s->state != S_RESOLVING) {
		uv_freeaddrinfo(res);
		session_unref(s);
		return;
	}
	if (status < 0) {
		log_debug("session", "id=%llu dest=%s resolve failed: %s",
			  (unsigned long long)s->id, LOG_Q(s->dest_str, SOCKS5_ADDR_STRLEN),
			  uv_strerror(status));
		session_reply(s, SOCKS5_REP_HOST_UNREACHABLE, NULL);
		session_unref(s);
		return;
	}
	denied = dests_add(s, res);
	uv_freeaddrinfo(res);
	if (s->h->n_dests == 0) {
		if (denied)
			stat_add(&s->px->stats.dest_denied, 1);
		session_reply(s, denied ? SOCKS5_REP_NOT_ALLOWED : SOCKS5_REP_HOST_UNREACHABLE,
			      NULL);
	} else {
		uv_timer_stop(&s->timer);
		s->state = S_CONNECTING;
		attempt_next(s);
	}
	session_unref(s);
}

/* The hash key of this request for the pool's `hash_key` (SPEC 2): the
 * destination without its port (the domain as asked, or the address), the
 * client's address, or the user name. Used by the hash strategy and by
 * prefix_pick = hash alike. @return its length; *key points into s or buf. */
static size_t request_key(const struct session *s, uint8_t buf[16], const void **key)
{
	const struct socks5_addr *dst = &s->h->req.dst;

	switch (s->gen->conf->pools[s->pool].hash_key) {
	case CONF_HASH_KEY_CLIENT:
		*key = buf;
		if (s->peer.sa.sa_family == AF_INET) {
			memcpy(buf, &((const struct sockaddr_in *)&s->peer)->sin_addr, 4);
			return 4;
		}
		memcpy(buf, &((const struct sockaddr_in6 *)&s->peer)->sin6_addr, 16);
		return 16;
	case CONF_HASH_KEY_USERNAME:
		*key = s->h->user;
		return strlen(s->h->user);
	case CONF_HASH_KEY_DESTINATION:
	default:
		if (dst->atyp == SOCKS5_ATYP_DOMAIN) {
			*key = dst->u.domain;
			return dst->domain_len;
		}
		*key = dst->atyp == SOCKS5_ATYP_IPV4 ? dst->u.ipv4 : dst->u.ipv6;
		return dst->atyp == SOCKS5_ATYP_IPV4 ? 4 : 16;
	}
}

/* Pick and acquire a source of the request's pool for the current
 * destination. @return 0 with s->src set, or -1 after moving on to the next
 * destination (none left of the family, all suspended or capped). */
static int pick_source(struct session *s, const struct sockaddr *dest)
{
	uint64_t now = session_now(s);
	uint8_t buf[16];
	struct pool_request pr = {
	    .family = dest->sa_family == AF_INET ? POOL_FAMILY_V4 : POOL_FAMILY_V6,
	    .tried = &s->h->tried,
	};
	struct pool_pick pick;

	pr.key_len = request_key(s, buf, &pr.key);
	/* One lock for pick and acquire: the caps count across workers. */
	if (poolsync_pick(s->gen->sync, gen_pool(s->gen, s->pool), &pr, now, &pick) < 0)
		pick.status = POOL_NONE;
	if (pick.status != POOL_NONE)
		s->h->saw_candidate = true;
	if (pick.status != POOL_PICKED) {
		/* Suspended or at a cap: a later time may help. */
		if (pick.status != POOL_NONE && pick.until_ms < s->h->soonest_ms)
			s->h->soonest_ms = pick.until_ms;
		if (pick.status == POOL_BUSY)
			s->h->saw_busy = true;
		next_dest(s, 0);
		return -1;
	}
	s->src = pick.source;
	s->acquired = true;
	s->cs = gen_conf_source(s->gen, s->src);
	return 0;
}

/* The source for the current destination: the pinned one (the MTA chose
 * the IP: exactly this source, no failover) or a pick.
 * @return 0, or -1 after moving on to the next destination. */
static int choose_source(struct session *s)
{
	const struct sockaddr *dest = (struct sockaddr *)&s->h->dests[s->h->dest_i];
	bool fits;

	if (s->pinned < 0 && !s->h->adhoc)
		return pick_source(s, dest);
	s->cs = s->h->adhoc ? NULL : &s->gen->conf->sources[s->pinned];
	fits = s->h->adhoc ? s->h->adhoc_addr.ss_family == dest->sa_family
			   : egress_source_fits(s->cs, dest->sa_family);
	if (!fits) {
		next_dest(s, SOCKS5_REP_NET_UNREACHABLE);
		return -1;
	}
	return 0;
}

/* Whether the address the attempt was bound to has left the host since
 * (SPEC 4.2: a source that vanished between bind and connect). */
static bool source_vanished(const struct session *s, int err)
{
	const struct sockaddr *addr = NULL;

	if (!classify_may_be_vanished(err))
		return false;
	if (s->h->adhoc)
		addr = (const struct sockaddr *)&s->h->adhoc_addr;
	else if (s->cs && s->cs->kind == CONF_SOURCE_ADDRESS)
		addr = (const struct sockaddr *)&s->cs->addr;
	return addr && egress_probe_bind(addr) == -EADDRNOTAVAIL;
}

static enum pool_failure failure_kind(enum classify_blame blame)
{
	switch (blame) {
	case CLASSIFY_BLAME_UNPLUMBED:
		return POOL_FAILURE_UNPLUMBED;
	case CLASSIFY_BLAME_PROXY:
		return POOL_FAILURE_PROXY_UNHEALTHY;
	default:
		return POOL_FAILURE_PORTS_EXHAUSTED;
	}
}

/* Tell the pool. @return true when the request has tried as many sources as
 * it may for this destination. */
static bool source_failure(struct session *s, enum classify_blame blame, int err)
{
	uint64_t now = session_now(s);
	enum pool_state state;
	bool full = false;

	poolsync_report_failure(s->gen->sync, s->src, failure_kind(blame), err ? err : UV_EPROTO,
				now, &state);
	/* A source the failure suspended is skipped by the pool anyway, and
	 * must stay visible to it so that an all-suspended pool answers WAIT. */
	if (state != POOL_STATE_SUSPENDED)
		full = pool_tried_add(&s->h->tried, s->src) == -ENOSPC;
	attempt_src_drop(s);
	return full;
}

static const char *const phase_names[] = {"bind", "connect", "upstream handshake", "upstream BIND",
					  "upstream CONNECT"};

/* The one place that acts on a failure's verdict (SPEC 4.2).
 * @return 0 to go on with attempt_next(), -1 when the request was answered. */
static int attempt_failed(struct session *s, struct classify_input *in)
{
	struct classify_verdict v;

	in->pinned = s->pinned >= 0 || s->h->adhoc;
	v = classify_failure(in);
	log_debug("session", "id=%llu dest=%s source=%s %s failed error=\"%s\" rep=0x%02x",
		  (unsigned long long)s->id, LOG_Q(s->dest_str, SOCKS5_ADDR_STRLEN),
		  s->cs ? s->cs->name : "-", phase_names[in->phase],
		  in->err ? uv_strerror(in->err) : "-", v.rep);
	if (v.blame == CLASSIFY_BLAME_NONE && in->phase == CLASSIFY_BIND)
		throttle_log(s->px, THROTTLE_OUTBOUND_SOCKET, NULL, LOG_WARN, "session",
			     "outbound socket failed",
			     "id=%llu outbound socket failed error=\"%s\"",
			     (unsigned long long)s->id, uv_strerror(in->err));
	if (v.blame != CLASSIFY_BLAME_NONE && s->src && source_failure(s, v.blame, in->err) &&
	    v.next == CLASSIFY_NEXT_SOURCE)
		v.next = CLASSIFY_NEXT_DEST; /* enough sources tried for this address */
	switch (v.next) {
	case CLASSIFY_NEXT_SOURCE:
		attempt_src_drop(s);
		return 0;
	case CLASSIFY_NEXT_DEST:
		next_dest(s, v.rep);
		return 0;
	case CLASSIFY_REPLY:
		session_reply(s, v.rep, NULL);
		return -1;
	}
	return 0;
}

static void on_connected(uv_connect_t *req, int status);

/* Start one attempt from s->cs (NULL for an ad hoc BIND address) to the
 * current destination. @return 0 (attempt under way) or an error, with
 * *fail describing it for attempt_failed(). */
static int attempt_start(struct session *s, struct classify_input *fail)
{
	const struct sockaddr *dest = (struct sockaddr *)&s->h->dests[s->h->dest_i];
	const struct conf_server *srv = &s->gen->conf->server;
	bool via_proxy = s->cs && s->cs->kind == CONF_SOURCE_PROXY;
	const struct sockaddr *target =
	    via_proxy ? (const struct sockaddr *)&s->cs->proxy_server : dest;
	struct attempt *a = session_attempt_alloc(s);
	const void *key;
	size_t keylen;
	uint8_t buf[16];
	int rc;

	*fail = (struct classify_input){.phase = CLASSIFY_BIND, .err = UV_ENOMEM};
	if (!a || (rc = fail->err = uv_tcp_init_ex(s->px->loop, &a->tcp, target->sa_family)) < 0) {
		session_attempt_free(s, a);
		return fail->err;
	}
	a->s = s;
	a->via_proxy = via_proxy;
	a->tcp.data = s;
	s->out = a;
	s->refs++;
	keylen = request_key(s, buf, &key);
	rc = egress_bind(&a->tcp, s->cs, s->h->adhoc ? (struct sockaddr *)&s->h->adhoc_addr : NULL,
			 dest, key, keylen);
	if (rc < 0)
		goto fail;
	/* A bind that worked clears the unplumbed window (rspamd ok()). */
	if (s->src && (s->cs->kind == CONF_SOURCE_ADDRESS || s->cs->kind == CONF_SOURCE_PREFIX))
		poolsync_report_success(s->gen->sync, s->src, session_now(s));
	if ((srv->tcp_keepalive_ms &&
	     (rc = uv_tcp_keepalive(&a->tcp, 1, (unsigned)(srv->tcp_keepalive_ms / 1000 ?: 1))) <
		 0) ||
	    (rc = uv_tcp_nodelay(&a->tcp, 1)) < 0)
		goto fail;
	fail->phase = via_proxy ? CLASSIFY_UPSTREAM_HANDSHAKE : CLASSIFY_CONNECT;
	rc = uv_tcp_connect(&a->req, &a->tcp, target, on_connected);
	if (rc < 0) {
		fail->source_gone = !via_proxy && source_vanished(s, rc);
		goto fail;
	}
	session_timer_arm(s, srv->connect_timeout_ms);
	return 0;
fail:
	fail->err = rc;
	attempt_close(s, false);
	return rc;
}

static void pool_exhausted(struct session *s, uint64_t until)
{
	const char *pool = s->gen->conf->pools[s->pool].name;
	char when[64] = "never";
	uint64_t now = session_now(s);

	if (until != UINT64_MAX) {
		time_t t = time(NULL) + (time_t)((until - now + 999) / 1000);
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
	}
	s->result = PROXY_RESULT_EXHAUSTED;
	throttle_log(s->px, THROTTLE_POOL_EXHAUSTED, pool, LOG_WARN, "pool", "pool exhausted",
		     "pool %s exhausted until %s pool=%s client=%s dest=%s", pool, when, pool,
		     s->peer_str, LOG_Q(s->dest_str, SOCKS5_ADDR_STRLEN));
	proxy_pool_exhausted(s->px, pool);
	session_reply(s, SOCKS5_REP_GENERAL_FAILURE, NULL);
}

/* Every destination address is done without an attempt under way: wait for
 * a suspended pool, or answer. */
static void attempt_give_up(struct session *s)
{
	uint64_t now = session_now(s), soonest = s->h->soonest_ms;

	if (soonest != UINT64_MAX) {
		/* Every eligible source is suspended: wait for the first one to
		 * come back if that is soon enough, then start over. */
		if (soonest <= s->h->wait_deadline) {
			s->state = S_POOL_WAIT;
			s->h->dest_i = 0;
			pool_tried_init(&s->h->tried);
			session_timer_arm(s, soonest > now ? soonest - now : 0);
			return;
		}
		pool_exhausted(s, soonest);
		return;
	}
	if (!s->h->saw_candidate && s->pinned < 0 && !s->h->adhoc)
		s->h->last_rep =
		    SOCKS5_REP_NET_UNREACHABLE; /* no source of any destination's family */
	if (s->h->saw_busy && s->h->last_rep == SOCKS5_REP_GENERAL_FAILURE) {
		/* A source at its cap is skipped quietly, but a request refused
		 * because every source is is something the operator must see. */
		s->result = PROXY_RESULT_EXHAUSTED;
		const char *pool = s->gen->conf->pools[s->pool].name;
		throttle_log(s->px, THROTTLE_POOL_BUSY, pool, LOG_WARN, "pool", "pool busy",
			     "pool %s busy: every source is at its max_connections or rate cap "
			     "pool=%s client=%s dest=%s",
			     pool, pool, s->peer_str, LOG_Q(s->dest_str, SOCKS5_ADDR_STRLEN));
	}
	session_reply(s, s->h->last_rep, NULL);
}

/* The retry loop: choose a source and start an attempt, walking sources
 * then destination addresses, until one attempt is under way or the
 * request must be answered. */
static void attempt_next(struct session *s)
{
	s->h->soonest_ms = UINT64_MAX;
	while (s->h->dest_i < s->h->n_dests) {
		struct classify_input fail;

		if (choose_source(s) < 0)
			continue;
		if (attempt_start(s, &fail) == 0) {
			s->state = S_CONNECTING;
			return;
		}
		if (attempt_failed(s, &fail) < 0)
			return;
	}
	attempt_give_up(s);
}

/* An attempt that already left attempt_next() failed: act, then go on. */
static void attempt_retry(struct session *s, struct classify_input *in)
{
	if (attempt_failed(s, in) == 0)
		attempt_next(s);
}

void attempt_on_timer(struct session *s)
{
	struct classify_input in = {.phase = CLASSIFY_CONNECT, .err = UV_ETIMEDOUT};

	if (s->state == S_POOL_WAIT) {
		s->state = S_CONNECTING;
		attempt_next(s);
		return;
	}
	/* connect_timeout for this attempt: the destination is blamed, unless
	 * it was the source's proxy that did not answer. */
	if (s->out && s->out->via_proxy)
		in.phase = CLASSIFY_UPSTREAM_HANDSHAKE;
	attempt_close(s, true);
	attempt_retry(s, &in);
}

static bool same_ip(const struct sockaddr *a, const struct sockaddr *b)
{
	if (a->sa_family != b->sa_family)
		return false;
	if (a->sa_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	return a->sa_family == AF_INET6 &&
	       memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		      &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
}

size_t attempt_address_gone(struct proxy *px, const struct sockaddr *addr)
{
	struct classify_input in = {
	    .phase = CLASSIFY_CONNECT, .err = UV_EADDRNOTAVAIL, .source_gone = true};
	struct session *s = px->sessions, *next;
	size_t n = 0;

	for (; s; s = next) {
		const struct sockaddr *from = NULL;

		next = s->next;
		if (s->state != S_CONNECTING || !s->out || s->out->via_proxy || !s->h)
			continue;
		if (s->h->adhoc)
			from = (const struct sockaddr *)&s->h->adhoc_addr;
		else if (s->cs && s->cs->kind == CONF_SOURCE_ADDRESS)
			from = (const struct sockaddr *)&s->cs->addr;
		if (!from || !same_ip(from, addr))
			continue;
		log_debug("session",
			  "id=%llu source=%s left the host while connecting: next source",
			  (unsigned long long)s->id, s->cs ? s->cs->name : "-");
		uv_timer_stop(&s->timer);
		attempt_close(s, true);
		attempt_retry(s, &in);
		n++;
	}
	return n;
}

static void on_upstream_done(struct upstream *u, const struct upstream_result *res, void *ctx)
{
	struct session *s = ctx;
	struct attempt *a = s->out;
	struct sockaddr_storage bnd;
	socklen_t blen;
	uint8_t extra[UPSTREAM_READ_MAX];
	size_t extra_len;
	struct classify_input in = {.phase = CLASSIFY_UPSTREAM_CONNECT, .rep = res->rep};

	if (!a || a->up != u || s->state != S_CONNECTING)
		return;
	a->handshaking = false;
	uv_timer_stop(&s->timer);
	if (res->status == UPSTREAM_OK) {
		extra_len = res->extra_len;
		memcpy(extra, res->extra, extra_len);
		poolsync_report_success(s->gen->sync, s->src, session_now(s));
		/* BND.ADDR: what the upstream says the destination sees. */
		relay_start(s,
			    socks5_addr_to_sockaddr(&res->bnd, &bnd, &blen) < 0
				? NULL
				: (struct sockaddr *)&bnd,
			    extra, extra_len);
		return;
	}
	if (res->status == UPSTREAM_PROXY_FAILED) {
		in.phase = res->rep ? CLASSIFY_UPSTREAM_BIND : CLASSIFY_UPSTREAM_HANDSHAKE;
		in.err = res->err ? res->err : UV_EPROTO;
		log_debug("session", "id=%llu source=%s upstream proxy failed: %s",
			  (unsigned long long)s->id, s->cs ? s->cs->name : "-", res->why);
	}
	attempt_close(s, false);
	attempt_retry(s, &in);
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
	struct classify_input in = {.phase = CLASSIFY_UPSTREAM_HANDSHAKE, .err = UV_ENOMEM};

	socks5_addr_from_sockaddr(&dst, (struct sockaddr *)&s->h->dests[s->h->dest_i]);
	a->up = calloc(1, sizeof *a->up);
	if (a->up)
		in.err = upstream_start(a->up, (uv_stream_t *)&a->tcp, &p, on_upstream_done, s);
	if (in.err < 0) {
		attempt_close(s, false);
		attempt_retry(s, &in);
		return;
	}
	a->handshaking = true;
}

static void on_connected(uv_connect_t *req, int status)
{
	struct attempt *a = container_of(req, struct attempt, req);
	struct session *s = a->s;
	struct classify_input in = {.phase = CLASSIFY_CONNECT, .err = status};

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
	if (a->via_proxy)
		in.phase = CLASSIFY_UPSTREAM_HANDSHAKE;
	else
		in.source_gone = source_vanished(s, status);
	attempt_close(s, false);
	attempt_retry(s, &in);
}
