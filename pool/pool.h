/* pool: egress sources, weighted pools, selection strategies, suspension
 * windows and events for sockpool.
 *
 * Pure C on libc: no sockets, no event loop, no clock. Every call that needs
 * the time takes `now_ms`, a monotonic millisecond count chosen by the caller
 * (the proxy passes uv_now()); small steps back, as between the clocks of
 * several event loops, are tolerated. Families are the two bits
 * POOL_FAMILY_V4/V6, never AF_* values, so this header needs no socket headers.
 *
 * Thread safety: none. A pool_set and everything reached from it must be used
 * under one lock held by the caller, and watchers run under that lock.
 *
 * Lifetimes: a pool_set is built from a plain description (struct
 * pool_set_spec) that is copied, so the description may be freed right after
 * pool_set_new(). Pointers to sources and pools stay valid until
 * pool_set_free() of their set, and a source on which the caller holds an
 * acquisition (pool_source_acquire) stays valid until the matching
 * pool_source_release(), even across reloads.
 *
 * Errors: functions return 0 or a negative errno; results go in out-params.
 */
#ifndef SOCKPOOL_POOL_H
#define SOCKPOOL_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define POOL_FAMILY_V4	1u
#define POOL_FAMILY_V6	2u
#define POOL_FAMILY_ANY (POOL_FAMILY_V4 | POOL_FAMILY_V6)

#define POOL_WEIGHT_MAX	 1000000u /* larger weights are -EINVAL */
#define POOL_TRIGGER_MAX 10000u	  /* largest N of an `N/period` trigger */
#define POOL_TRIED_MAX	 32u	  /* sources one request may exclude */
#define POOL_SWRR_MAX	 64u	  /* larger tiers use the O(log n) scheduler */
#define POOL_ERR_MAX	 256u	  /* longest reason pool_set_new() writes */

struct pool_set;    /* opaque: all sources and pools of one configuration */
struct pool;	    /* opaque: one named pool, owned by its set */
struct pool_source; /* opaque: one egress source, owned by its set */

enum pool_strategy {
	POOL_STRATEGY_ROUND_ROBIN, /* smooth weighted round-robin */
	POOL_STRATEGY_HASH,	   /* consistent weighted hash ring over the key */
	POOL_STRATEGY_FAILOVER,	   /* lowest priority tier first, round-robin inside */
};

/* What a failed attempt blames on its source (SPEC 4.2). */
enum pool_failure {
	POOL_FAILURE_UNPLUMBED,	      /* bind() EADDRNOTAVAIL */
	POOL_FAILURE_PROXY_UNHEALTHY, /* upstream SOCKS5 proxy unreachable or refused BIND */
	POOL_FAILURE_PORTS_EXHAUSTED, /* counted only: never suspends */
};
#define POOL_FAILURE_KINDS 3

enum pool_state { POOL_STATE_ELIGIBLE, POOL_STATE_SUSPENDED };

enum pool_reason {
	POOL_REASON_NONE, /* not suspended */
	POOL_REASON_UNPLUMBED,
	POOL_REASON_PROXY_UNHEALTHY,
	POOL_REASON_MANUAL, /* pool_source_suspend() */
};

/* A suspension rule, e.g. `trigger = 3/1m, duration = 5m`.
 * count 0 or 1 is `immediate`: the first failure suspends. Otherwise the
 * source is suspended when `count` failures fall within the last period_ms:
 * the count-th failure at t_n suspends iff t_n - t_1 < period_ms, so failures
 * at t and t+period-1 share a window and failures at t and t+period do not.
 * A disabled rule still counts its failures (and reports them in events) but
 * never suspends. */
struct pool_rule {
	bool enabled;
	uint32_t count;	      /* 0/1 = immediate, else <= POOL_TRIGGER_MAX */
	uint64_t period_ms;   /* > 0 when count > 1 */
	uint64_t duration_ms; /* > 0 when enabled */
};

struct pool_source_spec {
	const char *name;     /* unique, non-empty; copied */
	const char *identity; /* e.g. the address text; NULL = ""; copied. A reload keeps
			       * the state of a source only if name AND identity match. */
	unsigned families;    /* POOL_FAMILY_* bits it can egress; ANY for the default
			       * route and upstream-proxy sources */
	struct pool_rule unplumbed;
	struct pool_rule proxy_unhealthy;
	uint32_t max_connections; /* concurrent acquisitions; 0 = unlimited */
	uint32_t rate_count;	  /* new acquisitions per rate_period_ms; 0 = unlimited */
	uint64_t rate_period_ms;  /* token bucket: burst rate_count, refilled evenly */
	size_t ref;		  /* the caller's own index, see pool_source_ref() */
};

struct pool_entry_spec {
	size_t source;	   /* index into pool_set_spec.sources; at most once per pool */
	uint32_t weight;   /* 0 = listed but never picked; <= POOL_WEIGHT_MAX */
	uint32_t priority; /* failover tier, lower first; ignored by other strategies */
};

struct pool_spec {
	const char *name; /* unique, non-empty; copied */
	enum pool_strategy strategy;
	const struct pool_entry_spec *entries;
	size_t n_entries; /* 0 is allowed: every pick answers NONE */
};

/* Optional allocator (tests use it to fail allocations and count leaks).
 * calloc must return zeroed memory. It must stay valid until every set built
 * with it is freed and every acquisition on those sets released. */
struct pool_alloc {
	void *(*calloc)(size_t n, size_t size, void *ctx);
	void (*free)(void *ptr, void *ctx);
	void *ctx;
};

struct pool_set_spec {
	const struct pool_source_spec *sources;
	size_t n_sources;
	const struct pool_spec *pools;
	size_t n_pools;
	const struct pool_alloc *alloc; /* NULL = libc */
};

/* Build a set. Every source starts eligible with zeroed counters.
 * @param err optional buffer (POOL_ERR_MAX is enough) for the reason of -EINVAL,
 *            naming the pool/source and what was expected.
 * @return 0 and *out (free with pool_set_free), -EINVAL (spec invalid),
 *         -ENOMEM. On error *out is untouched and nothing leaks. */
int pool_set_new(const struct pool_set_spec *spec, struct pool_set **out, char *err, size_t errlen);

/* Reload: build a set from `spec` carrying over, from each source of `old`
 * whose name and identity are both unchanged: its suspension (state, reason,
 * until), failure windows (the newest failures that fit the new rule), counters,
 * rate tokens and active connections. Other sources start fresh; sources absent
 * from `spec` vanish. Watchers of `old` are copied to the new set. Scheduling
 * positions (round-robin turns) start afresh.
 * `old` is not changed and stays fully usable; the caller swaps and then calls
 * pool_set_free(old), or keeps `old` and frees the new set to abort.
 * Once `old` is freed, reports, suspend and resume on its sources are forwarded
 * to the newest live set's source of the same name and identity (dropped with
 * -ESTALE when there is none); pool_source_release() on them is always safe and
 * counts against the active connections shared by all generations.
 * @return as pool_set_new(). */
int pool_set_new_from(struct pool_set *old, const struct pool_set_spec *spec, struct pool_set **out,
		      char *err, size_t errlen);

/* Give up the caller's handle. No watcher runs for this set afterwards. Memory
 * is released now, or at the last pool_source_release() of a source acquired
 * through this set. NULL is a no-op. */
void pool_set_free(struct pool_set *set);

enum pool_event_type {
	POOL_EVENT_SUCCESS, /* pool_report_success() */
	POOL_EVENT_FAILURE, /* pool_report_failure(), every kind */
	POOL_EVENT_ONLINE,  /* suspended -> eligible (expiry, lazy or explicit, or resume) */
	POOL_EVENT_OFFLINE, /* eligible -> suspended (a rule fired, or manual) */
};
#define POOL_EVENT_MASK(type) (1u << (type))
#define POOL_EVENTS_ALL	      0xfu

struct pool_event {
	enum pool_event_type type;
	const struct pool_source *source;
	enum pool_failure kind;	    /* FAILURE; OFFLINE when reason is not MANUAL */
	enum pool_reason reason;    /* OFFLINE and ONLINE: the suspension's reason */
	int err;		    /* FAILURE and rule OFFLINE: positive errno, 0 if none */
	uint32_t errors;	    /* FAILURE, OFFLINE: failures in the rule's window (0 for
				     * PORTS_EXHAUSTED, which has no rule) */
	uint32_t trigger_count;	    /* FAILURE, OFFLINE: the rule's N (1 = immediate) */
	uint64_t trigger_period_ms; /* FAILURE, OFFLINE: the rule's period */
	uint64_t now_ms;
	uint64_t suspended_until_ms; /* OFFLINE; ONLINE: the until that ended */
	uint64_t duration_ms;	     /* OFFLINE */
	bool resumed;		     /* ONLINE: by pool_source_resume(), not expiry */
};

/* A watcher sees each transition exactly once. It runs inside the pool call that
 * caused it and must not call any function that changes the set (pick, acquire,
 * release, report, suspend, resume, expire, watch, free); getters are fine. The
 * event and its pointers are valid only during the call. */
typedef void (*pool_watch_cb)(const struct pool_event *ev, void *ctx);

/* Register `cb` for the events in `mask` (POOL_EVENT_MASK bits). Watchers run in
 * registration order and are copied by pool_set_new_from(), so `ctx` must outlive
 * every later generation or be unwatched. @return 0, -EINVAL, -ENOMEM. */
int pool_set_watch(struct pool_set *set, unsigned mask, pool_watch_cb cb, void *ctx);

/* Remove the first watcher registered with this cb and ctx. @return 0 or -ENOENT. */
int pool_set_unwatch(struct pool_set *set, pool_watch_cb cb, void *ctx);

/* End every suspension with suspended_until <= now_ms (firing ONLINE for each)
 * and refill rate caps that are due. O(k log n) for k due sources.
 * @return the earliest suspended_until still pending, UINT64_MAX if none: arm
 *         one timer for it. Picks also expire lazily, so the timer only makes
 *         the ONLINE events (and logs) punctual. */
uint64_t pool_expire(struct pool_set *set, uint64_t now_ms);

/* Lookups. Pointers as described at the top; NULL when absent or out of range.
 * By name O(1); sources are indexed in spec order 0..count-1, pools likewise. */
size_t pool_set_source_count(const struct pool_set *set);
struct pool_source *pool_set_source_at(const struct pool_set *set, size_t index);
struct pool_source *pool_set_source(const struct pool_set *set, const char *name);
size_t pool_set_pool_count(const struct pool_set *set);
struct pool *pool_set_pool_at(const struct pool_set *set, size_t index);
struct pool *pool_set_pool(const struct pool_set *set, const char *name);

const char *pool_name(const struct pool *pool);
enum pool_strategy pool_strategy(const struct pool *pool);
size_t pool_entry_count(const struct pool *pool); /* weight-0 entries included */
/* Entry i in spec order; weight and priority may be NULL. NULL when out of range. */
struct pool_source *pool_entry_at(const struct pool *pool, size_t i, uint32_t *weight,
				  uint32_t *priority);
/* Entries with weight > 0 that can egress some family in `families` and are not
 * suspended (caps ignored): /healthz. Stored state; call pool_expire() first. O(n). */
size_t pool_count_eligible(const struct pool *pool, unsigned families);

/* The sources already tried by one request, owned by the caller (on its stack or
 * in its session). Bound to one set generation: a pool_pick() on another set
 * ignores it. */
struct pool_tried {
	uint64_t gen;
	uint32_t n;
	uint32_t idx[POOL_TRIED_MAX];
};

void pool_tried_init(struct pool_tried *tried);
/* Exclude `src` from later picks of this request. Adding twice is a no-op.
 * @return 0, -ENOSPC when POOL_TRIED_MAX sources are already excluded (stop
 *         retrying), -EINVAL. */
int pool_tried_add(struct pool_tried *tried, const struct pool_source *src);

struct pool_request {
	unsigned family; /* exactly one of POOL_FAMILY_V4, POOL_FAMILY_V6 */
	const void *key; /* hash strategy: the key bytes; NULL/0 = the empty key */
	size_t key_len;
	const struct pool_tried *tried; /* NULL = nothing tried yet */
};

enum pool_pick_status {
	POOL_PICKED, /* source set */
	POOL_WAIT,   /* every candidate is suspended; until_ms = the earliest expiry */
	POOL_BUSY,   /* no candidate available, some are at max_connections or rate cap
		      * (not suspended); until_ms = earliest known time one may return:
		      * a suspension end or rate refill, UINT64_MAX if none is known */
	POOL_NONE,   /* no candidate: no positive-weight source of the family, or all tried */
};

struct pool_pick {
	enum pool_pick_status status;
	struct pool_source *source; /* PICKED only */
	uint64_t until_ms;	    /* WAIT and BUSY */
};

/* Choose a source for one attempt. Candidates are the pool's positive-weight
 * entries that fit req->family and are not in req->tried; a suspended or capped
 * candidate is never returned. Expires due suspensions first (lazy expiry, with
 * ONLINE events). Counts `selected` on the source. Does not acquire it: call
 * pool_source_acquire() right after, under the same lock.
 * Cost: O(n) up to POOL_SWRR_MAX entries per tier (exact smooth WRR), O(log n)
 * above; hash O(log n) plus a walk past unavailable ring points; WAIT, BUSY and
 * NONE answers of large pools scan the pool, O(n).
 * @return 0 with *out filled, -EINVAL (bad family or arguments), -ESTALE (set freed). */
int pool_pick(struct pool *pool, const struct pool_request *req, uint64_t now_ms,
	      struct pool_pick *out);

/* Start using `src` for one connection: counts toward max_connections and
 * consumes one rate token. Also the check for a source named by the client
 * (SOCKS BIND): it refuses suspended and capped sources.
 * @return 0 (release it later exactly once), -EAGAIN (suspended), -EBUSY (at a
 *         cap), -ESTALE (its set was freed: pick again from the current set). */
int pool_source_acquire(struct pool_source *src, uint64_t now_ms);

/* The connection acquired on `src` ended (or its attempt failed). Safe after a
 * reload and after pool_set_free() of src's set; may free that set's memory, so
 * do not touch `src` afterwards unless its set is still held. */
void pool_source_release(struct pool_source *src);

/* Outcomes of an attempt on `src`. Success counts and clears both failure
 * windows (rspamd ok()). Failure counts `kind`, records it in that rule's window
 * and suspends when the rule fires; PORTS_EXHAUSTED is only counted. While a
 * source is suspended, failures are counted but not windowed; due suspensions
 * are expired first, as in pool_pick(). `err` is the
 * errno for logs (libuv's negative codes are accepted and stored positive).
 * Fires SUCCESS or FAILURE, then OFFLINE when it suspends.
 * @return 0, -EINVAL, -ESTALE (forwarding found no live source: dropped). */
int pool_report_success(struct pool_source *src, uint64_t now_ms);
int pool_report_failure(struct pool_source *src, enum pool_failure kind, int err, uint64_t now_ms);

/* The source's address is not on the host now: an address watch saw it go, or
 * a test bind at start or reload failed. Unlike a failed request this needs no
 * window: it counts and records an UNPLUMBED failure and, when the unplumbed
 * rule is enabled, suspends at once (reason UNPLUMBED) for the rule's duration
 * whatever its trigger. An already suspended source is only counted, its
 * reason and until unchanged; a disabled rule only counts. Fires FAILURE
 * (errors 1, trigger_count 1), then OFFLINE when it suspends.
 * @return 0, -EINVAL, -ESTALE (forwarding found no live source: dropped). */
int pool_report_absent(struct pool_source *src, int err, uint64_t now_ms);

/* A health check of the source passed (the upstream proxy answered): records
 * the time as its last success and clears the proxy_unhealthy window; with
 * `resume`, a PROXY_UNHEALTHY suspension ends now (ONLINE, resumed). Counts no
 * success (`successes` are connections) and fires no SUCCESS event.
 * @return 1 when it ended a suspension, 0, -EINVAL, -ESTALE. */
int pool_report_check_ok(struct pool_source *src, bool resume, uint64_t now_ms);

/* Admin: suspend for duration_ms (reason MANUAL; UINT64_MAX = until resumed).
 * An already suspended source gets the new reason and until, without a second
 * OFFLINE. @return 0, -EINVAL (duration 0), -ESTALE. */
int pool_source_suspend(struct pool_source *src, uint64_t duration_ms, uint64_t now_ms);
/* Admin (or an address watch): end a suspension now, firing ONLINE.
 * @return 0, -EALREADY (was not suspended), -ESTALE. */
int pool_source_resume(struct pool_source *src, uint64_t now_ms);

struct pool_counters {
	uint64_t selected; /* picks that returned it */
	uint64_t successes;
	uint64_t failures[POOL_FAILURE_KINDS]; /* by enum pool_failure */
	uint64_t suspensions;		       /* OFFLINE transitions, manual included */
};

/* The last outcomes seen on a source (connections, health checks, address
 * watch), for /status. Times are the now_ms of the report. Carried over by
 * pool_set_new_from() like the counters. */
struct pool_health {
	bool has_failure;
	enum pool_failure last_failure_kind;
	int last_failure_err; /* positive errno, 0 if none */
	uint64_t last_failure_ms;
	bool has_success;
	uint64_t last_success_ms;
};

struct pool_source_info {
	const char *name; /* valid as long as the source */
	const char *identity;
	size_t ref;
	unsigned families;
	enum pool_state state; /* stored state: call pool_expire() first */
	enum pool_reason reason;
	uint64_t suspended_until_ms; /* 0 when eligible */
	struct pool_counters counters;
	uint32_t window_errors[2]; /* failures in the unplumbed / proxy_unhealthy window at now */
	uint32_t active;	   /* acquisitions not yet released (all generations) */
	bool at_cap;		   /* max_connections or rate reached */
	struct pool_health health;
};

void pool_source_get_info(const struct pool_source *src, uint64_t now_ms,
			  struct pool_source_info *out);
const char *pool_source_name(const struct pool_source *src);
const char *pool_source_identity(const struct pool_source *src);
size_t pool_source_ref(const struct pool_source *src);	 /* pool_source_spec.ref */
size_t pool_source_index(const struct pool_source *src); /* position in its set */
unsigned pool_source_families(const struct pool_source *src);

/* Stable lowercase names for logs and metrics ("round-robin", "unplumbed", ...). */
const char *pool_strategy_name(enum pool_strategy strategy);
const char *pool_failure_name(enum pool_failure kind);
const char *pool_reason_name(enum pool_reason reason);
const char *pool_event_name(enum pool_event_type type);

#endif
