/* Unit tests for proxy/poolsync.c: several threads on one pool set, as the
 * workers use it. Run under ThreadSanitizer in CI (build-tsan). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "poolsync.h"

#define THREADS 4
#define ROUNDS	4000
#define HOUR	(3600u * 1000u)

struct fixture {
	uv_loop_t loop;
	uv_async_t changed_async; /* what a watcher wakes, as poolwatch.c does */
	struct poolsync ps;
	struct pool_set *set;
	pthread_t main_thread;
	unsigned changed; /* on_changed calls, main thread only */
	/* Written by the watcher, which runs under the lock. */
	unsigned offline, online;
	/* Per source: acquisitions held now and the most ever seen. */
	atomic_uint held[2];
	atomic_uint held_max[2];
	atomic_uint picked, busy;
};

static void on_changed(uv_async_t *a)
{
	struct fixture *f = a->data;

	assert_true(pthread_equal(pthread_self(), f->main_thread));
	f->changed++;
}

static void on_event(const struct pool_event *ev, void *ctx)
{
	struct fixture *f = ctx;

	if (ev->type == POOL_EVENT_OFFLINE)
		f->offline++;
	else if (ev->type == POOL_EVENT_ONLINE)
		f->online++;
	uv_async_send(&f->changed_async);
}

static struct pool_set *make_set(uint32_t max_connections)
{
	struct pool_source_spec src[2] = {
	    {.name = "a",
	     .identity = "address 192.0.2.10",
	     .families = POOL_FAMILY_V4,
	     .unplumbed = {.enabled = true, .duration_ms = HOUR},
	     .max_connections = max_connections},
	    {.name = "b",
	     .identity = "address 192.0.2.11",
	     .families = POOL_FAMILY_V4,
	     .unplumbed = {.enabled = true, .duration_ms = HOUR},
	     .max_connections = max_connections},
	};
	struct pool_entry_spec ent[2] = {{.source = 0, .weight = 1}, {.source = 1, .weight = 1}};
	struct pool_spec pool = {.name = "main", .entries = ent, .n_entries = 2};
	struct pool_set_spec spec = {.sources = src, .n_sources = 2, .pools = &pool, .n_pools = 1};
	struct pool_set *set = NULL;

	assert_int_equal(pool_set_new(&spec, &set, NULL, 0), 0);
	return set;
}

static int setup(void **state, bool threaded)
{
	struct fixture *f = calloc(1, sizeof *f);

	if (!f)
		return -1;
	uv_loop_init(&f->loop);
	uv_async_init(&f->loop, &f->changed_async, on_changed);
	f->changed_async.data = f;
	f->main_thread = pthread_self();
	if (poolsync_init(&f->ps, threaded) < 0)
		return -1;
	*state = f;
	return 0;
}

static int setup_threaded(void **state)
{
	return setup(state, true);
}

static int setup_single(void **state)
{
	return setup(state, false);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int rc;

	poolsync_set_free(&f->ps, f->set);
	poolsync_destroy(&f->ps);
	uv_close((uv_handle_t *)&f->changed_async, NULL);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	rc = uv_loop_close(&f->loop);
	free(f);
	return rc == 0 ? 0 : -1;
}

/* Run the main loop until on_changed has run at least once (5 s at most). */
static void wait_changed(struct fixture *f)
{
	uint64_t deadline = uv_hrtime() + 5000000000ull;

	while (!f->changed && uv_hrtime() < deadline)
		uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_true(f->changed > 0);
}

static void run_threads(void *(*fn)(void *), struct fixture *f)
{
	pthread_t t[THREADS];

	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, fn, f), 0);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
}

static void *connect_loop(void *arg)
{
	struct fixture *f = arg;
	struct pool *pool = pool_set_pool_at(f->set, 0);
	struct pool_request req = {.family = POOL_FAMILY_V4};

	for (unsigned i = 0; i < ROUNDS; i++) {
		struct pool_pick pick;
		size_t k;
		unsigned now, max;

		if (poolsync_pick(&f->ps, pool, &req, 1000 + i, &pick) < 0 ||
		    pick.status != POOL_PICKED) {
			atomic_fetch_add(&f->busy, 1);
			continue;
		}
		atomic_fetch_add(&f->picked, 1);
		k = pool_source_index(pick.source);
		now = atomic_fetch_add(&f->held[k], 1) + 1;
		max = atomic_load(&f->held_max[k]);
		while (now > max && !atomic_compare_exchange_weak(&f->held_max[k], &max, now))
			;
		poolsync_report_success(&f->ps, pick.source, 1000 + i);
		atomic_fetch_sub(&f->held[k], 1);
		poolsync_release(&f->ps, pick.source);
	}
	return NULL;
}

/* max_connections counts across threads: never more held than the cap. */
static void test_poolsync_caps_hold_across_threads(void **state)
{
	struct fixture *f = *state;
	struct pool_source_info a, b;
	uint64_t locks, contended;

	f->set = make_set(2);
	run_threads(connect_loop, f);
	assert_int_equal(atomic_load(&f->picked) + atomic_load(&f->busy), THREADS * ROUNDS);
	assert_true(atomic_load(&f->held_max[0]) <= 2);
	assert_true(atomic_load(&f->held_max[1]) <= 2);
	poolsync_get_info(&f->ps, pool_set_source_at(f->set, 0), 1, &a);
	poolsync_get_info(&f->ps, pool_set_source_at(f->set, 1), 1, &b);
	assert_int_equal(a.active + b.active, 0);
	assert_int_equal(a.counters.selected + b.counters.selected, atomic_load(&f->picked));
	assert_int_equal(a.counters.successes + b.counters.successes, atomic_load(&f->picked));
	poolsync_counts(&f->ps, &locks, &contended);
	assert_true(locks >= 3ull * atomic_load(&f->picked));
	assert_true(contended <= locks);
}

static void *fail_loop(void *arg)
{
	struct fixture *f = arg;
	struct pool_source *a = pool_set_source_at(f->set, 0);

	for (unsigned i = 0; i < ROUNDS; i++) {
		enum pool_state st = POOL_STATE_ELIGIBLE;
		assert_int_equal(poolsync_report_failure(&f->ps, a, POOL_FAILURE_UNPLUMBED, 99,
							 1000 + i % 10, &st),
				 0);
		assert_int_equal(st, POOL_STATE_SUSPENDED);
	}
	return NULL;
}

/* Every thread blames the same source at once: it goes offline once, the
 * watcher sees one OFFLINE, and the main loop hears about it. */
static void test_poolsync_one_transition_whatever_the_threads(void **state)
{
	struct fixture *f = *state;
	struct pool_source_info a;

	f->set = make_set(0);
	assert_int_equal(
	    pool_set_watch(f->set,
			   POOL_EVENT_MASK(POOL_EVENT_OFFLINE) | POOL_EVENT_MASK(POOL_EVENT_ONLINE),
			   on_event, f),
	    0);
	run_threads(fail_loop, f);
	poolsync_lock(&f->ps);
	assert_int_equal(f->offline, 1);
	assert_int_equal(f->online, 0);
	poolsync_unlock(&f->ps);
	poolsync_get_info(&f->ps, pool_set_source_at(f->set, 0), 2000, &a);
	assert_int_equal(a.counters.failures[POOL_FAILURE_UNPLUMBED], THREADS * ROUNDS);
	assert_int_equal(a.counters.suspensions, 1);
	wait_changed(f);
}

static void *expire_loop(void *arg)
{
	struct fixture *f = arg;
	struct pool *pool = pool_set_pool_at(f->set, 0);
	struct pool_request req = {.family = POOL_FAMILY_V4};

	for (unsigned i = 0; i < 200; i++) {
		struct pool_pick pick;
		assert_int_equal(poolsync_pick(&f->ps, pool, &req, 2 * HOUR + i, &pick), 0);
		assert_int_equal(pick.status, POOL_PICKED);
		poolsync_release(&f->ps, pick.source);
	}
	return NULL;
}

/* Lazy expiry from several threads' picks: one ONLINE. */
static void test_poolsync_one_online_from_concurrent_picks(void **state)
{
	struct fixture *f = *state;

	f->set = make_set(0);
	assert_int_equal(pool_set_watch(f->set, POOL_EVENTS_ALL, on_event, f), 0);
	assert_int_equal(poolsync_suspend(&f->ps, pool_set_source_at(f->set, 0), HOUR, 0), 0);
	run_threads(expire_loop, f);
	poolsync_lock(&f->ps);
	assert_int_equal(f->offline, 1);
	assert_int_equal(f->online, 1);
	poolsync_unlock(&f->ps);
	assert_int_equal(poolsync_expire(&f->ps, f->set, 2 * HOUR + 1000), UINT64_MAX);
	wait_changed(f);
}

/* workers = 1: no lock is taken, everything else works the same. */
static void test_poolsync_single_loop_takes_no_lock(void **state)
{
	struct fixture *f = *state;
	struct pool *pool;
	struct pool_request req = {.family = POOL_FAMILY_V4};
	struct pool_pick pick;
	uint64_t locks = 1, contended = 1;

	f->set = make_set(1);
	pool = pool_set_pool_at(f->set, 0);
	assert_int_equal(pool_set_watch(f->set, POOL_EVENTS_ALL, on_event, f), 0);
	assert_int_equal(poolsync_pick(&f->ps, pool, &req, 10, &pick), 0);
	assert_int_equal(pick.status, POOL_PICKED);
	assert_int_equal(poolsync_acquire(&f->ps, pick.source, 10), -EBUSY);
	assert_int_equal(
	    poolsync_report_failure(&f->ps, pick.source, POOL_FAILURE_UNPLUMBED, 99, 10, NULL), 0);
	assert_int_equal(f->offline, 1);
	poolsync_release(&f->ps, pick.source);
	assert_int_equal(poolsync_resume(&f->ps, pick.source, 20), 0);
	assert_int_equal(poolsync_resume(&f->ps, pick.source, 20), -EALREADY);
	assert_int_equal(f->online, 1);
	poolsync_counts(&f->ps, &locks, &contended);
	assert_int_equal(locks, 0);
	assert_int_equal(contended, 0);
	wait_changed(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_poolsync_caps_hold_across_threads, setup_threaded,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_poolsync_one_transition_whatever_the_threads,
					    setup_threaded, teardown),
	    cmocka_unit_test_setup_teardown(test_poolsync_one_online_from_concurrent_picks,
					    setup_threaded, teardown),
	    cmocka_unit_test_setup_teardown(test_poolsync_single_loop_takes_no_lock, setup_single,
					    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
