/* pool_bench: nanoseconds per pool_pick() at 4, 64 and 10,000 sources with
 * 10% suspended, for each strategy; plus a whole attempt (pick, acquire,
 * report success, release) and the cost of building and reloading a set.
 *
 * Usage: pool_bench [picks-per-run]   (default 1,000,000)
 * Each figure is the best of REPEAT runs, as the machine may be shared.
 * Build it in a release build: meson setup build-rel --buildtype=release */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "pool.h"

#define N_KEYS 4096
#define REPEAT 5

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

struct bench {
	struct pool_source_spec *src;
	struct pool_entry_spec *ent;
	char (*names)[32];
	struct pool_spec pool;
	struct pool_set_spec spec;
};

/* n sources of weight 1..3; failover in 4 tiers. Every 10th is suspended. */
static struct pool_set *build(struct bench *b, size_t n, enum pool_strategy strategy)
{
	b->src = calloc(n, sizeof(*b->src));
	b->ent = calloc(n, sizeof(*b->ent));
	b->names = calloc(n, sizeof(*b->names));
	if (!b->src || !b->ent || !b->names)
		exit(1);
	for (size_t i = 0; i < n; i++) {
		snprintf(b->names[i], sizeof(b->names[i]), "src-%zu", i);
		b->src[i] = (struct pool_source_spec){
		    .name = b->names[i],
		    .identity = b->names[i],
		    .families = POOL_FAMILY_V4,
		    .unplumbed = {true, 0, 0, 300000},
		    .ref = i,
		};
		b->ent[i] = (struct pool_entry_spec){i, 1 + (uint32_t)(i % 3), (uint32_t)(i % 4)};
	}
	b->pool = (struct pool_spec){"bench", strategy, b->ent, n};
	b->spec = (struct pool_set_spec){b->src, n, &b->pool, 1, NULL};
	struct pool_set *set;
	char err[POOL_ERR_MAX];
	if (pool_set_new(&b->spec, &set, err, sizeof(err))) {
		fprintf(stderr, "pool_set_new: %s\n", err);
		exit(1);
	}
	for (size_t i = 0; i < n; i += 10)
		pool_source_suspend(pool_set_source_at(set, i), UINT64_MAX, 0);
	return set;
}

static void unbuild(struct bench *b, struct pool_set *set)
{
	pool_set_free(set);
	free(b->src);
	free(b->ent);
	free(b->names);
}

int main(int argc, char **argv)
{
	static const size_t sizes[] = {4, 64, 10000};
	static const enum pool_strategy strategies[] = {POOL_STRATEGY_ROUND_ROBIN,
							POOL_STRATEGY_HASH, POOL_STRATEGY_FAILOVER};
	static char keys[N_KEYS][24];
	long picks = argc > 1 ? atol(argv[1]) : 1000000;
	uint64_t sink = 0;

	for (int k = 0; k < N_KEYS; k++)
		snprintf(keys[k], sizeof(keys[k]), "198.51.100.%d:25", k);

	printf("%-12s %8s %12s %14s\n", "strategy", "sources", "ns/pick", "picks");
	for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
		for (size_t st = 0; st < 3; st++) {
			struct bench b;
			struct pool_set *set = build(&b, sizes[si], strategies[st]);
			struct pool *pool = pool_set_pool(set, "bench");
			struct pool_request req = {POOL_FAMILY_V4, NULL, 0, NULL};
			struct pool_pick out;
			double ns = 1e12;
			for (int rep = 0; rep < REPEAT; rep++) {
				double t0 = now_ns();
				for (long i = 0; i < picks; i++) {
					if (strategies[st] == POOL_STRATEGY_HASH) {
						req.key = keys[i & (N_KEYS - 1)];
						req.key_len = 16;
					}
					pool_pick(pool, &req, 1, &out);
					sink += pool_source_index(out.source);
				}
				double run = (now_ns() - t0) / (double)picks;
				ns = run < ns ? run : ns;
			}
			printf("%-12s %8zu %12.1f %14ld\n", pool_strategy_name(strategies[st]),
			       sizes[si], ns, picks);
			unbuild(&b, set);
		}
	}

	/* One whole successful attempt as the proxy makes it, round-robin. */
	for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
		struct bench b;
		struct pool_set *set = build(&b, sizes[si], POOL_STRATEGY_ROUND_ROBIN);
		struct pool *pool = pool_set_pool(set, "bench");
		struct pool_request req = {POOL_FAMILY_V4, NULL, 0, NULL};
		struct pool_pick out;
		double ns = 1e12;
		for (int rep = 0; rep < REPEAT; rep++) {
			double t0 = now_ns();
			for (long i = 0; i < picks; i++) {
				pool_pick(pool, &req, 1, &out);
				pool_source_acquire(out.source, 1);
				pool_report_success(out.source, 1);
				pool_source_release(out.source);
			}
			double run = (now_ns() - t0) / (double)picks;
			ns = run < ns ? run : ns;
		}
		printf("%-12s %8zu %12.1f %14ld   (pick+acquire+success+release)\n", "attempt",
		       sizes[si], ns, picks);
		unbuild(&b, set);
	}

	/* Building and reloading 10,000 sources (done under the proxy's lock). */
	for (size_t st = 0; st < 3; st++) {
		struct bench b;
		double t0 = now_ns();
		struct pool_set *set = build(&b, 10000, strategies[st]), *next;
		double t1 = now_ns();
		if (pool_set_new_from(set, &b.spec, &next, NULL, 0))
			return 1;
		double t2 = now_ns();
		pool_set_free(set);
		printf("%-12s %8d   build %.2f ms, reload %.2f ms\n",
		       pool_strategy_name(strategies[st]), 10000, (t1 - t0) / 1e6, (t2 - t1) / 1e6);
		unbuild(&b, next);
	}
	return sink == 42 ? 2 : 0;
}
