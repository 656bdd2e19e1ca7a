/* poolwatch: the pool set's watchers: pool events to logs, and ONLINE /
 * OFFLINE to the proxy's reaction (expiry timer, refuse-mode listeners),
 * deferred onto the main loop so that nothing runs inside the pool call.
 * They run under the pool lock, on whichever worker thread made the
 * change: one line per transition, never one per worker. */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "pool.h"
#include "proxy.h"

static void fmt_ms(uint64_t ms, char *buf, size_t len)
{
	if (ms == UINT64_MAX)
		snprintf(buf, len, "until-resumed");
	else if (ms % 3600000 == 0 && ms)
		snprintf(buf, len, "%lluh", (unsigned long long)(ms / 3600000));
	else if (ms % 60000 == 0 && ms)
		snprintf(buf, len, "%llum", (unsigned long long)(ms / 60000));
	else if (ms % 1000 == 0)
		snprintf(buf, len, "%llus", (unsigned long long)(ms / 1000));
	else
		snprintf(buf, len, "%llums", (unsigned long long)ms);
}

static void log_offline(const struct pool_event *ev, const char *name, const char *addr)
{
	char dur[32], per[32], win[64];

	fmt_ms(ev->duration_ms, dur, sizeof dur);
	if (ev->reason == POOL_REASON_MANUAL) {
		log_warn("pool", "source suspended source=%s address=%s reason=manual duration=%s",
			 name, addr, dur);
		return;
	}
	if (ev->trigger_count <= 1) {
		snprintf(win, sizeof win, "immediate");
	} else {
		fmt_ms(ev->trigger_period_ms, per, sizeof per);
		snprintf(win, sizeof win, "%u/%s", ev->trigger_count, per);
	}
	log_warn("pool",
		 "source suspended source=%s address=%s reason=%s error=\"%s\" failures=%u "
		 "trigger=%s duration=%s",
		 name, addr, pool_reason_name(ev->reason), ev->err ? strerror(ev->err) : "-",
		 ev->errors, win, dur);
}

/* The logging watcher: WARN into suspension, INFO out of it. */
static void on_pool_event_log(const struct pool_event *ev, void *ctx)
{
	const char *name = pool_source_name(ev->source);
	const char *id = pool_source_identity(ev->source);
	const char *addr = strchr(id, ' ') ? strchr(id, ' ') + 1 : id;

	(void)ctx;
	switch (ev->type) {
	case POOL_EVENT_OFFLINE:
		log_offline(ev, name, addr);
		break;
	case POOL_EVENT_ONLINE:
		log_info("pool", "source resumed source=%s address=%s reason=%s by=%s", name, addr,
			 pool_reason_name(ev->reason), ev->resumed ? "resume" : "expiry");
		break;
	case POOL_EVENT_FAILURE:
		log_debug("pool",
			  "source failure source=%s address=%s kind=%s error=\"%s\" errors=%u",
			  name, addr, pool_failure_name(ev->kind),
			  ev->err ? strerror(ev->err) : "-", ev->errors);
		break;
	default:
		break;
	}
}

/* The proxy's watcher. It runs inside the pool call that made the change,
 * where the set must not be touched: it only asks the loop to look later.
 * uv_async_send() is also what another thread's loop may call. */
static void on_pool_event(const struct pool_event *ev, void *ctx)
{
	struct proxy_main *m = ctx;

	(void)ev;
	/* Under the pool lock, as poolwatch_stop() clears it. */
	if (m->pools_watched)
		uv_async_send(&m->pools_async);
}

static void on_expire_timer(uv_timer_t *t);

/* End due suspensions, arm the timer for the next one, and reopen refuse-mode
 * listeners. Suspensions ended here fire ONLINE again, which schedules one
 * more, idle, look. */
static void pools_look(struct proxy_main *m)
{
	uint64_t now = uv_now(m->loop);
	uint64_t next = poolsync_expire(&m->sync, m->gen->pools, now);

	if (m->stopping)
		return;
	if (next == UINT64_MAX)
		uv_timer_stop(&m->expire_timer);
	else /* at least 1 ms: a due expiry must never make the timer spin */
		uv_timer_start(&m->expire_timer, on_expire_timer, next > now ? next - now : 1, 0);
	proxy_listeners_resume(m);
}

static void on_expire_timer(uv_timer_t *t)
{
	pools_look(container_of(t, struct proxy_main, expire_timer));
}

static void on_pools_async(uv_async_t *a)
{
	pools_look(container_of(a, struct proxy_main, pools_async));
}

int poolwatch_start(struct proxy_main *m)
{
	unsigned log_mask = POOL_EVENT_MASK(POOL_EVENT_OFFLINE) |
			    POOL_EVENT_MASK(POOL_EVENT_ONLINE) |
			    POOL_EVENT_MASK(POOL_EVENT_FAILURE);
	unsigned mask = POOL_EVENT_MASK(POOL_EVENT_OFFLINE) | POOL_EVENT_MASK(POOL_EVENT_ONLINE);
	int rc;

	rc = uv_async_init(m->loop, &m->pools_async, on_pools_async);
	if (rc < 0)
		return rc;
	m->pools_watched = true;
	/* Watchers are copied to every later generation's set; m outlives them. */
	if ((rc = pool_set_watch(m->gen->pools, log_mask, on_pool_event_log, NULL)) < 0 ||
	    (rc = pool_set_watch(m->gen->pools, mask, on_pool_event, m)) < 0)
		return rc;
	return 0;
}

void poolwatch_kick(struct proxy_main *m)
{
	if (m->pools_watched)
		uv_async_send(&m->pools_async);
}

void poolwatch_stop(struct proxy_main *m)
{
	uv_timer_stop(&m->expire_timer);
	if (!m->pools_watched)
		return;
	/* A worker's watcher may be about to send: not once this is false. */
	poolsync_lock(&m->sync);
	m->pools_watched = false;
	poolsync_unlock(&m->sync);
	uv_close((uv_handle_t *)&m->pools_async, NULL);
}
