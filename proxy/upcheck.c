/* upcheck: health checks of upstream SOCKS5 sources. See upcheck.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"
#include "log.h"
#include "pool.h"
#include "upcheck.h"
#include "upstream.h"

enum probe_state {
	P_IDLE,	      /* waiting for the period timer */
	P_CONNECTING, /* TCP connect to the upstream */
	P_HANDSHAKE,  /* greeting (and auth) */
	P_CLOSING,    /* result reported, TCP handle closing */
};

/* One upstream health check: one source of one generation. */
struct probe {
	struct proxy_main *px; /* NULL once retired: then it only closes and frees */
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

struct upchecks {
	struct probe *head;
};

/* The pool source of conf source `conf_index` in the current generation. */
static struct pool_source *source_at(const struct proxy_main *px, size_t conf_index)
{
	return gen_pool_source(px->gen, conf_index);
}

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
	if (p->px)
		uv_timer_start(&p->timer, on_probe_timer, p->period_ms, 0);
	on_probe_handle_closed(handle);
}

/* Report the outcome to the pool and close the connection; the next check
 * is armed once it is closed. */
static void probe_done(struct probe *p, bool ok, int err, const char *why)
{
	struct proxy_main *px = p->px;
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
		if (src) {
			poolsync_lock(&px->sync);
			pool_report_check_ok(
			    src, px->gen->conf->sources[p->idx].resume_when_healthy, now);
			poolsync_unlock(&px->sync);
		}
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
		if (src)
			poolsync_report_failure(&px->sync, src, POOL_FAILURE_PROXY_UNHEALTHY,
						err ? err : -EPROTO, now, NULL);
	}
	p->failing = !ok;
	p->state = P_CLOSING;
	uv_close((uv_handle_t *)&p->tcp, on_tcp_closed);
}

static void on_probe_result(struct upstream *u, const struct upstream_result *res, void *ctx)
{
	struct probe *p = ctx;

	(void)u;
	if (!p->px || p->state != P_HANDSHAKE)
		return;
	probe_done(p, res->status == UPSTREAM_OK, res->err, res->why);
}

static void on_probe_connect(uv_connect_t *req, int status)
{
	struct probe *p = req->data;
	struct upstream_params params = {.username = p->user, .password = p->pass};
	int rc;

	if (!p->px || p->state != P_CONNECTING)
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

	if (!p->px)
		return;
	if (p->state == P_CONNECTING || p->state == P_HANDSHAKE) {
		if (p->state == P_HANDSHAKE)
			upstream_cancel(&p->up);
		probe_done(p, false, UV_ETIMEDOUT, "no answer from the proxy");
		return;
	}
	if (p->state != P_IDLE)
		return;
	rc = uv_tcp_init(p->px->loop, &p->tcp);
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

static int probe_new(struct proxy_main *px, size_t idx, struct probe **out)
{
	const struct conf *conf = px->gen->conf;
	const struct conf_source *cs = &conf->sources[idx];
	struct probe *p = calloc(1, sizeof *p);
	int rc;

	if (!p)
		return -ENOMEM;
	p->px = px;
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
	rc = uv_timer_init(px->loop, &p->timer);
	if (rc < 0) {
		probe_free(p);
		return rc;
	}
	p->timer.data = p;
	p->handles = 1;
	/* The first check at once: know before the first request does. */
	uv_timer_start(&p->timer, on_probe_timer, 0, 0);
	*out = p;
	return 0;
}

static void probe_retire(struct probe *p)
{
	p->px = NULL;
	uv_timer_stop(&p->timer);
	if (p->state == P_HANDSHAKE)
		upstream_cancel(&p->up);
	if (p->state == P_CONNECTING || p->state == P_HANDSHAKE) {
		p->state = P_CLOSING;
		uv_close((uv_handle_t *)&p->tcp, on_tcp_closed);
	}
	uv_close((uv_handle_t *)&p->timer, on_probe_handle_closed);
}

void upcheck_stop(struct upchecks *u)
{
	struct probe *p, *next;

	if (!u)
		return;
	for (p = u->head; p; p = next) {
		next = p->next;
		probe_retire(p);
	}
	free(u);
}

int upcheck_start(struct proxy_main *px, struct upchecks **out)
{
	const struct conf *conf;
	struct upchecks *u;

	if (!px || !px->gen || !out)
		return -EINVAL;
	conf = px->gen->conf;
	u = calloc(1, sizeof *u);
	if (!u)
		return -ENOMEM;

	for (size_t i = 0; i < conf->n_sources; i++) {
		const struct conf_source *cs = &conf->sources[i];
		struct probe *p;

		if (cs->kind != CONF_SOURCE_PROXY || !cs->health_check_ms)
			continue;
		if (probe_new(px, i, &p) < 0) {
			log_error("health", "out of memory: no upstream check for source=%s",
				  cs->name);
			continue;
		}
		p->next = u->head;
		u->head = p;
	}
	*out = u;
	return 0;
}
