/* poolsync_bench: what the shared pool lock costs one connection. The pool
 * steps of one connection (pick + acquire, report success, release, each
 * under poolsync's lock) timed as workers = 1 runs them (no lock), with the
 * lock but one thread (workers = N on a quiet host), and with 2 and 4 threads
 * hammering the same pool at once (the worst case: no other work between
 * connections, so the lock is busy far more often than in the proxy).
 *
 * Usage: poolsync_bench [connections-per-thread]   (default 1,000,000)
 * ns_per_connection is wall-clock time over every thread's connections, so
 * with T threads it is 1/T of a thread's own time if nothing serialises
 * them. Each figure is the best of REPEAT runs. Build it in a release build. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "poolsync.h"

#define REPEAT	    3
#define SOURCES	    8
#define MAX_THREADS 4

struct run {
	struct poolsync *ps;
	struct pool *pool;
	unsigned long n;
	pthread_barrier_t go; /* every thread starts at once */
};

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void *connections(void *arg)
{
	struct run *r = arg;
	struct pool_request req = {.family = POOL_FAMILY_V4};

	pthread_barrier_wait(&r->go);
	for (unsigned long i = 0; i < r->n; i++) {
		struct pool_pick pick;
		if (poolsync_pick(r->ps, r->pool, &req, 1000 + i / 1000, &pick) < 0 ||
		    pick.status != POOL_PICKED)
			abort();
		poolsync_report_success(r->ps, pick.source, 1000 + i / 1000);
		poolsync_release(r->ps, pick.source);
	}
	return NULL;
}

/* Wall-clock ns per connection over all threads (n each), best of REPEAT. */
static double measure(bool threaded, int threads, unsigned long n, uint64_t *contended_pct)
{
	static char names[SOURCES][16];
	struct pool_source_spec src[SOURCES];
	struct pool_entry_spec ent[SOURCES];
	double best = 1e18;

	for (int i = 0; i < SOURCES; i++) {
		snprintf(names[i], sizeof names[i], "s%d", i);
		src[i] = (struct pool_source_spec){
		    .name = names[i],
		    .identity = names[i],
		    .families = POOL_FAMILY_V4,
		    .unplumbed = {.enabled = true, .duration_ms = 60000},
		};
		ent[i] = (struct pool_entry_spec){.source = (size_t)i, .weight = 1};
	}
	struct pool_spec pool = {.name = "main", .entries = ent, .n_entries = SOURCES};
	struct pool_set_spec spec = {
	    .sources = src, .n_sources = SOURCES, .pools = &pool, .n_pools = 1};

	for (int rep = 0; rep < REPEAT; rep++) {
		struct poolsync ps;
		struct pool_set *set;
		pthread_t t[MAX_THREADS];
		struct run r;
		uint64_t locks, contended;
		double t0, ns;

		if (poolsync_init(&ps, threaded) < 0 || pool_set_new(&spec, &set, NULL, 0) < 0)
			exit(1);
		r = (struct run){.ps = &ps, .pool = pool_set_pool_at(set, 0), .n = n};
		pthread_barrier_init(&r.go, NULL, (unsigned)threads + 1);
		for (int i = 0; i < threads; i++)
			pthread_create(&t[i], NULL, connections, &r);
		t0 = now_ns();
		pthread_barrier_wait(&r.go);
		for (int i = 0; i < threads; i++)
			pthread_join(t[i], NULL);
		ns = (now_ns() - t0) / ((double)n * threads);
		pthread_barrier_destroy(&r.go);
		poolsync_counts(&ps, &locks, &contended);
		if (ns < best) {
			best = ns;
			*contended_pct = locks ? contended * 100 / locks : 0;
		}
		pool_set_free(set);
		poolsync_destroy(&ps);
	}
	return best;
}

int main(int argc, char **argv)
{
	unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
	uint64_t pct = 0;
	double base;

	base = measure(false, 1, n, &pct);
	printf("RESULT mode=no-lock threads=1 ns_per_connection=%.1f\n", base);
	printf("RESULT mode=lock threads=1 ns_per_connection=%.1f contended_pct=%llu\n",
	       measure(true, 1, n, &pct), (unsigned long long)pct);
	for (int th = 2; th <= MAX_THREADS; th *= 2) {
		double ns = measure(true, th, n, &pct);
		printf("RESULT mode=lock threads=%d ns_per_connection=%.1f contended_pct=%llu\n",
		       th, ns, (unsigned long long)pct);
	}
	return 0;
}
