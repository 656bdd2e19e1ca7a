/* throttle: the proxy's repeated WARN lines, rate-limited and counted.
 *
 * Refusals at accept (allow, max_connections, max_connections_per_client),
 * accept errors and the pool's exhausted/busy lines can come thousands of
 * times a second. Each kind (and for pool lines each pool) has a
 * `struct log_limit` (ratelimit.h): the first line is logged, then at most
 * one `suppressed N similar` line per LOG_LIMIT_INTERVAL_MS. A timer writes
 * that line when a flood ends, so no count is lost. One throttle serves the
 * whole process: throttle_start() and throttle_stop() on the main loop,
 * throttle_log() from any worker's thread (a lock guards the counts, and the
 * timer is re-armed on the main loop).
 */
#ifndef SOCKPOOL_THROTTLE_H
#define SOCKPOOL_THROTTLE_H

#include "log.h"
#include "proxy.h"

enum throttle_kind {
	THROTTLE_REFUSED_ALLOW,
	THROTTLE_REFUSED_MAX_CONNECTIONS,
	THROTTLE_REFUSED_PER_CLIENT,
	THROTTLE_ACCEPT_ERROR,
	THROTTLE_POOL_EXHAUSTED, /* keyed by pool name */
	THROTTLE_POOL_BUSY,	 /* keyed by pool name */
	THROTTLE_OUTBOUND_SOCKET,
	THROTTLE_COUNT
};

/* Set up px->throttle (its timer on px->loop). @return 0 or -ENOMEM. */
int throttle_start(struct proxy *px);

/* Write what is still suppressed, close the timer, free in its close
 * callback; px->throttle becomes NULL. Safe when never started. */
void throttle_stop(struct proxy *px);

/* Log one line of `kind` (key: pool name, or NULL) at `level`, unless its
 * limiter suppresses it. `label` (copied) names the kind in the summary
 * line: `WARN server: suppressed 99 similar: refused: max_connections=50`.
 * Without px->throttle every line is logged. */
void throttle_log(struct proxy *px, enum throttle_kind kind, const char *key, enum log_level level,
		  const char *component, const char *label, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

/* A connection refused at accept: counts px->stats.refused[why], and logs
 * (rate-limited) the client (`peer`, an address string) and the limit it hit
 * (`limit`: max_connections or max_connections_per_client; unused for
 * allow). */
void proxy_refused(struct proxy *px, enum proxy_refusal why, const char *peer, uint32_t limit);

/* accept() on listener `addr` (NULL: not known, libuv's EMFILE trick ran)
 * failed with uv_err: counted in
 * px->stats.accept_errors (and accept_emfile for EMFILE/ENFILE), logged
 * rate-limited. */
void proxy_accept_failed(struct proxy *px, const char *addr, int uv_err);

#endif
