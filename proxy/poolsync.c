/* poolsync: one lock around the pool engine, see poolsync.h. */
#include "poolsync.h"

#include <errno.h>

int poolsync_init(struct poolsync *ps, bool threaded)
{
	int rc;

	if (!ps)
		return -EINVAL;
	*ps = (struct poolsync){.threaded = threaded};
	rc = pthread_mutex_init(&ps->mu, NULL);
	return rc ? -rc : 0;
}

void poolsync_destroy(struct poolsync *ps)
{
	if (ps)
		pthread_mutex_destroy(&ps->mu);
}

void poolsync_lock(struct poolsync *ps)
{
	if (!ps || !ps->threaded)
		return;
	if (pthread_mutex_trylock(&ps->mu) != 0) {
		pthread_mutex_lock(&ps->mu);
		ps->contended++;
	}
	ps->locks++;
}

void poolsync_unlock(struct poolsync *ps)
{
	if (ps && ps->threaded)
		pthread_mutex_unlock(&ps->mu);
}

int poolsync_pick(struct poolsync *ps, struct pool *pool, const struct pool_request *req,
		  uint64_t now_ms, struct pool_pick *out)
{
	int rc;

	poolsync_lock(ps);
	rc = pool_pick(pool, req, now_ms, out);
	/* Under the same lock nobody can take the last slot in between. */
	if (rc == 0 && out->status == POOL_PICKED && pool_source_acquire(out->source, now_ms) < 0)
		*out = (struct pool_pick){.status = POOL_BUSY, .until_ms = UINT64_MAX};
	poolsync_unlock(ps);
	return rc;
}

int poolsync_acquire(struct poolsync *ps, struct pool_source *src, uint64_t now_ms)
{
	int rc;

	poolsync_lock(ps);
	rc = pool_source_acquire(src, now_ms);
	poolsync_unlock(ps);
	return rc;
}

void poolsync_release(struct poolsync *ps, struct pool_source *src)
{
	poolsync_lock(ps);
	pool_source_release(src);
	poolsync_unlock(ps);
}

int poolsync_report_success(struct poolsync *ps, struct pool_source *src, uint64_t now_ms)
{
	int rc;

	poolsync_lock(ps);
	rc = pool_report_success(src, now_ms);
	poolsync_unlock(ps);
	return rc;
}

int poolsync_report_failure(struct poolsync *ps, struct pool_source *src, enum pool_failure kind,
			    int err, uint64_t now_ms, enum pool_state *state)
{
	struct pool_source_info info;
	int rc;

	poolsync_lock(ps);
	rc = pool_report_failure(src, kind, err, now_ms);
	if (state) {
		pool_source_get_info(src, now_ms, &info);
		*state = info.state;
	}
	poolsync_unlock(ps);
	return rc;
}

int poolsync_suspend(struct poolsync *ps, struct pool_source *src, uint64_t duration_ms,
		     uint64_t now_ms)
{
	int rc;

	poolsync_lock(ps);
	rc = pool_source_suspend(src, duration_ms, now_ms);
	poolsync_unlock(ps);
	return rc;
}

int poolsync_resume(struct poolsync *ps, struct pool_source *src, uint64_t now_ms)
{
	int rc;

	poolsync_lock(ps);
	rc = pool_source_resume(src, now_ms);
	poolsync_unlock(ps);
	return rc;
}

uint64_t poolsync_expire(struct poolsync *ps, struct pool_set *set, uint64_t now_ms)
{
	uint64_t next;

	poolsync_lock(ps);
	next = pool_expire(set, now_ms);
	poolsync_unlock(ps);
	return next;
}

void poolsync_get_info(struct poolsync *ps, const struct pool_source *src, uint64_t now_ms,
		       struct pool_source_info *out)
{
	poolsync_lock(ps);
	pool_source_get_info(src, now_ms, out);
	poolsync_unlock(ps);
}

void poolsync_set_free(struct poolsync *ps, struct pool_set *set)
{
	if (!set)
		return;
	poolsync_lock(ps);
	pool_set_free(set);
	poolsync_unlock(ps);
}

void poolsync_counts(struct poolsync *ps, uint64_t *locks, uint64_t *contended)
{
	*locks = *contended = 0;
	if (!ps)
		return;
	poolsync_lock(ps);
	*locks = ps->locks;
	*contended = ps->contended;
	poolsync_unlock(ps);
}
