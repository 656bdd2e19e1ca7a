/* ratelimit: "first line logged, then at most one line per interval".
 *
 * A `struct log_limit` guards one kind of repeated log line (one call site,
 * or one key such as a pool name). The first event is logged; events within
 * the next interval are only counted; when the interval is over, one line
 * `suppressed N similar` reports them and opens the next interval. So a
 * flood gives one line, then one summary line per interval; a quiet limiter
 * logs its next event at once again. Pure: time is passed in (ms, any
 * monotonic clock), nothing is allocated, no locking (one thread).
 */
#ifndef SOCKPOOL_RATELIMIT_H
#define SOCKPOOL_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

/* Interval used by the proxy's limiters. */
#define LOG_LIMIT_INTERVAL_MS 10000

struct log_limit {
	uint64_t interval_ms;
	uint64_t window_end_ms; /* end of the current interval */
	uint64_t suppressed;	/* events counted, not logged, in this interval */
	bool active;		/* an interval is open */
};

/* A limiter with `interval_ms` (> 0) that has seen nothing. */
void log_limit_init(struct log_limit *l, uint64_t interval_ms);

/* An event at now_ms. @return true when the caller logs it, false when it
 * was counted. When an interval with suppressed events has ended and was
 * not flushed yet, *flushed (may be NULL) gets their number, which the
 * caller reports first; otherwise 0. */
bool log_limit_hit(struct log_limit *l, uint64_t now_ms, uint64_t *flushed);

/* The suppressed count when the interval has ended at now_ms (the caller
 * logs `suppressed N similar`), 0 when there is nothing to report yet.
 * Reporting opens the next interval. */
uint64_t log_limit_flush(struct log_limit *l, uint64_t now_ms);

/* When log_limit_flush() will have something to report: the end of the
 * interval when events are suppressed, UINT64_MAX otherwise. */
uint64_t log_limit_due(const struct log_limit *l);

#endif
