/* throttle: see throttle.h. */
#include "throttle.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"
#include "stat.h"

/* Keys (pools) tracked apart per kind; more share the last slot. */
#define KEYS_PER_KIND 8
#define KEY_MAX	      72
#define LABEL_MAX     128

struct slot {
	struct log_limit lim;
	char key[KEY_MAX];
	char label[LABEL_MAX];
	char component[16];
	enum log_level level;
	bool used;
};

/* One per process, shared by the workers: its timer and `wake` live on the
 * loop it was started on (the main loop); `mu` guards the slots, and a
 * worker asks that loop to re-arm the timer through `wake`. */
struct throttle {
	uv_loop_t *loop;
	uv_timer_t timer;
	uv_async_t wake;
	unsigned handles; /* open of timer and wake */
	uv_mutex_t mu;
	uint64_t timer_at; /* when the timer fires, UINT64_MAX when idle (loop thread) */
	struct slot slots[THROTTLE_COUNT][KEYS_PER_KIND];
};

static void on_timer(uv_timer_t *t);
static void on_wake(uv_async_t *a);
static void on_closed(uv_handle_t *h);

int throttle_start(struct proxy *px)
{
	struct throttle *th = calloc(1, sizeof *th);
	int rc;

	if (!th || uv_mutex_init(&th->mu) < 0) {
		free(th);
		return -ENOMEM;
	}
	th->loop = px->loop;
	th->timer_at = UINT64_MAX;
	for (size_t k = 0; k < THROTTLE_COUNT; k++)
		for (size_t i = 0; i < KEYS_PER_KIND; i++)
			log_limit_init(&th->slots[k][i].lim, LOG_LIMIT_INTERVAL_MS);
	if ((rc = uv_timer_init(th->loop, &th->timer)) < 0) {
		uv_mutex_destroy(&th->mu);
		free(th);
		return rc;
	}
	th->timer.data = th->wake.data = th;
	th->handles = 1;
	if ((rc = uv_async_init(th->loop, &th->wake, on_wake)) < 0) {
		uv_close((uv_handle_t *)&th->timer, on_closed); /* frees th */
		return rc;
	}
	th->handles = 2;
	/* A pending summary line must not keep a stopping proxy alive. */
	uv_unref((uv_handle_t *)&th->timer);
	uv_unref((uv_handle_t *)&th->wake);
	px->throttle = th;
	return 0;
}

static void summary(struct slot *s, uint64_t n)
{
	char key[LOG_QUOTE_SIZE(KEY_MAX)];

	if (s->key[0])
		log_msg(s->level, s->component, "suppressed %llu similar: %s pool=%s",
			(unsigned long long)n, s->label, log_quote_str(key, sizeof key, s->key));
	else
		log_msg(s->level, s->component, "suppressed %llu similar: %s",
			(unsigned long long)n, s->label);
}

/* Re-arm the timer for the earliest due summary. Loop thread, under mu. */
static void arm(struct throttle *th, uint64_t now)
{
	uint64_t due = UINT64_MAX;

	for (size_t k = 0; k < THROTTLE_COUNT; k++)
		for (size_t i = 0; i < KEYS_PER_KIND; i++) {
			uint64_t d = log_limit_due(&th->slots[k][i].lim);
			if (d < due)
				due = d;
		}
	if (due == th->timer_at)
		return;
	th->timer_at = due;
	if (due == UINT64_MAX) {
		uv_timer_stop(&th->timer);
		return;
	}
	uv_timer_start(&th->timer, on_timer, due > now ? due - now : 1, 0);
}

static void flush_all(struct throttle *th, uint64_t now)
{
	for (size_t k = 0; k < THROTTLE_COUNT; k++)
		for (size_t i = 0; i < KEYS_PER_KIND; i++) {
			struct slot *s = &th->slots[k][i];
			uint64_t n = log_limit_flush(&s->lim, now);
			if (n)
				summary(s, n);
		}
}

static void on_timer(uv_timer_t *t)
{
	struct throttle *th = container_of(t, struct throttle, timer);
	uint64_t now = uv_now(th->loop);

	uv_mutex_lock(&th->mu);
	th->timer_at = UINT64_MAX;
	flush_all(th, now);
	arm(th, now);
	uv_mutex_unlock(&th->mu);
}

static void on_wake(uv_async_t *a)
{
	struct throttle *th = container_of(a, struct throttle, wake);

	uv_mutex_lock(&th->mu);
	arm(th, uv_now(th->loop));
	uv_mutex_unlock(&th->mu);
}

static void on_closed(uv_handle_t *h)
{
	struct throttle *th = h->data;

	if (--th->handles > 0)
		return;
	uv_mutex_destroy(&th->mu);
	free(th);
}

void throttle_stop(struct proxy *px)
{
	struct throttle *th = px->throttle;

	if (!th)
		return;
	px->throttle = NULL;
	/* Whatever is still counted is reported now, due or not. */
	uv_mutex_lock(&th->mu);
	for (size_t k = 0; k < THROTTLE_COUNT; k++)
		for (size_t i = 0; i < KEYS_PER_KIND; i++) {
			struct slot *s = &th->slots[k][i];
			if (s->lim.suppressed)
				summary(s, s->lim.suppressed);
		}
	uv_mutex_unlock(&th->mu);
	uv_close((uv_handle_t *)&th->timer, on_closed);
	uv_close((uv_handle_t *)&th->wake, on_closed);
}

/* The slot for (kind, key): the key's own, a free or quiet one (nothing
 * suppressed, its interval over), or the last. */
static struct slot *slot_for(struct throttle *th, enum throttle_kind kind, const char *key,
			     uint64_t now)
{
	struct slot *row = th->slots[kind];

	if (!key)
		return &row[0];
	for (size_t i = 0; i < KEYS_PER_KIND; i++)
		if (row[i].used && strcmp(row[i].key, key) == 0)
			return &row[i];
	for (size_t i = 0; i < KEYS_PER_KIND; i++)
		if (!row[i].used || !row[i].lim.active ||
		    (!row[i].lim.suppressed && now >= row[i].lim.window_end_ms)) {
			row[i].used = true;
			snprintf(row[i].key, sizeof row[i].key, "%s", key);
			return &row[i];
		}
	return &row[KEYS_PER_KIND - 1];
}

void throttle_log(struct proxy *px, enum throttle_kind kind, const char *key, enum log_level level,
		  const char *component, const char *label, const char *fmt, ...)
{
	struct throttle *th = px->throttle;
	char line[4096];
	uint64_t now, flushed = 0;
	struct slot *s = NULL;
	va_list ap;

	if (!log_enabled(level))
		return;
	if (th && kind < THROTTLE_COUNT) {
		/* Any worker's loop: they all count from the same clock. */
		now = uv_now(px->loop);
		uv_mutex_lock(&th->mu);
		s = slot_for(th, kind, key, now);
		if (!log_limit_hit(&s->lim, now, &flushed)) {
			if (flushed)
				summary(s, flushed);
			uv_mutex_unlock(&th->mu);
			/* The timer is the main loop's: it re-arms itself there. */
			uv_async_send(&th->wake);
			return;
		}
		snprintf(s->label, sizeof s->label, "%s", label);
		snprintf(s->component, sizeof s->component, "%s", component);
		s->level = level;
		uv_mutex_unlock(&th->mu);
	}
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	log_msg(level, component, "%s", line);
}

void proxy_refused(struct proxy *px, enum proxy_refusal why, const char *peer, uint32_t limit)
{
	char label[64];

	if (why >= PROXY_REFUSED_COUNT)
		return;
	stat_add(&px->stats.refused[why], 1);
	switch (why) {
	case PROXY_REFUSED_ALLOW:
		throttle_log(px, THROTTLE_REFUSED_ALLOW, NULL, LOG_INFO, "server",
			     "clients refused: not in allow", "client=%s refused: not in allow",
			     peer);
		break;
	case PROXY_REFUSED_MAX_CONNECTIONS:
		snprintf(label, sizeof label, "clients refused: max_connections=%u reached", limit);
		throttle_log(px, THROTTLE_REFUSED_MAX_CONNECTIONS, NULL, LOG_WARN, "server", label,
			     "client=%s refused: max_connections=%u reached", peer, limit);
		break;
	case PROXY_REFUSED_PER_CLIENT:
		snprintf(label, sizeof label,
			 "clients refused: max_connections_per_client=%u reached", limit);
		throttle_log(px, THROTTLE_REFUSED_PER_CLIENT, NULL, LOG_WARN, "server", label,
			     "client=%s refused: max_connections_per_client=%u reached", peer,
			     limit);
		break;
	default:
		break;
	}
}

void proxy_accept_failed(struct proxy *px, const char *addr, int uv_err)
{
	bool emfile = uv_err == UV_EMFILE || uv_err == UV_ENFILE;

	stat_add(&px->stats.accept_errors, 1);
	if (emfile)
		stat_add(&px->stats.accept_emfile, 1);
	if (emfile && !addr)
		throttle_log(
		    px, THROTTLE_ACCEPT_ERROR, NULL, LOG_WARN, "server", "accept failed",
		    "accept failed: out of file descriptors error=\"%s\": pending connections "
		    "were closed unanswered; raise LimitNOFILE or ulimit -n",
		    uv_strerror(uv_err));
	else
		throttle_log(
		    px, THROTTLE_ACCEPT_ERROR, NULL, LOG_WARN, "server", "accept failed",
		    "accept failed addr=%s error=\"%s\"%s", addr ? addr : "-", uv_strerror(uv_err),
		    emfile ? ": out of file descriptors; raise LimitNOFILE or ulimit -n" : "");
}

const char *proxy_refusal_name(enum proxy_refusal r)
{
	static const char *const names[PROXY_REFUSED_COUNT] = {
	    "allow",
	    "max_connections",
	    "max_connections_per_client",
	};

	return r < PROXY_REFUSED_COUNT ? names[r] : "unknown";
}
