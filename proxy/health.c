/* health: the address watch policy, the start and reload check, and the
 * upstream checks started with them. See health.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addrwatch.h"
#include "egress.h"
#include "health.h"
#include "log.h"
#include "pool.h"
#include "poolsync.h"
#include "upcheck.h"

/* The WARN of the start check lists at most this much; the count is exact. */
#define HEALTH_LIST_MAX 640

struct health {
	struct proxy_main *px;
	struct addrwatch *watch;
	bool watch_tried;
	struct upchecks *upchecks;
	uv_timer_t recheck; /* after an expiry: are those addresses still missing? */
	uv_async_t online;  /* the pool watcher, on any worker, asks for a recheck */
	unsigned handles;   /* of recheck and online, open */
};

/* The two places that know how a generation is looked up. */
static struct pool_source *source_at(const struct proxy_main *px, size_t conf_index)
{
	return gen_pool_source(px->gen, conf_index);
}

static int find_source(const struct proxy_main *px, const struct sockaddr *addr)
{
	return gen_find_source(px->gen, addr);
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

static void on_address(const struct sockaddr *addr, bool present, void *ctx)
{
	struct health *h = ctx;
	struct proxy_main *px = h->px;
	const struct conf *conf = px->gen->conf;
	uint64_t now = uv_now(px->loop);
	int idx = find_source(px, addr);
	char text[64];
	const struct conf_source *cs = idx < 0 ? NULL : &conf->sources[idx];
	struct pool_source *src = idx < 0 ? NULL : source_at(px, (size_t)idx);

	conf_addr_str(addr, text, sizeof text);
	if (!present) {
		/* Suspended first, so that the moved attempts do not pick it again. */
		if (src) {
			log_info("addrwatch", "address gone from the host source=%s address=%s",
				 cs->name, text);
			poolsync_lock(&px->sync);
			pool_report_absent(src, EADDRNOTAVAIL, now);
			poolsync_unlock(&px->sync);
		}
		/* Also a BIND to an unlisted address (bind_unlisted = allow).
		 * The sessions are the workers': each moves its own. */
		proxy_address_gone(px, addr);
		return;
	}
	if (!src)
		return;
	log_info("addrwatch", "address on the host source=%s address=%s", cs->name, text);
	poolsync_lock(&px->sync);
	if (cs->resume_when_plumbed && suspended_for(src, POOL_REASON_UNPLUMBED, now))
		pool_source_resume(src, now);
	poolsync_unlock(&px->sync);
}

/* An unplumbed suspension ended by expiry while the watch knows the address
 * is still missing: suspend it again before a request tries it. */
static void on_recheck(uv_timer_t *t)
{
	struct health *h = container_of(t, struct health, recheck);
	struct proxy_main *px = h->px;
	const struct conf *conf = px->gen->conf;
	uint64_t now = uv_now(px->loop);
	char text[64];

	for (size_t i = 0; h->watch && i < conf->n_sources; i++) {
		const struct conf_source *cs = &conf->sources[i];
		struct pool_source *src = source_at(px, i);
		struct pool_source_info info;

		if (cs->kind != CONF_SOURCE_ADDRESS || !src ||
		    addrwatch_present(h->watch, (const struct sockaddr *)&cs->addr) != 0)
			continue;
		poolsync_get_info(&px->sync, src, now, &info);
		if (info.state != POOL_STATE_ELIGIBLE)
			continue;
		conf_addr_str((const struct sockaddr *)&cs->addr, text, sizeof text);
		log_info("addrwatch", "address still not on the host source=%s address=%s",
			 cs->name, text);
		poolsync_lock(&px->sync);
		pool_report_absent(src, EADDRNOTAVAIL, now);
		poolsync_unlock(&px->sync);
	}
}

/* A pool watcher: it may not change the pools, so it only arms on_recheck.
 * Its context is the proxy, which outlives every generation (older ones stay
 * live while sessions hold them, and carry a copy of the watcher); after
 * health_stop() px->health is NULL and it does nothing. */
static void on_pool_online(const struct pool_event *ev, void *ctx)
{
	struct proxy_main *px = ctx;
	struct health *h = px->health; /* cleared under the pool lock, as this runs */

	/* Any worker's thread: the timer is the main loop's, so wake it. */
	if (h && ev->type == POOL_EVENT_ONLINE && ev->reason == POOL_REASON_UNPLUMBED &&
	    !ev->resumed)
		uv_async_send(&h->online);
}

static void on_online(uv_async_t *a)
{
	struct health *h = container_of(a, struct health, online);

	if (h->watch)
		uv_timer_start(&h->recheck, on_recheck, 0, 0);
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
	struct proxy_main *px = m->h->px;
	char addr[64];
	struct pool_source *src = source_at(px, (size_t)(cs - px->gen->conf->sources));

	if (src) {
		poolsync_lock(&px->sync);
		pool_report_absent(src, err, m->now);
		poolsync_unlock(&px->sync);
	}
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
	struct proxy_main *px = h->px;
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
		bool was;

		if (cs->kind != CONF_SOURCE_ADDRESS || !cs->resume_when_plumbed || !src)
			continue;
		poolsync_lock(&px->sync);
		was = suspended_for(src, POOL_REASON_UNPLUMBED, m.now);
		poolsync_unlock(&px->sync);
		if (!was || egress_probe_bind((const struct sockaddr *)&cs->addr) < 0)
			continue;
		poolsync_resume(&px->sync, src, m.now);
	}
}

int health_start(struct proxy_main *px, struct health **out)
{
	struct health *h;

	if (!px || !px->gen || !out)
		return -EINVAL;
	h = calloc(1, sizeof *h);
	if (!h)
		return -ENOMEM;
	h->px = px;
	if (uv_timer_init(px->loop, &h->recheck) < 0) {
		free(h);
		return -ENOMEM; /* libuv's timer init fails only on bad arguments */
	}
	h->handles = 1;
	if (uv_async_init(px->loop, &h->online, on_online) < 0) {
		free(h);
		return -ENOMEM; /* an eventfd: the process is out of descriptors */
	}
	h->handles = 2;
	uv_unref((uv_handle_t *)&h->online);
	/* Once for the process: pool_set_new_from() copies it to later
	 * generations. Without it an expiry lets a missing address be tried. */
	if (pool_set_watch(px->gen->pools, POOL_EVENT_MASK(POOL_EVENT_ONLINE), on_pool_online, px) <
	    0)
		log_error("health", "out of memory: expired suspensions of missing addresses "
				    "are found by requests");
	/* Watch first, then test-bind: a change in between is not missed. */
	watch_ensure(h);
	check_addresses(h, "start");
	if (upcheck_start(px, &h->upchecks) < 0)
		log_error("health", "out of memory: no upstream checks");
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
	upcheck_stop(h->upchecks);
	h->upchecks = NULL;
	if (upcheck_start(h->px, &h->upchecks) < 0)
		log_error("health", "out of memory: no upstream checks");
}

static void on_handle_closed(uv_handle_t *handle)
{
	struct health *h = handle->data;

	if (--h->handles == 0)
		free(h);
}

void health_stop(struct health *h)
{
	if (!h)
		return;
	upcheck_stop(h->upchecks);
	addrwatch_stop(h->watch);
	h->watch = NULL;
	h->recheck.data = h->online.data = h;
	uv_close((uv_handle_t *)&h->recheck, on_handle_closed);
	uv_close((uv_handle_t *)&h->online, on_handle_closed);
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
