/* ratelimit: see ratelimit.h. */
#include "ratelimit.h"

void log_limit_init(struct log_limit *l, uint64_t interval_ms)
{
	*l = (struct log_limit){.interval_ms = interval_ms ? interval_ms : 1};
}

bool log_limit_hit(struct log_limit *l, uint64_t now_ms, uint64_t *flushed)
{
	if (flushed)
		*flushed = 0;
	if (l->active && now_ms < l->window_end_ms) {
		l->suppressed++;
		return false;
	}
	if (l->active && l->suppressed) {
		/* The report of the last interval is due and opens the next one,
		 * which this event belongs to. */
		if (flushed)
			*flushed = l->suppressed;
		l->suppressed = 1;
		l->window_end_ms = now_ms + l->interval_ms;
		return false;
	}
	l->active = true;
	l->suppressed = 0;
	l->window_end_ms = now_ms + l->interval_ms;
	return true;
}

uint64_t log_limit_flush(struct log_limit *l, uint64_t now_ms)
{
	uint64_t n;

	if (!l->active || now_ms < l->window_end_ms)
		return 0;
	n = l->suppressed;
	l->suppressed = 0;
	/* After a report the next interval is open: a flood keeps giving one
	 * line per interval. Without a report the limiter is quiet again. */
	if (n)
		l->window_end_ms = now_ms + l->interval_ms;
	else
		l->active = false;
	return n;
}

uint64_t log_limit_due(const struct log_limit *l)
{
	return l->active && l->suppressed ? l->window_end_ms : UINT64_MAX;
}
