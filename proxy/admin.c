/* admin: metrics, status, health and source control over HTTP (SPEC 6).
 *
 * libmicrohttpd runs in "external epoll" mode: it owns an epoll fd holding
 * its listening and connection sockets, and we watch that one fd with a
 * uv_poll_t and call MHD_run() when it is readable, plus a uv_timer_t armed
 * from MHD_get_timeout() after every run (connection timeouts, and work MHD
 * still has buffered). Handlers thus run on the loop thread.
 */
#include "admin.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "health.h"
#include "log.h"
#include "lsock.h"
#include "pool.h"
#include "poolsync.h"
#include "stat.h"
#include "procstat.h"
#include "version.h"

/* Largest body we build; a /metrics of 10k sources is a few MiB. */
#define ADMIN_BODY_MAX (32u << 20)
/* Connections: MHD refuses past the hard limits; past the soft ones a new
 * connection makes room by closing the longest idle one (of its own address
 * for the per-address limit), so held or trickling connections cannot
 * starve /healthz, not even from the address they come from. */
#define ADMIN_CONN_LIMIT     128u
#define ADMIN_CONN_PER_IP    64u
#define ADMIN_CONN_SOFT	     48u
#define ADMIN_CONN_SOFT_IP   8u
#define ADMIN_CONN_TIMEOUT_S 5u
#define ADMIN_CONN_MEMORY    (32u * 1024u)
#define ADMIN_NAME_MAX	     256

/* One admin connection, from MHD's connection notifications; the list is in
 * order of last use, least recent first. */
struct admin_conn {
	struct admin_conn *prev, *next;
	struct MHD_Connection *c;
	uint8_t ip[16];
	bool busy;    /* a request is being answered */
	bool evicted; /* shut down to make room, MHD closes it */
};

struct admin {
	struct proxy_main *px;
	struct MHD_Daemon *mhd;
	uv_poll_t poll;
	uv_timer_t timer;
	unsigned handles_open;
	bool stopping;
	char addr_str[64];
	struct sockaddr_storage bound;
	struct admin_conn *conn_head, *conn_tail;
	unsigned n_conns;
	uint64_t evicted; /* connections closed to make room */
};

/* A growing text buffer for response bodies, bounded so that no request can
 * make the admin endpoint allocate without limit. */
struct buf {
	char *p;
	size_t len, cap;
	bool failed; /* out of memory or over ADMIN_BODY_MAX: discard */
};

static bool buf_reserve(struct buf *b, size_t more)
{
	size_t cap;
	char *p;

	if (b->failed)
		return false;
	if (more > ADMIN_BODY_MAX - b->len) {
		b->failed = true;
		return false;
	}
	if (b->len + more + 1 <= b->cap)
		return true;
	cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more + 1)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p) {
		b->failed = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

static void buf_put(struct buf *b, const char *s, size_t n)
{
	if (!buf_reserve(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void buf_puts(struct buf *b, const char *s)
{
	buf_put(b, s, strlen(s));
}

static void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!buf_reserve(b, 256))
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = true;
		return;
	}
	if ((size_t)n >= b->cap - b->len) {
		if (!buf_reserve(b, (size_t)n))
			return;
		va_start(ap, fmt);
		vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}

/* A Prometheus label value: backslash, double quote and newline escaped. */
static void buf_label(struct buf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			buf_puts(b, "\\\\");
		else if (*s == '"')
			buf_puts(b, "\\\"");
		else if (*s == '\n')
			buf_puts(b, "\\n");
		else
			buf_put(b, s, 1);
	}
}

/* A JSON string literal, quotes included. */
static void buf_json_str(struct buf *b, const char *s)
{
	buf_puts(b, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"')
			buf_puts(b, "\\\"");
		else if (c == '\\')
			buf_puts(b, "\\\\");
		else if (c == '\n')
			buf_puts(b, "\\n");
		else if (c == '\r')
			buf_puts(b, "\\r");
		else if (c == '\t')
			buf_puts(b, "\\t");
		else if (c < 0x20 || c == 0x7f)
			buf_printf(b, "\\u%04x", c);
		else
			buf_put(b, s, 1);
	}
	buf_puts(b, "\"");
}

static uint64_t wall_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The pool keeps suspensions in loop-monotonic ms; operators want wall time.
 * @return wall-clock ms, UINT64_MAX for "until resumed". */
static uint64_t until_wall_ms(uint64_t until_ms, uint64_t loop_now, uint64_t wall_now)
{
	if (until_ms == UINT64_MAX || until_ms - loop_now > UINT64_MAX - wall_now)
		return UINT64_MAX;
	return until_ms > loop_now ? wall_now + (until_ms - loop_now) : wall_now;
}

/* A loop-monotonic time in the past as wall-clock ms. */
static uint64_t past_wall_ms(uint64_t at_ms, uint64_t loop_now, uint64_t wall_now)
{
	uint64_t ago = loop_now > at_ms ? loop_now - at_ms : 0;

	return ago < wall_now ? wall_now - ago : 0;
}

static void buf_rfc3339(struct buf *b, uint64_t wall_ms)
{
	time_t secs = (time_t)(wall_ms / 1000u);
	struct tm tm;
	char text[40];

	if (!gmtime_r(&secs, &tm) || !strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm)) {
		buf_puts(b, "null");
		return;
	}
	buf_printf(b, "\"%s.%03uZ\"", text, (unsigned)(wall_ms % 1000u));
}

/* The address part of a pool identity ("address 192.0.2.10" -> "192.0.2.10"). */
static const char *source_address(const struct pool_source *src)
{
	const char *id = pool_source_identity(src);
	const char *sp = strchr(id, ' ');

	return sp ? sp + 1 : id;
}

static void metric_head(struct buf *b, const char *name, const char *type, const char *help)
{
	buf_printf(b, "# HELP sockpool_%s %s\n# TYPE sockpool_%s %s\n", name, help, name, type);
}

/* A metric with one unlabelled sample. */
static void metric_one(struct buf *b, const char *name, const char *type, const char *help,
		       uint64_t value)
{
	metric_head(b, name, type, help);
	buf_printf(b, "sockpool_%s %llu\n", name, (unsigned long long)value);
}

static void metric_hist(struct buf *b, const char *name, const char *help,
			const struct proxy_hist *h)
{
	uint64_t cum = 0;

	metric_head(b, name, "histogram", help);
	for (size_t i = 0; i < PROXY_HIST_BUCKETS; i++) {
		cum += h->buckets[i];
		buf_printf(b, "sockpool_%s_bucket{le=\"%.15g\"} %llu\n", name,
			   proxy_hist_bounds_ms[i] / 1000.0, (unsigned long long)cum);
	}
	/* +Inf and _count must agree: both come from the buckets. */
	cum += h->buckets[PROXY_HIST_BUCKETS];
	buf_printf(b, "sockpool_%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
	buf_printf(b, "sockpool_%s_sum %.15g\n", name, h->sum_ms / 1000.0);
	buf_printf(b, "sockpool_%s_count %llu\n", name, (unsigned long long)cum);
}

/* Per-source series that are one number each: one line per source. */
enum src_metric {
	SM_SELECTED,
	SM_SUCCESSES,
	SM_SUSPENSIONS,
	SM_ACTIVE,
};

static uint64_t src_value(const struct pool_source_info *in, enum src_metric m)
{
	switch (m) {
	case SM_SELECTED:
		return in->counters.selected;
	case SM_SUCCESSES:
		return in->counters.successes;
	case SM_SUSPENSIONS:
		return in->counters.suspensions;
	case SM_ACTIVE:
		return in->active;
	}
	return 0;
}

static void metric_sources(struct buf *b, const char *name, const char *type, const char *help,
			   struct pool_set *set, const struct pool_source_info *infos,
			   enum src_metric m)
{
	size_t n = pool_set_source_count(set);

	metric_head(b, name, type, help);
	for (size_t i = 0; i < n; i++) {
		buf_printf(b, "sockpool_%s{source=\"", name);
		buf_label(b, infos[i].name);
		if (m == SM_SELECTED) {
			buf_puts(b, "\",address=\"");
			buf_label(b, source_address(pool_set_source_at(set, i)));
		}
		buf_printf(b, "\"} %llu\n", (unsigned long long)src_value(&infos[i], m));
	}
}

/* The process_* families every Prometheus client library exports. */
static void render_process(struct buf *b)
{
	struct procstat ps;

	if (procstat_read(&ps) < 0)
		return;
	buf_puts(b, "# HELP process_cpu_seconds_total Total user and system CPU time spent in "
		    "seconds.\n# TYPE process_cpu_seconds_total counter\n");
	buf_printf(b, "process_cpu_seconds_total %.15g\n", ps.cpu_seconds);
	buf_puts(b, "# HELP process_open_fds Number of open file descriptors.\n"
		    "# TYPE process_open_fds gauge\n");
	buf_printf(b, "process_open_fds %llu\n", (unsigned long long)ps.open_fds);
	buf_puts(b, "# HELP process_max_fds Maximum number of open file descriptors.\n"
		    "# TYPE process_max_fds gauge\n");
	if (ps.max_fds == UINT64_MAX)
		buf_puts(b, "process_max_fds +Inf\n");
	else
		buf_printf(b, "process_max_fds %llu\n", (unsigned long long)ps.max_fds);
	buf_puts(b, "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
		    "# TYPE process_virtual_memory_bytes gauge\n");
	buf_printf(b, "process_virtual_memory_bytes %llu\n", (unsigned long long)ps.virtual_bytes);
	buf_puts(b, "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
		    "# TYPE process_resident_memory_bytes gauge\n");
	buf_printf(b, "process_resident_memory_bytes %llu\n",
		   (unsigned long long)ps.resident_bytes);
	buf_puts(b, "# HELP process_start_time_seconds Start time of the process since unix epoch "
		    "in seconds.\n# TYPE process_start_time_seconds gauge\n");
	buf_printf(b, "process_start_time_seconds %.15g\n", ps.start_time_seconds);
}

static void render_metrics(struct admin *a, struct buf *b)
{
	struct proxy_main *px = a->px;
	struct proxy_stats sum, *st = &sum;
	struct pool_set *set = px->gen->pools;
	uint64_t now = uv_now(px->loop), wall = wall_now_ms();
	uint64_t locks, contended;
	size_t n_src, n_pools, *eligible;
	struct pool_source_info *infos;

	n_src = pool_set_source_count(set);
	n_pools = pool_set_pool_count(set);
	infos = calloc(n_src ? n_src : 1, sizeof *infos);
	eligible = calloc(n_pools ? n_pools : 1, sizeof *eligible);
	if (!infos || !eligible) {
		free(infos);
		free(eligible);
		b->failed = true;
		return;
	}
	/* A snapshot under the pool lock, rendered without it: the workers'
	 * picks wait only for the copy. */
	poolsync_lock(&px->sync);
	pool_expire(set, now);
	for (size_t i = 0; i < n_src; i++)
		pool_source_get_info(pool_set_source_at(set, i), now, &infos[i]);
	for (size_t p = 0; p < n_pools; p++)
		eligible[p] = pool_count_eligible(pool_set_pool_at(set, p), POOL_FAMILY_ANY);
	poolsync_unlock(&px->sync);
	poolsync_counts(&px->sync, &locks, &contended);
	proxy_stats_sum(px, &sum);

	metric_head(b, "build_info", "gauge", "Version of the running sockpool, value 1.");
	buf_puts(b, "sockpool_build_info{version=\"");
	buf_label(b, SOCKPOOL_VERSION);
	buf_puts(b, "\"} 1\n");
	metric_head(b, "reloads_total", "counter",
		    "Configuration reloads (SIGHUP, reload_on_change) by result.");
	buf_printf(b, "sockpool_reloads_total{result=\"success\"} %llu\n",
		   (unsigned long long)st->reloads_ok);
	buf_printf(b, "sockpool_reloads_total{result=\"failure\"} %llu\n",
		   (unsigned long long)st->reloads_failed);
	metric_head(
	    b, "last_reload_success_timestamp_seconds", "gauge",
	    "When the running configuration was loaded (start or last applied reload), unix "
	    "seconds.");
	buf_printf(b, "sockpool_last_reload_success_timestamp_seconds %.15g\n",
		   (double)(st->reload_ok_wall_ms ? st->reload_ok_wall_ms : px->started_wall_ms) /
		       1000.0);

	metric_one(b, "connections_active", "gauge", "Client connections open now.", st->active);
	metric_one(b, "connections_relaying", "gauge", "Client connections relaying data now.",
		   st->relaying);
	metric_head(b, "connections_total", "counter", "Finished client connections by result.");
	for (int r = 0; r < PROXY_RESULT_COUNT; r++) {
		buf_puts(b, "sockpool_connections_total{result=\"");
		buf_label(b, proxy_result_name((enum proxy_result)r));
		buf_printf(b, "\"} %llu\n", (unsigned long long)st->total[r]);
	}
	metric_head(b, "refused_total", "counter",
		    "Client connections refused at accept, by reason.");
	for (int r = 0; r < PROXY_REFUSED_COUNT; r++) {
		buf_puts(b, "sockpool_refused_total{reason=\"");
		buf_label(b, proxy_refusal_name((enum proxy_refusal)r));
		buf_printf(b, "\"} %llu\n", (unsigned long long)st->refused[r]);
	}
	metric_head(b, "accept_errors_total", "counter",
		    "accept() failures on the listeners; reason emfile: out of file descriptors.");
	buf_printf(b, "sockpool_accept_errors_total{reason=\"emfile\"} %llu\n",
		   (unsigned long long)st->accept_emfile);
	buf_printf(b, "sockpool_accept_errors_total{reason=\"other\"} %llu\n",
		   (unsigned long long)(st->accept_errors - st->accept_emfile));
	metric_head(b, "bytes_total", "counter",
		    "Relayed bytes; up is client to destination, down the reverse.");
	buf_printf(b, "sockpool_bytes_total{direction=\"up\"} %llu\n",
		   (unsigned long long)st->bytes_up);
	buf_printf(b, "sockpool_bytes_total{direction=\"down\"} %llu\n",
		   (unsigned long long)st->bytes_down);

	metric_one(b, "destinations_denied_total", "counter",
		   "Requests refused by the destination policy (own ports, local addresses, "
		   "deny_destinations).",
		   st->dest_denied);
	metric_one(b, "auth_failures_delayed_total", "counter",
		   "Failed logins answered after a delay for repeated failures from the client.",
		   st->auth_delayed);
	metric_one(b, "auth_queue_full_total", "counter",
		   "Logins that found their client's cap of pending password checks (parked "
		   "until a login of the client succeeds) or the whole queue's (refused).",
		   st->auth_queue_full);
	metric_one(b, "admin_connections_evicted_total", "counter",
		   "Idle admin connections closed to make room for new ones.", a->evicted);

	metric_one(b, "relay_stalled_total", "counter",
		   "Relays reset because unwritten data made no progress for stall_timeout.",
		   st->stalled);

	metric_one(b, "workers", "gauge", "Event-loop threads serving connections.", px->n_workers);
	metric_head(b, "worker_connections_total", "counter",
		    "Client connections accepted, by worker thread.");
	for (unsigned w = 0; w < px->n_workers; w++)
		buf_printf(b, "sockpool_worker_connections_total{worker=\"%u\"} %llu\n", w,
			   (unsigned long long)stat_get(&px->px[w].stats.accepted));
	metric_head(b, "worker_connections_active", "gauge",
		    "Client connections open now, by worker thread.");
	for (unsigned w = 0; w < px->n_workers; w++)
		buf_printf(b, "sockpool_worker_connections_active{worker=\"%u\"} %llu\n", w,
			   (unsigned long long)stat_get(&px->px[w].stats.active));
	metric_one(b, "pool_lock_acquisitions_total", "counter",
		   "Times the pool lock shared by the workers was taken (0 with one worker).",
		   locks);
	metric_one(b, "pool_lock_contended_total", "counter",
		   "Times the pool lock was held by another thread when taken.", contended);

	metric_hist(b, "handshake_duration_seconds", "Time from accept to a parsed SOCKS request.",
		    &st->handshake);
	metric_hist(b, "connect_duration_seconds",
		    "Time from a parsed request to the success reply.", &st->connect);

	metric_sources(b, "source_selected_total", "counter", "Times the source was picked.", set,
		       infos, SM_SELECTED);
	metric_sources(b, "source_successes_total", "counter",
		       "Successful outbound connections from the source.", set, infos,
		       SM_SUCCESSES);
	metric_head(b, "source_failures_total", "counter",
		    "Failures blamed on the source, by kind.");
	for (size_t i = 0; i < n_src; i++) {
		for (int k = 0; k < POOL_FAILURE_KINDS; k++) {
			buf_puts(b, "sockpool_source_failures_total{source=\"");
			buf_label(b, infos[i].name);
			buf_printf(b, "\",kind=\"%s\"} %llu\n",
				   pool_failure_name((enum pool_failure)k),
				   (unsigned long long)infos[i].counters.failures[k]);
		}
	}
	metric_sources(b, "source_suspensions_total", "counter",
		       "Times the source went into suspension, manual ones included.", set, infos,
		       SM_SUSPENSIONS);
	metric_head(b, "source_state", "gauge",
		    "1 when the source is eligible, 0 when suspended; reason is why (none when "
		    "eligible).");
	for (size_t i = 0; i < n_src; i++) {
		buf_puts(b, "sockpool_source_state{source=\"");
		buf_label(b, infos[i].name);
		buf_printf(b, "\",reason=\"%s\"} %d\n",
			   infos[i].state == POOL_STATE_SUSPENDED
			       ? pool_reason_name(infos[i].reason)
			       : "none",
			   infos[i].state == POOL_STATE_ELIGIBLE ? 1 : 0);
	}
	metric_head(b, "source_suspended_until_seconds", "gauge",
		    "End of the current suspension, unix seconds; 0 when eligible.");
	for (size_t i = 0; i < n_src; i++) {
		buf_puts(b, "sockpool_source_suspended_until_seconds{source=\"");
		buf_label(b, infos[i].name);
		if (infos[i].state != POOL_STATE_SUSPENDED) {
			buf_puts(b, "\"} 0\n");
			continue;
		}
		uint64_t until = until_wall_ms(infos[i].suspended_until_ms, now, wall);
		if (until == UINT64_MAX)
			buf_puts(b, "\"} +Inf\n");
		else
			buf_printf(b, "\"} %.15g\n", (double)until / 1000.0);
	}
	metric_sources(b, "source_active_connections", "gauge", "Connections using the source now.",
		       set, infos, SM_ACTIVE);

	metric_head(b, "pool_eligible_sources", "gauge",
		    "Sources of the pool that may be picked now (weight > 0, not suspended).");
	for (size_t p = 0; p < n_pools; p++) {
		const struct pool *pool = pool_set_pool_at(set, p);
		buf_puts(b, "sockpool_pool_eligible_sources{pool=\"");
		buf_label(b, pool_name(pool));
		buf_printf(b, "\"} %zu\n", eligible[p]);
	}
	free(eligible);
	free(infos);
	render_process(b);
}

static void json_source(struct buf *b, const struct health *h, const struct pool_source *src,
			uint64_t now, uint64_t wall)
{
	struct pool_source_info in;

	pool_source_get_info(src, now, &in);
	buf_puts(b, "{\"name\":");
	buf_json_str(b, in.name);
	buf_puts(b, ",\"address\":");
	buf_json_str(b, source_address(src));
	if (in.state == POOL_STATE_SUSPENDED) {
		uint64_t until = until_wall_ms(in.suspended_until_ms, now, wall);
		buf_puts(b, ",\"state\":\"suspended\",\"reason\":");
		buf_json_str(b, pool_reason_name(in.reason));
		buf_puts(b, ",\"suspended_reason\":");
		buf_json_str(b, pool_reason_name(in.reason));
		buf_puts(b, ",\"suspended_until\":");
		if (until == UINT64_MAX)
			buf_puts(b, "null");
		else
			buf_rfc3339(b, until);
	} else {
		buf_puts(b, ",\"state\":\"eligible\",\"reason\":null,\"suspended_reason\":null,"
			    "\"suspended_until\":null");
	}
	/* null: the source has no address of its own to look for */
	int present = health_present(h, pool_source_ref(src));
	buf_printf(b, ",\"present\":%s", present < 0 ? "null" : present ? "true" : "false");
	buf_puts(b, ",\"last_failure\":");
	if (in.health.has_failure) {
		buf_puts(b, "{\"time\":");
		buf_rfc3339(b, past_wall_ms(in.health.last_failure_ms, now, wall));
		buf_puts(b, ",\"kind\":");
		buf_json_str(b, pool_failure_name(in.health.last_failure_kind));
		buf_puts(b, ",\"error\":");
		buf_json_str(b, in.health.last_failure_err ? strerror(in.health.last_failure_err)
							   : "");
		buf_puts(b, "}");
	} else {
		buf_puts(b, "null");
	}
	buf_puts(b, ",\"last_success\":");
	if (in.health.has_success)
		buf_rfc3339(b, past_wall_ms(in.health.last_success_ms, now, wall));
	else
		buf_puts(b, "null");
	buf_printf(b,
		   ",\"counters\":{\"selected\":%llu,\"successes\":%llu,\"failures\":{"
		   "\"unplumbed\":%llu,\"proxy_unhealthy\":%llu,\"ports_exhausted\":%llu},"
		   "\"suspensions\":%llu},\"active\":%u,\"at_cap\":%s}",
		   (unsigned long long)in.counters.selected,
		   (unsigned long long)in.counters.successes,
		   (unsigned long long)in.counters.failures[POOL_FAILURE_UNPLUMBED],
		   (unsigned long long)in.counters.failures[POOL_FAILURE_PROXY_UNHEALTHY],
		   (unsigned long long)in.counters.failures[POOL_FAILURE_PORTS_EXHAUSTED],
		   (unsigned long long)in.counters.suspensions, (unsigned)in.active,
		   in.at_cap ? "true" : "false");
}

static void render_status(struct admin *a, struct buf *b)
{
	struct proxy_main *px = a->px;
	struct pool_set *set = px->gen->pools;
	uint64_t now = uv_now(px->loop), wall = wall_now_ms();
	uint64_t up = px->started_wall_ms && wall > px->started_wall_ms
			  ? (wall - px->started_wall_ms) / 1000u
			  : 0;
	size_t n_src, n_pools;
	struct proxy_stats sum;

	proxy_stats_sum(px, &sum);
	pool_expire(set, now);
	n_src = pool_set_source_count(set);
	n_pools = pool_set_pool_count(set);
	buf_puts(b, "{\"version\":");
	buf_json_str(b, SOCKPOOL_VERSION);
	buf_printf(b, ",\"uptime_seconds\":%llu,\"default_pool\":", (unsigned long long)up);
	buf_json_str(b, px->gen->conf->server.default_pool);
	buf_printf(b, ",\"connections\":{\"active\":%llu,\"relaying\":%llu},\"pools\":[",
		   (unsigned long long)sum.active, (unsigned long long)sum.relaying);
	for (size_t p = 0; p < n_pools; p++) {
		const struct pool *pool = pool_set_pool_at(set, p);
		size_t n_ent = pool_entry_count(pool);

		buf_puts(b, p ? ",{\"name\":" : "{\"name\":");
		buf_json_str(b, pool_name(pool));
		buf_puts(b, ",\"strategy\":");
		buf_json_str(b, pool_strategy_name(pool_strategy(pool)));
		buf_printf(b, ",\"eligible\":%zu,\"sources\":[",
			   pool_count_eligible(pool, POOL_FAMILY_ANY));
		for (size_t e = 0; e < n_ent; e++) {
			uint32_t weight = 0, prio = 0;
			const struct pool_source *src = pool_entry_at(pool, e, &weight, &prio);
			if (!src)
				continue;
			buf_puts(b, e ? ",{\"name\":" : "{\"name\":");
			buf_json_str(b, pool_source_name(src));
			buf_printf(b, ",\"weight\":%u,\"priority\":%u}", (unsigned)weight,
				   (unsigned)prio);
		}
		buf_puts(b, "]}");
	}
	buf_puts(b, "],\"sources\":[");
	for (size_t i = 0; i < n_src; i++) {
		if (i)
			buf_puts(b, ",");
		json_source(b, px->health, pool_set_source_at(set, i), now, wall);
	}
	buf_puts(b, "]}\n");
}

/* Queue `b` (taken over: freed here or by MHD) as the answer. `allow` is the
 * Allow header of a 405. */
static enum MHD_Result respond_buf(struct MHD_Connection *c, unsigned status,
				   const char *content_type, struct buf *b, const char *allow)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	if (b->failed) {
		free(b->p);
		static const char msg[] = "response too large or out of memory\n";
		r = MHD_create_response_from_buffer(sizeof msg - 1, (void *)msg,
						    MHD_RESPMEM_PERSISTENT);
		status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		content_type = "text/plain; charset=utf-8";
	} else {
		r = MHD_create_response_from_buffer(b->len, b->p ? b->p : (void *)"",
						    b->p ? MHD_RESPMEM_MUST_FREE
							 : MHD_RESPMEM_PERSISTENT);
		if (!r)
			free(b->p);
	}
	b->p = NULL;
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (allow)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
	if (status == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
					"Bearer realm=\"sockpool admin\"");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result respond_text(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum MHD_Result respond_text(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
{
	struct buf b = {0};
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	buf_puts(&b, line);
	return respond_buf(c, status, "text/plain; charset=utf-8", &b,
			   status == MHD_HTTP_METHOD_NOT_ALLOWED ? "GET, HEAD" : NULL);
}

/* `{"error":"...", "source":{...}}` for the POST endpoints. */
static enum MHD_Result respond_json_error(struct admin *a, struct MHD_Connection *c,
					  unsigned status, const char *msg,
					  const struct pool_source *src)
{
	struct buf b = {0};

	buf_puts(&b, "{\"error\":");
	buf_json_str(&b, msg);
	if (src) {
		buf_puts(&b, ",\"source\":");
		json_source(&b, a->px->health, src, uv_now(a->px->loop), wall_now_ms());
	}
	buf_puts(&b, "}\n");
	return respond_buf(c, status, "application/json", &b,
			   status == MHD_HTTP_METHOD_NOT_ALLOWED ? "POST" : NULL);
}

static bool peer_is_loopback(const struct sockaddr *sa)
{
	if (!sa)
		return false;
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_LOOPBACK(a6))
			return true;
		return IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127;
	}
	return false;
}

/* Compare without an early exit, so the time taken says nothing about how
 * much of the token matched. */
static bool token_equal(const char *given, size_t given_len, const char *token)
{
	size_t n = strlen(token);
	unsigned char diff = given_len != n;

	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char)token[i] ^ (unsigned char)(i < given_len ? given[i] : 0);
	return diff == 0;
}

static bool bearer_ok(const char *header, const char *token)
{
	const char *p;
	size_t len;

	if (!header || strncasecmp(header, "Bearer ", 7) != 0)
		return false;
	for (p = header + 7; *p == ' '; p++)
		;
	len = strlen(p);
	while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
		len--;
	return token_equal(p, len, token);
}

/* @return 0 when the caller may change sources, else the HTTP status to send. */
static unsigned check_post_auth(struct admin *a, struct MHD_Connection *c)
{
	const char *token = a->px->gen->conf->server.admin_token;
	const union MHD_ConnectionInfo *ci;

	if (token && token[0]) {
		const char *h =
		    MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
		return bearer_ok(h, token) ? 0 : MHD_HTTP_UNAUTHORIZED;
	}
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	return ci && peer_is_loopback(ci->client_addr) ? 0 : MHD_HTTP_FORBIDDEN;
}

static enum MHD_Result handle_source_post(struct admin *a, struct MHD_Connection *c,
					  const char *name, bool suspend, unsigned *status)
{
	struct proxy_main *px = a->px;
	struct pool_source *src;
	uint64_t now = uv_now(px->loop);
	char msg[ADMIN_NAME_MAX + 128];
	int rc;

	*status = check_post_auth(a, c);
	if (*status == MHD_HTTP_UNAUTHORIZED)
		return respond_json_error(
		    a, c, *status, "missing or wrong `Authorization: Bearer <admin_token>`", NULL);
	if (*status == MHD_HTTP_FORBIDDEN)
		return respond_json_error(
		    a, c, *status,
		    "admin POSTs are accepted from loopback only unless admin_token is set", NULL);
	src = pool_set_source(px->gen->pools, name);
	if (!src) {
		*status = MHD_HTTP_NOT_FOUND;
		snprintf(msg, sizeof msg, "no source named '%s'", name);
		return respond_json_error(a, c, *status, msg, NULL);
	}
	if (suspend) {
		const char *text =
		    MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "duration");
		uint64_t ms = 0;

		if (!text || !text[0] || conf_parse_duration(text, &ms) < 0 || ms == 0) {
			*status = MHD_HTTP_BAD_REQUEST;
			return respond_json_error(
			    a, c, *status,
			    text && text[0]
				? "duration must be a positive duration such as 90s, 5m, 2h"
				: "missing ?duration= (e.g. ?duration=5m)",
			    NULL);
		}
		rc = pool_source_suspend(src, ms, now);
	} else {
		rc = pool_source_resume(src, now);
		if (rc == -EALREADY) {
			*status = MHD_HTTP_CONFLICT;
			snprintf(msg, sizeof msg, "source '%s' is not suspended", name);
			return respond_json_error(a, c, *status, msg, src);
		}
	}
	if (rc < 0) {
		*status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		snprintf(msg, sizeof msg, "cannot %s source '%s': %s",
			 suspend ? "suspend" : "resume", name, strerror(-rc));
		return respond_json_error(a, c, *status, msg, NULL);
	}
	struct buf b = {0};
	*status = MHD_HTTP_OK;
	json_source(&b, px->health, src, now, wall_now_ms());
	buf_puts(&b, "\n");
	return respond_buf(c, *status, "application/json", &b, NULL);
}

enum route { R_NONE, R_METRICS, R_STATUS, R_HEALTHZ, R_SUSPEND, R_RESUME };

/* `/sources/NAME/ACTION` -> R_SUSPEND/R_RESUME with NAME in name[]. */
static enum route route_of(const char *url, char *name, size_t name_len)
{
	static const char prefix[] = "/sources/";
	const char *p, *slash;

	if (strcmp(url, "/metrics") == 0)
		return R_METRICS;
	if (strcmp(url, "/status") == 0)
		return R_STATUS;
	if (strcmp(url, "/healthz") == 0)
		return R_HEALTHZ;
	if (strncmp(url, prefix, sizeof prefix - 1) != 0)
		return R_NONE;
	p = url + sizeof prefix - 1;
	slash = strchr(p, '/');
	if (!slash || slash == p || (size_t)(slash - p) >= name_len)
		return R_NONE;
	memcpy(name, p, (size_t)(slash - p));
	name[slash - p] = '\0';
	if (strcmp(slash + 1, "suspend") == 0)
		return R_SUSPEND;
	if (strcmp(slash + 1, "resume") == 0)
		return R_RESUME;
	return R_NONE;
}

static enum MHD_Result handle(struct admin *a, struct MHD_Connection *c, const char *url,
			      const char *method, unsigned *status)
{
	char name[ADMIN_NAME_MAX];
	enum route r = route_of(url, name, sizeof name);
	bool get =
	    strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
	bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
	struct buf b = {0};
	enum MHD_Result ret;

	if (r == R_NONE) {
		*status = MHD_HTTP_NOT_FOUND;
		return respond_text(c, *status,
				    "not found: try GET /metrics, /status, /healthz or POST "
				    "/sources/NAME/suspend?duration=5m, /sources/NAME/resume\n");
	}
	if (r == R_SUSPEND || r == R_RESUME) {
		if (!post) {
			*status = MHD_HTTP_METHOD_NOT_ALLOWED;
			return respond_json_error(a, c, *status, "use POST", NULL);
		}
		poolsync_lock(&a->px->sync);
		ret = handle_source_post(a, c, name, r == R_SUSPEND, status);
		poolsync_unlock(&a->px->sync);
		return ret;
	}
	if (!get) {
		*status = MHD_HTTP_METHOD_NOT_ALLOWED;
		return respond_text(c, *status, "use GET\n");
	}
	*status = MHD_HTTP_OK;
	switch (r) {
	case R_METRICS:
		render_metrics(a, &b);
		return respond_buf(c, *status, "text/plain; version=0.0.4; charset=utf-8", &b,
				   NULL);
	case R_STATUS:
		/* Rare: the whole page under the pool lock. */
		poolsync_lock(&a->px->sync);
		render_status(a, &b);
		poolsync_unlock(&a->px->sync);
		return respond_buf(c, *status, "application/json", &b, NULL);
	default: {
		struct proxy_main *px = a->px;
		const char *def = px->gen->conf->server.default_pool;
		const struct pool *pool = pool_set_pool(px->gen->pools, def);
		size_t eligible = 0;

		poolsync_lock(&px->sync);
		pool_expire(px->gen->pools, uv_now(px->loop));
		if (pool)
			eligible = pool_count_eligible(pool, POOL_FAMILY_ANY);
		poolsync_unlock(&px->sync);
		if (eligible > 0)
			return respond_text(c, *status, "ok\n");
		*status = MHD_HTTP_SERVICE_UNAVAILABLE;
		return respond_text(c, *status, "no eligible source in pool %s\n", def);
	}
	}
}

/* A URL fit for a one-line log: MHD has already decoded %XX, so control
 * bytes and blanks are possible; they become '?'. */
static void log_safe(const char *in, char *out, size_t len)
{
	size_t i = 0;

	for (; *in && i + 1 < len; in++, i++)
		out[i] = (unsigned char)*in > 0x20 && (unsigned char)*in < 0x7f ? *in : '?';
	out[i] = '\0';
}

/* Admin connections: past the soft limits a new connection makes room by
 * closing the least recently used idle one, instead of being refused, so
 * held connections cannot starve /healthz. */
static void ip_key(const struct sockaddr *sa, uint8_t key[16])
{
	(void)conf_addr_key(sa, key); /* another family keys as all zero */
}

static void conn_unlink(struct admin *a, struct admin_conn *k)
{
	if (k->prev)
		k->prev->next = k->next;
	else
		a->conn_head = k->next;
	if (k->next)
		k->next->prev = k->prev;
	else
		a->conn_tail = k->prev;
	k->prev = k->next = NULL;
}

static void conn_append(struct admin *a, struct admin_conn *k)
{
	k->prev = a->conn_tail;
	k->next = NULL;
	if (a->conn_tail)
		a->conn_tail->next = k;
	else
		a->conn_head = k;
	a->conn_tail = k;
}

static struct admin_conn *conn_of(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return ci ? ci->socket_context : NULL;
}

static void conn_set_busy(struct MHD_Connection *c, bool busy)
{
	struct admin_conn *k = conn_of(c);

	if (k)
		k->busy = busy;
}

/* Close the least recently used idle connection (of address `ip` when not
 * NULL), other than `except`: shut its socket down, and MHD closes it when
 * it next looks at it. */
static void conn_evict(struct admin *a, const uint8_t *ip, const struct admin_conn *except)
{
	for (struct admin_conn *k = a->conn_head; k; k = k->next) {
		const union MHD_ConnectionInfo *ci;
		if (k == except || k->busy || k->evicted || (ip && memcmp(k->ip, ip, 16) != 0))
			continue;
		ci = MHD_get_connection_info(k->c, MHD_CONNECTION_INFO_CONNECTION_FD);
		if (!ci)
			continue;
		shutdown(ci->connect_fd, SHUT_RDWR);
		k->evicted = true;
		a->evicted++;
		log_debug("admin", "closed an idle connection to make room open=%u", a->n_conns);
		return;
	}
}

static void on_mhd_connection(void *cls, struct MHD_Connection *c, void **socket_context,
			      enum MHD_ConnectionNotificationCode toe)
{
	struct admin *a = cls;
	struct admin_conn *k = *socket_context;
	const union MHD_ConnectionInfo *ci;
	unsigned same_ip = 0, live = 0;

	if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		if (k) {
			conn_unlink(a, k);
			a->n_conns--;
			free(k);
			*socket_context = NULL;
		}
		return;
	}
	k = calloc(1, sizeof *k);
	if (!k)
		return; /* untracked: it just cannot be evicted */
	k->c = c;
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	ip_key(ci ? ci->client_addr : NULL, k->ip);
	for (struct admin_conn *o = a->conn_head; o; o = o->next) {
		live += !o->evicted;
		same_ip += !o->evicted && memcmp(o->ip, k->ip, 16) == 0;
	}
	conn_append(a, k);
	a->n_conns++;
	*socket_context = k;
	if (same_ip >= ADMIN_CONN_SOFT_IP)
		conn_evict(a, k->ip, k);
	else if (live >= ADMIN_CONN_SOFT)
		conn_evict(a, NULL, k);
}

/* A request was answered: the connection is idle again, and the most
 * recently used. */
static void on_mhd_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			     enum MHD_RequestTerminationCode toe)
{
	struct admin *a = cls;
	struct admin_conn *k = conn_of(c);

	(void)con_cls;
	(void)toe;
	if (!k)
		return;
	k->busy = false;
	conn_unlink(a, k);
	conn_append(a, k);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct admin *a = cls;
	const union MHD_ConnectionInfo *ci;
	char peer[64] = "-", path[256], verb[16];
	unsigned status = 0;
	enum MHD_Result ret;

	(void)version;
	(void)upload_data;
	/* The first call only sees the headers; a body, if any, arrives in later
	 * calls and is dropped as it comes (no endpoint takes one), so nothing is
	 * kept. Answering on the last call keeps the connection reusable. */
	if (!*con_cls) {
		*con_cls = a;
		conn_set_busy(c, true);
		return MHD_YES;
	}
	if (*upload_data_size) {
		*upload_data_size = 0;
		return MHD_YES;
	}
	ret = handle(a, c, url, method, &status);
	log_safe(url, path, sizeof path);
	log_safe(method, verb, sizeof verb);
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci && ci->client_addr)
		conf_addr_str(ci->client_addr, peer, sizeof peer);
	if (status == MHD_HTTP_UNAUTHORIZED || status == MHD_HTTP_FORBIDDEN)
		log_warn("admin", "request refused method=%s path=%s peer=%s status=%u", verb, path,
			 peer, status);
	else if (strcmp(method, MHD_HTTP_METHOD_POST) == 0)
		log_info("admin", "request method=%s path=%s peer=%s status=%u", verb, path, peer,
			 status);
	else
		log_debug("admin", "request method=%s path=%s peer=%s status=%u", verb, path, peer,
			  status);
	return ret;
}

/* libmicrohttpd runs in external-epoll mode: its epoll fd is polled by the
 * loop, and a timer armed from MHD_get_timeout() runs its timeouts. */
static void on_mhd_timer(uv_timer_t *t);

static void admin_run(struct admin *a)
{
	MHD_UNSIGNED_LONG_LONG ms;

	if (a->stopping)
		return;
	MHD_run(a->mhd);
	if (MHD_get_timeout(a->mhd, &ms) == MHD_YES)
		uv_timer_start(&a->timer, on_mhd_timer, (uint64_t)ms, 0);
	else
		uv_timer_stop(&a->timer);
}

static void on_mhd_timer(uv_timer_t *t)
{
	admin_run(container_of(t, struct admin, timer));
}

static void on_mhd_readable(uv_poll_t *p, int status, int events)
{
	struct admin *a = container_of(p, struct admin, poll);

	(void)events;
	if (status < 0) {
		/* Not expected on an epoll fd; stop rather than spin on the error. */
		log_error("admin", "stopped serving addr=%s error=\"%s\"", a->addr_str,
			  uv_strerror(status));
		uv_poll_stop(p);
		uv_timer_stop(&a->timer);
		return;
	}
	admin_run(a);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	size_t n;

	(void)cls;
	vsnprintf(line, sizeof line, fmt, ap);
	n = strlen(line);
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	log_warn("admin", "libmicrohttpd: %s", line);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct admin *a = h->data;

	if (--a->handles_open == 0)
		free(a);
}

/* The admin socket is made like the proxy's own listeners (lsock_open), and
 * its bound address is kept for the destination policy. */
static int listen_socket(const struct sockaddr *addr, struct sockaddr_storage *bound)
{
	const struct lsock_opts opts = {.backlog = 64};
	socklen_t len = sizeof *bound;
	int fd = lsock_open(addr, &opts), rc;

	if (fd < 0)
		return fd;
	if (getsockname(fd, (struct sockaddr *)bound, &len) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

int admin_start(struct proxy_main *px, const struct sockaddr *addr, struct admin **out)
{
	struct sockaddr_storage bound;
	const union MHD_DaemonInfo *info;
	struct admin *a;
	char want[64];
	int fd, rc;

	if (!px || !addr || !out || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6))
		return -EINVAL;
	conf_addr_str(addr, want, sizeof want);
	a = calloc(1, sizeof *a);
	if (!a)
		return -ENOMEM;
	a->px = px;
	fd = listen_socket(addr, &bound);
	if (fd < 0) {
		rc = fd;
		log_error("admin",
			  "cannot listen addr=%s error=\"%s\": fix admin_listen or leave "
			  "it empty to turn the admin endpoint off",
			  want, strerror(-rc));
		goto fail_free;
	}
	conf_addr_str((const struct sockaddr *)&bound, a->addr_str, sizeof a->addr_str);
	a->bound = bound;
	a->mhd = MHD_start_daemon(
	    MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, a,
	    MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, a, MHD_OPTION_LISTEN_SOCKET, fd,
	    MHD_OPTION_NOTIFY_CONNECTION, on_mhd_connection, a, MHD_OPTION_NOTIFY_COMPLETED,
	    on_mhd_completed, a, MHD_OPTION_CONNECTION_LIMIT, ADMIN_CONN_LIMIT,
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT, ADMIN_CONN_PER_IP, MHD_OPTION_CONNECTION_TIMEOUT,
	    ADMIN_CONN_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)ADMIN_CONN_MEMORY,
	    MHD_OPTION_END);
	if (!a->mhd) {
		/* Some failure paths of MHD close the socket they were given, some do
		 * not. No other thread can have reused the number in between: the
		 * proxy starts the admin before it starts any other thread. */
		if (fcntl(fd, F_GETFD) != -1)
			close(fd);
		rc = -EIO;
		log_error("admin", "cannot start the HTTP server addr=%s", a->addr_str);
		goto fail_free;
	}
	info = MHD_get_daemon_info(a->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	if (!info || info->epoll_fd < 0) {
		rc = -EIO;
		log_error("admin", "libmicrohttpd gave no epoll fd addr=%s", a->addr_str);
		goto fail_mhd;
	}
	rc = uv_timer_init(px->loop, &a->timer);
	if (rc < 0)
		goto fail_watch;
	a->timer.data = a;
	rc = uv_poll_init(px->loop, &a->poll, info->epoll_fd);
	if (rc < 0) {
		/* The timer is in the loop now: `a` goes in its close callback. */
		log_error("admin", "cannot watch the HTTP server addr=%s error=\"%s\"", a->addr_str,
			  uv_strerror(rc));
		a->handles_open = 1;
		uv_close((uv_handle_t *)&a->timer, on_handle_closed);
		MHD_stop_daemon(a->mhd);
		return rc;
	}
	a->poll.data = a;
	a->handles_open = 2;
	rc = uv_poll_start(&a->poll, UV_READABLE, on_mhd_readable);
	if (rc < 0) {
		log_error("admin", "cannot watch the HTTP server addr=%s error=\"%s\"", a->addr_str,
			  uv_strerror(rc));
		admin_stop(a);
		return rc;
	}
	log_info("admin", "listening addr=%s", a->addr_str);
	*out = a;
	return 0;
fail_watch:
	log_error("admin", "cannot watch the HTTP server addr=%s error=\"%s\"", a->addr_str,
		  uv_strerror(rc));
fail_mhd:
	MHD_stop_daemon(a->mhd);
fail_free:
	free(a);
	return rc;
}

int admin_bound(const struct admin *a, struct sockaddr_storage *out)
{
	if (!a || !out)
		return -EINVAL;
	*out = a->bound;
	return 0;
}

void admin_stop(struct admin *a)
{
	if (!a || a->stopping)
		return;
	a->stopping = true;
	/* Closing the poll handle takes the epoll fd out of the loop's epoll set
	 * right away, so MHD may close it below. */
	uv_close((uv_handle_t *)&a->poll, on_handle_closed);
	uv_close((uv_handle_t *)&a->timer, on_handle_closed);
	MHD_stop_daemon(a->mhd);
	a->mhd = NULL;
	log_info("admin", "stopped addr=%s", a->addr_str);
}
