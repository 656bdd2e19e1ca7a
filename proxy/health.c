/* health: address watch policy, the start check and upstream health checks.
 * See health.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addrwatch.h"
#include "egress.h"
#include "health.h"
#include "log.h"
#include "pool.h"
#include "upstream.h"

/* The WARN of the start check lists at most this much; the count is exact. */
#define HEALTH_LIST_MAX 640

enum probe_state {
	P_IDLE,	      /* waiting for the period timer */
	P_CONNECTING, /* TCP connect to the upstream */
	P_HANDSHAKE,  /* greeting (and auth) */
	P_CLOSING,    /* result reported, TCP handle closing */
};

/* One upstream health check: one source of one generation. */
struct probe {
	struct health *h; /* NULL once retired: then it only closes and frees */
	struct probe *next;
	size_t idx; /* conf source index in px->gen */
	char *name;
	char server_str[64];
	struct sockaddr_storage server;
	char *user, *pass;
	uint64_t period_ms, timeout_ms;
	enum probe_state state;
	bool failing; /* the last check failed: log only transitions above DEBUG */
	unsigned handles;
	uv_timer_t timer;
	uv_tcp_t tcp;
	uv_connect_t creq;
	struct upstream up;
};

struct health {
	struct proxy *px;
	struct addrwatch *watch;
	bool watch_tried;
	struct probe *probes;
};

/* The three places that know how generations are looked up and how the
 * proxy hears about pool changes. */
static struct pool_source *source_at(const struct proxy *px, size_t conf_index)
{
	return gen_pool_source(px->gen, conf_index);
}

static int find_source(const struct proxy *px, const struct sockaddr *addr)
{
	return gen_find_source(px->gen, addr);
}

/* Nothing to do: poolwatch.c hears of every ONLINE and OFFLINE itself. */
static void pools_changed(struct proxy *px)
{
	(void)px;
}

static bool has_address_sources(const struct conf *conf)
{
	for (size_t i = 0; i < conf->n_sources; i++)
		if (conf->sources[i].kind == CONF_SOURCE_ADDRESS)
			return true;
	return false;
}

static bool suspended_for(struct pool_source *src, enum pool_reason reason, uint64_t now)
{
	struct pool_source_info info;

	pool_source_get_info(src, now, &info);
	return info.state == POOL_STATE_SUSPENDED && info.reason == reason;
}

/* ---- the address watch ---- */

static void on_address(const struct sockaddr *addr, bool present, void *ctx)
{
	struct health *h = ctx;
	struct proxy *px = h->px;
	const struct conf *conf = px->gen->conf;
	uint64_t now = uv_now(px->loop);
	int idx = find_source(px, addr);
	char text[64];

	if (idx < 0)
		return;
	const struct conf_source *cs = &conf->sources[idx];
	struct pool_source *src = source_at(px, (size_t)idx);
	if (!src)
		return;
	conf_addr_str(addr, text, sizeof text);
	if (!present) {
		log_info("addrwatch", "address gone from the host source=%s address=%s", cs->name,
			 text);
		pool_report_absent(src, EADDRNOTAVAIL, now);
	} else {
		log_info("addrwatch", "address on the host source=%s address=%s", cs->name, text);
		if (cs->resume_when_plumbed && suspended_for(src, POOL_REASON_UNPLUMBED, now))
			pool_source_resume(src, now);
	}
	pools_changed(px);
}

static void watch_ensure(struct health *h)
{
	int rc;

	if (h->watch || h->watch_tried || !has_address_sources(h->px->gen->conf))
		return;
	h->watch_tried = true;
	rc = addrwatch_new(on_address, h, &h->watch);
	if (rc == 0)
		rc = addrwatch_start(h->watch, h->px->loop);
	if (rc < 0) {
		log_warn("addrwatch",
			 "cannot watch the host's addresses error=\"%s\": an address that goes is "
			 "learned from failed requests, resume_when_plumbed waits for expiry",
			 strerror(-rc));
		addrwatch_stop(h->watch);
		h->watch = NULL;
	}
}

/* ---- the start and reload check ---- */

size_t health_missing_addresses(const struct conf *conf, health_missing_cb cb, void *ctx)
{
	size_t n = 0;

	for (size_t i = 0; conf && i < conf->n_sources; i++) {
		const struct conf_source *cs = &conf->sources[i];
		int rc;

		if (cs->kind != CONF_SOURCE_ADDRESS)
			continue;
		rc = egress_probe_bind((const struct sockaddr *)&cs->addr);
		if (rc == 0)
			continue;
		n++;
		if (cb)
			cb(cs, -rc, ctx);
	}
	return n;
}

struct missing_list {
	struct health *h;
	uint64_t now;
	char text[HEALTH_LIST_MAX];
	size_t len;
	bool cut;
};

static void on_missing(const struct conf_source *cs, int err, void *ctx)
{
	struct missing_list *m = ctx;
	struct proxy *px = m->h->px;
	char addr[64];
	struct pool_source *src = source_at(px, (size_t)(cs - px->gen->conf->sources));

	if (src)
		pool_report_absent(src, err, m->now);
	conf_addr_str((const struct sockaddr *)&cs->addr, addr, sizeof addr);
	int n = snprintf(m->text + m->len, sizeof m->text - m->len, "%s%s=%s", m->len ? "," : "",
			 cs->name, addr);
	if (n < 0 || (size_t)n >= sizeof m->text - m->len)
		m->cut = true;
	else
		m->len += (size_t)n;
}

static void check_addresses(struct health *h, const char *when)
{
	struct proxy *px = h->px;
	const struct conf *conf = px->gen->conf;
	struct missing_list m = {.h = h, .now = uv_now(px->loop)};
	size_t n = health_missing_addresses(conf, on_missing, &m);

	if (n)
		log_warn("health",
			 "%s: source addresses not on this host, suspended as unplumbed count=%zu "
			 "sources=%s%s",
			 when, n, m.text, m.cut ? ",..." : "");
	/* Back while we were not watching (a reload): resume_when_plumbed holds. */
	for (size_t i = 0; i < conf->n_sources; i++) {
		const struct conf_source *cs = &conf->sources[i];
		struct pool_source *src = source_at(px, i);
		if (cs->kind != CONF_SOURCE_ADDRESS || !cs->resume_when_plumbed || !src ||
		    !suspended_for(src, POOL_REASON_UNPLUMBED, m.now) ||
		    egress_probe_bind((const struct sockaddr *)&cs->addr) < 0)
			continue;
		pool_source_resume(src, m.now);
	}
	pools_changed(px);
}

/* ---- upstream health checks ---- */

static void probe_free(struct probe *p)
{
	free(p->name);
	if (p->pass)
		explicit_bzero(p->pass, strlen(p->pass));
	free(p->user);
	free(p->pass);
	free(p);
}

static void on_probe_handle_closed(uv_handle_t *handle)
{
	struct probe *p = handle->data;

	if (--p->handles == 0)
		probe_free(p);
}

static void on_probe_timer(uv_timer_t *t);

static void on_tcp_closed(uv_handle_t *handle)
{
	struct probe *p = handle->data;

	p->state = P_IDLE;
	if (p->h)
		uv_timer_start(&p->timer, on_probe_timer, p->period_ms, 0);
	on_probe_handle_closed(handle);
}

/* Report the outcome to the pool and close the connection; the next check
 * is armed once it is closed. */
static void probe_done(struct probe *p, bool ok, int err, const char *why)
{
	struct proxy *px = p->h->px;
	struct pool_source *src = source_at(px, p->idx);
	uint64_t now = uv_now(px->loop);

	uv_timer_stop(&p->timer);
	if (ok) {
		if (p->failing)
			log_info("health", "upstream check passes again source=%s proxy=%s",
				 p->name, p->server_str);
		else
			log_debug("health", "upstream check passed source=%s proxy=%s", p->name,
				  p->server_str);
		if (src && pool_report_check_ok(
			       src, px->gen->conf->sources[p->idx].resume_when_healthy, now) == 1)
			pools_changed(px);
	} else {
		const char *text = err ? uv_strerror(err) : "protocol error";
		if (!p->failing)
			log_info("health",
				 "upstream check failed source=%s proxy=%s error=\"%s: %s\"",
				 p->name, p->server_str, why, text);
		else
			log_debug("health",
				  "upstream check failed source=%s proxy=%s error=\"%s: %s\"",
				  p->name, p->server_str, why, text);
		if (src) {
			pool_report_failure(src, POOL_FAILURE_PROXY_UNHEALTHY, err ? err : -EPROTO,
					    now);
			pools_changed(px);
		}
	}
	p->failing = !ok;
	p->state = P_CLOSING;
	uv_close((uv_handle_t *)&p->tcp, on_tcp_closed);
}

static void on_probe_result(struct upstream *u, const struct upstream_result *res, void *ctx)
{
	struct probe *p = ctx;

	(void)u;
	if (!p->h || p->state != P_HANDSHAKE)
		return;
	probe_done(p, res->status == UPSTREAM_OK, res->err, res->why);
}

static void on_probe_connect(uv_connect_t *req, int status)
{
	struct probe *p = req->data;
	struct upstream_params params = {.username = p->user, .password = p->pass};
	int rc;

	if (!p->h || p->state != P_CONNECTING)
		return; /* retired or timed out: the handle is closing */
	if (status < 0) {
		probe_done(p, false, status, "cannot connect to the proxy");
		return;
	}
	p->state = P_HANDSHAKE;
	rc = upstream_start(&p->up, (uv_stream_t *)&p->tcp, &params, on_probe_result, p);
	if (rc < 0)
		probe_done(p, false, rc, "cannot start the handshake");
}

static void on_probe_timer(uv_timer_t *t)
{
	struct probe *p = t->data;
	int rc;

	if (!p->h)
		return;
	if (p->state == P_CONNECTING || p->state == P_HANDSHAKE) {
		if (p->state == P_HANDSHAKE)
			upstream_cancel(&p->up);
		probe_done(p, false, UV_ETIMEDOUT, "no answer from the proxy");
		return;
	}
	if (p->state != P_IDLE)
		return;
	rc = uv_tcp_init(p->h->px->loop, &p->tcp);
	if (rc < 0) {
		log_warn("health", "cannot check source=%s error=\"%s\"", p->name, uv_strerror(rc));
		uv_timer_start(&p->timer, on_probe_timer, p->period_ms, 0);
		return;
	}
	p->handles++;
	p->tcp.data = p;
	p->creq.data = p;
	p->state = P_CONNECTING;
	uv_timer_start(&p->timer, on_probe_timer, p->timeout_ms, 0);
	rc = uv_tcp_connect(&p->creq, &p->tcp, (const struct sockaddr *)&p->server,
			    on_probe_connect);
	if (rc < 0)
		probe_done(p, false, rc, "cannot connect to the proxy");
}

static int probe_new(struct health *h, size_t idx, struct probe **out)
{
	const struct conf *conf = h->px->gen->conf;
	const struct conf_source *cs = &conf->sources[idx];
	struct probe *p = calloc(1, sizeof *p);

	if (!p)
		return -ENOMEM;
	p->h = h;
	p->idx = idx;
	p->server = cs->proxy_server;
	conf_addr_str((const struct sockaddr *)&cs->proxy_server, p->server_str,
		      sizeof p->server_str);
	p->period_ms = cs->health_check_ms;
	p->timeout_ms = conf->server.connect_timeout_ms;
	if (p->timeout_ms > p->period_ms)
		p->timeout_ms = p->period_ms;
	p->name = strdup(cs->name);
	p->user = cs->proxy_username ? strdup(cs->proxy_username) : NULL;
	p->pass = cs->proxy_password ? strdup(cs->proxy_password) : NULL;
	if (!p->name || (cs->proxy_username && !p->user) || (cs->proxy_password && !p->pass)) {
		probe_free(p);
		return -ENOMEM;
	}
	uv_timer_init(h->px->loop, &p->timer);
	p->timer.data = p;
	p->handles = 1;
	/* The first check at once: know before the first request does. */
	uv_timer_start(&p->timer, on_probe_timer, 0, 0);
	*out = p;
	return 0;
}

static void probe_retire(struct probe *p)
{
	p->h = NULL;
	uv_timer_stop(&p->timer);
	if (p->state == P_HANDSHAKE)
		upstream_cancel(&p->up);
	if (p->state == P_CONNECTING || p->state == P_HANDSHAKE) {
		p->state = P_CLOSING;
		uv_close((uv_handle_t *)&p->tcp, on_tcp_closed);
	}
	uv_close((uv_handle_t *)&p->timer, on_probe_handle_closed);
}

static void probes_retire(struct health *h)
{
	struct probe *p = h->probes, *next;

	for (; p; p = next) {
		next = p->next;
		probe_retire(p);
	}
	h->probes = NULL;
}

static void probes_start(struct health *h)
{
	const struct conf *conf = h->px->gen->conf;

	for (size_t i = 0; i < conf->n_sources; i++) {
		const struct conf_source *cs = &conf->sources[i];
		struct probe *p;

		if (cs->kind != CONF_SOURCE_PROXY || !cs->health_check_ms)
			continue;
		if (probe_new(h, i, &p) < 0) {
			log_error("health", "out of memory: no upstream check for source=%s",
				  cs->name);
			continue;
		}
		p->next = h->probes;
		h->probes = p;
	}
}

/* ---- lifecycle ---- */

int health_start(struct proxy *px, struct health **out)
{
	struct health *h;

	if (!px || !px->gen || !out)
		return -EINVAL;
	h = calloc(1, sizeof *h);
	if (!h)
		return -ENOMEM;
	h->px = px;
	/* Watch first, then test-bind: a change in between is not missed. */
	watch_ensure(h);
	check_addresses(h, "start");
	probes_start(h);
	*out = h;
	return 0;
}

void health_reload(struct health *h)
{
	if (!h)
		return;
	h->watch_tried = false;
	watch_ensure(h);
	check_addresses(h, "reload");
	probes_retire(h);
	probes_start(h);
}

void health_stop(struct health *h)
{
	if (!h)
		return;
	probes_retire(h);
	addrwatch_stop(h->watch);
	free(h);
}

int health_present(const struct health *h, size_t conf_index)
{
	const struct conf *conf;
	const struct sockaddr *addr;
	int rc;

	if (!h || conf_index >= h->px->gen->conf->n_sources)
		return -1;
	conf = h->px->gen->conf;
	if (conf->sources[conf_index].kind != CONF_SOURCE_ADDRESS)
		return -1;
	addr = (const struct sockaddr *)&conf->sources[conf_index].addr;
	if (h->watch && (rc = addrwatch_present(h->watch, addr)) >= 0)
		return rc;
	return egress_probe_bind(addr) == 0 ? 1 : 0;
}
