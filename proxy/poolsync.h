/* poolsync: the pool engine shared by every worker thread.
 *
 * Internal to proxy/. pool/ is pure and single-threaded, and the state of a
 * source is shared by every generation of it (active connections, the
 * forwarding of reports to the newest set), so one lock covers every pool
 * set of the process: every pool_* call that reads or changes pool state
 * runs under it, and the pool's watchers (logging, metrics, the proxy's
 * reaction to ONLINE/OFFLINE) run under it too. A source suspended by one
 * worker is thus skipped by all of them at once, the caps (max_connections,
 * rate) count across workers, and each transition fires its watchers once,
 * whichever worker caused it.
 *
 * A watcher must not do the proxy's work itself (re-arm the expiry timer,
 * pause or reopen listeners: that belongs to the main loop): it wakes the
 * main loop with uv_async_send() (poolwatch.c), which any thread may call.
 *
 * The request path takes the lock once per step and never across a system
 * call: pick and acquire together, one report, one release.
 *
 * With `threaded` false (workers = 1: one loop for everything) the lock is
 * not taken at all and nothing else changes.
 */
#ifndef SOCKPOOL_POOLSYNC_H
#define SOCKPOOL_POOLSYNC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "pool.h"

struct poolsync {
	pthread_mutex_t mu;
	bool threaded;
	/* Under mu: how often it was taken, and how often it was busy then. */
	uint64_t locks;
	uint64_t contended;
};

/* Set up `ps` (owned by the caller, e.g. embedded in the main state).
 * @return 0 or -errno (pthread_mutex_init). */
int poolsync_init(struct poolsync *ps, bool threaded);

/* Once no thread uses it any more. */
void poolsync_destroy(struct poolsync *ps);

/* Hold the lock around any other pool_* use (admin pages, reload,
 * suspension from the address watch). Not recursive. Every function here
 * takes a NULL `ps` as "no lock" (a lone generation, as for --check). */
void poolsync_lock(struct poolsync *ps);
void poolsync_unlock(struct poolsync *ps);

/* pool_pick() and, on PICKED, pool_source_acquire() under one lock: a PICKED
 * answer holds an acquisition (release it with poolsync_release). */
int poolsync_pick(struct poolsync *ps, struct pool *pool, const struct pool_request *req,
		  uint64_t now_ms, struct pool_pick *out);

/* The pool.h calls of the same names, each under the lock. */
int poolsync_acquire(struct poolsync *ps, struct pool_source *src, uint64_t now_ms);
void poolsync_release(struct poolsync *ps, struct pool_source *src);
int poolsync_report_success(struct poolsync *ps, struct pool_source *src, uint64_t now_ms);

/* pool_report_failure(), then the source's state after it, in one lock.
 * `state` may be NULL. */
int poolsync_report_failure(struct poolsync *ps, struct pool_source *src, enum pool_failure kind,
			    int err, uint64_t now_ms, enum pool_state *state);

int poolsync_suspend(struct poolsync *ps, struct pool_source *src, uint64_t duration_ms,
		     uint64_t now_ms);
int poolsync_resume(struct poolsync *ps, struct pool_source *src, uint64_t now_ms);
uint64_t poolsync_expire(struct poolsync *ps, struct pool_set *set, uint64_t now_ms);
void poolsync_get_info(struct poolsync *ps, const struct pool_source *src, uint64_t now_ms,
		       struct pool_source_info *out);

/* pool_set_free() under the lock: a set's memory is shared with the other
 * generations of its sources. NULL is a no-op. */
void poolsync_set_free(struct poolsync *ps, struct pool_set *set);

/* Times the lock was taken and times it was held by another thread then
 * (both 0 when not threaded). */
void poolsync_counts(struct poolsync *ps, uint64_t *locks, uint64_t *contended);

#endif
