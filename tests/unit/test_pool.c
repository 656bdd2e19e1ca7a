/* Unit tests for pool/: strategies, windows, expiry, caps, events, reload. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "pool.h"

#define V4  POOL_FAMILY_V4
#define V6  POOL_FAMILY_V6
#define ANY POOL_FAMILY_ANY
#define MIN (60 * 1000)

/* Every allocation goes through cmocka so that each test also checks for
 * leaks; fail_at > 0 makes that allocation (1-based) fail. */
struct talloc {
	unsigned count, fail_at;
};

static void *t_calloc(size_t n, size_t size, void *ctx)
{
	struct talloc *ta = ctx;
	if (ta && ta->fail_at && ++ta->count == ta->fail_at)
		return NULL;
	return test_calloc(n, size);
}

static void t_free(void *ptr, void *ctx)
{
	(void)ctx;
	test_free(ptr);
}

static const struct pool_alloc test_alloc = {t_calloc, t_free, NULL};

static struct pool_source_spec src_spec(const char *name, unsigned families)
{
	struct pool_source_spec s = {
	    .name = name,
	    .identity = name,
	    .families = families,
	    .unplumbed = {.enabled = true, .count = 0, .duration_ms = 5 * MIN},
	    .proxy_unhealthy = {.enabled = true,
				.count = 3,
				.period_ms = 5 * MIN,
				.duration_ms = 10 * MIN},
	};
	return s;
}

static struct pool_set *mkset(const struct pool_source_spec *src, size_t n_src,
			      const struct pool_spec *pools, size_t n_pools)
{
	struct pool_set_spec spec = {src, n_src, pools, n_pools, &test_alloc};
	struct pool_set *set = NULL;
	char err[POOL_ERR_MAX];
	int rc = pool_set_new(&spec, &set, err, sizeof(err));
	if (rc)
		fail_msg("pool_set_new: %d %s", rc, err);
	return set;
}

/* One pool "p" over sources named by single letters with the given weights. */
static struct pool_set *mkpool(enum pool_strategy strategy, const char *names,
			       const uint32_t *weights, const uint32_t *priorities)
{
	static char name_buf[26][2];
	struct pool_source_spec src[26];
	struct pool_entry_spec ent[26];
	size_t n = strlen(names);
	for (size_t i = 0; i < n; i++) {
		name_buf[i][0] = names[i];
		name_buf[i][1] = '\0';
		src[i] = src_spec(name_buf[i], V4);
		ent[i] = (struct pool_entry_spec){i, weights ? weights[i] : 1,
						  priorities ? priorities[i] : 0};
	}
	struct pool_spec pool = {"p", strategy, ent, n};
	return mkset(src, n, &pool, 1);
}

static struct pool_pick pick_req(struct pool *p, unsigned family, const char *key,
				 const struct pool_tried *tried, uint64_t now)
{
	struct pool_request req = {family, key, key ? strlen(key) : 0, tried};
	struct pool_pick out;
	assert_int_equal(pool_pick(p, &req, now, &out), 0);
	return out;
}

static struct pool_source *pick(struct pool *p, uint64_t now)
{
	struct pool_pick out = pick_req(p, V4, NULL, NULL, now);
	return out.status == POOL_PICKED ? out.source : NULL;
}

static char letter(struct pool_source *s)
{
	return s ? pool_source_name(s)[0] : '-';
}

static void assert_sequence(struct pool *p, const char *expected)
{
	char got[128];
	size_t n = strlen(expected);
	for (size_t i = 0; i < n; i++)
		got[i] = letter(pick(p, 0));
	got[n] = '\0';
	assert_string_equal(got, expected);
}

struct counter {
	unsigned n[4];
	struct pool_event last[4];
};

static void on_event(const struct pool_event *ev, void *ctx)
{
	struct counter *c = ctx;
	c->n[ev->type]++;
	c->last[ev->type] = *ev;
}

static bool suspended(struct pool_source *s)
{
	struct pool_source_info info;
	pool_source_get_info(s, 0, &info);
	return info.state == POOL_STATE_SUSPENDED;
}

static void test_pool_swrr_sequences(void **state)
{
	(void)state;
	static const struct {
		const char *names;
		uint32_t w[4];
		const char *seq;
	} cases[] = {
	    {"abc",
	     {5, 1, 1},
	     "aabacaa"
	     "aabacaa"},
	    {"ab",
	     {2, 1},
	     "aba"
	     "aba"
	     "aba"},
	    {"abc",
	     {1, 1, 1},
	     "abc"
	     "abc"
	     "abc"},
	    {"ab",
	     {3, 2},
	     "ababa"
	     "ababa"},
	    {"abcd",
	     {1, 1, 1, 1},
	     "abcd"
	     "abcd"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct pool_set *set =
		    mkpool(POOL_STRATEGY_ROUND_ROBIN, cases[i].names, cases[i].w, NULL);
		assert_sequence(pool_set_pool(set, "p"), cases[i].seq);
		pool_set_free(set);
	}
}

static void test_pool_weight_zero_never_picked(void **state)
{
	(void)state;
	uint32_t w[] = {1, 0, 1};
	struct pool_set *set = mkpool(POOL_STRATEGY_ROUND_ROBIN, "abc", w, NULL);
	struct pool *p = pool_set_pool(set, "p");
	for (int i = 0; i < 1000; i++)
		assert_int_not_equal(letter(pick(p, 0)), 'b');
	assert_int_equal(pool_entry_count(p), 3);
	pool_set_free(set);

	uint32_t zero[] = {0, 0};
	set = mkpool(POOL_STRATEGY_HASH, "ab", zero, NULL);
	assert_int_equal(pick_req(pool_set_pool(set, "p"), V4, "k", NULL, 0).status, POOL_NONE);
	pool_set_free(set);
}

static void count_picks(struct pool *p, unsigned n, unsigned *counts)
{
	for (unsigned i = 0; i < n; i++)
		counts[letter(pick(p, 0)) - 'a']++;
}

static void test_pool_swrr_exact_proportions(void **state)
{
	(void)state;
	uint32_t w21[] = {2, 1}, w511[] = {5, 1, 1};
	unsigned c[3] = {0};
	struct pool_set *set = mkpool(POOL_STRATEGY_ROUND_ROBIN, "ab", w21, NULL);
	count_picks(pool_set_pool(set, "p"), 100000, c);
	/* 33,333 rounds of `aba`, then the first turn of the next one: a. */
	assert_int_equal(c[0], 66667);
	assert_int_equal(c[1], 33333);
	pool_set_free(set);

	memset(c, 0, sizeof(c));
	set = mkpool(POOL_STRATEGY_ROUND_ROBIN, "abc", w511, NULL);
	count_picks(pool_set_pool(set, "p"), 100000, c);
	/* 14,285 rounds of `aabacaa`, then `aabac`. */
	assert_int_equal(c[0], 14285 * 5 + 3);
	assert_int_equal(c[1], 14286);
	assert_int_equal(c[2], 14286);
	pool_set_free(set);
}

static void test_pool_swrr_skips_suspended_and_rotates(void **state)
{
	(void)state;
	struct pool_set *set = mkpool(POOL_STRATEGY_ROUND_ROBIN, "abcd", NULL, NULL);
	struct pool *p = pool_set_pool(set, "p");
	assert_int_equal(pool_source_suspend(pool_set_source(set, "b"), 1000, 0), 0);
	assert_sequence(p, "acdacd");
	assert_int_equal(pool_count_eligible(p, V4), 3);
	pool_set_free(set);
}

static void hash_map(struct pool *p, char *out, unsigned n)
{
	char key[32];
	for (unsigned i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "key-%u", i);
		struct pool_pick r = pick_req(p, V4, key, NULL, 0);
		out[i] = r.status == POOL_PICKED ? letter(r.source) : '-';
	}
}

#define KEYS 10000

static void test_pool_hash_suspend_moves_only_its_keys(void **state)
{
	(void)state;
	static char before[KEYS], during[KEYS], after[KEYS];
	struct pool_set *set = mkpool(POOL_STRATEGY_HASH, "abcdefghij", NULL, NULL);
	struct pool *p = pool_set_pool(set, "p");
	unsigned per[10] = {0}, moved_own = 0;

	hash_map(p, before, KEYS);
	hash_map(p, during, KEYS);
	assert_memory_equal(before, during, KEYS); /* stable */
	for (unsigned i = 0; i < KEYS; i++)
		per[before[i] - 'a']++;
	for (int s = 0; s < 10; s++)
		assert_in_range(per[s], 700, 1300); /* 1,000 each, roughly */

	assert_int_equal(pool_source_suspend(pool_set_source(set, "d"), 1000, 0), 0);
	hash_map(p, during, KEYS);
	for (unsigned i = 0; i < KEYS; i++) {
		assert_int_not_equal(during[i], 'd');
		if (before[i] == 'd')
			moved_own++;
		else
			assert_int_equal(during[i], before[i]); /* zero other moves */
	}
	assert_int_equal(moved_own, per[3]);
	assert_int_equal(pool_source_resume(pool_set_source(set, "d"), 0), 0);
	hash_map(p, after, KEYS);
	assert_memory_equal(before, after, KEYS);
	pool_set_free(set);
}

static void test_pool_hash_removal_on_reload_moves_only_its_keys(void **state)
{
	(void)state;
	static char before[KEYS], after[KEYS];
	struct pool_set *set = mkpool(POOL_STRATEGY_HASH, "abcdefghij", NULL, NULL);
	hash_map(pool_set_pool(set, "p"), before, KEYS);

	struct pool_source_spec src[9];
	struct pool_entry_spec ent[9];
	const char *names[] = {"a", "b", "c", "e", "f", "g", "h", "i", "j"};
	for (size_t i = 0; i < 9; i++) {
		src[i] = src_spec(names[i], V4);
		ent[i] = (struct pool_entry_spec){i, 1, 0};
	}
	struct pool_spec pool = {"p", POOL_STRATEGY_HASH, ent, 9};
	struct pool_set_spec spec = {src, 9, &pool, 1, &test_alloc};
	struct pool_set *next;
	assert_int_equal(pool_set_new_from(set, &spec, &next, NULL, 0), 0);
	pool_set_free(set);
	hash_map(pool_set_pool(next, "p"), after, KEYS);
	for (unsigned i = 0; i < KEYS; i++)
		if (before[i] != 'd')
			assert_int_equal(after[i], before[i]);
	pool_set_free(next);
}

/* The ring depends on the sources, not on their order in the spec (a reload
 * may list them differently): every key maps the same. */
static void test_pool_hash_independent_of_source_order(void **state)
{
	(void)state;
	static char fwd[KEYS], rev[KEYS];
	static const char *names[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"};
	struct pool_source_spec src[10];
	struct pool_entry_spec ent[10];
	for (size_t i = 0; i < 10; i++) {
		src[i] = src_spec(names[i], V4);
		ent[i] = (struct pool_entry_spec){i, 1 + i % 3, 0};
	}
	struct pool_spec pool = {"p", POOL_STRATEGY_HASH, ent, 10};
	struct pool_set *set = mkset(src, 10, &pool, 1);
	hash_map(pool_set_pool(set, "p"), fwd, KEYS);
	pool_set_free(set);
	for (size_t i = 0; i < 10; i++) {
		src[i] = src_spec(names[9 - i], V4);
		ent[i] = (struct pool_entry_spec){i, 1 + (9 - i) % 3, 0};
	}
	set = mkset(src, 10, &pool, 1);
	hash_map(pool_set_pool(set, "p"), rev, KEYS);
	assert_memory_equal(fwd, rev, KEYS);
	pool_set_free(set);
}

static void test_pool_hash_proportional_to_weight(void **state)
{
	(void)state;
	static char map[KEYS];
	uint32_t w[] = {1, 1, 2, 4};
	unsigned per[4] = {0};
	struct pool_set *set = mkpool(POOL_STRATEGY_HASH, "abcd", w, NULL);
	hash_map(pool_set_pool(set, "p"), map, KEYS);
	for (unsigned i = 0; i < KEYS; i++)
		per[map[i] - 'a']++;
	assert_in_range(per[0], 1250 * 3 / 4, 1250 * 5 / 4);
	assert_in_range(per[1], 1250 * 3 / 4, 1250 * 5 / 4);
	assert_in_range(per[2], 2500 * 3 / 4, 2500 * 5 / 4);
	assert_in_range(per[3], 5000 * 3 / 4, 5000 * 5 / 4);
	pool_set_free(set);
}

static void test_pool_hash_respects_family_and_tried(void **state)
{
	(void)state;
	struct pool_source_spec src[] = {src_spec("v4a", V4), src_spec("v4b", V4),
					 src_spec("v6a", V6), src_spec("any", ANY)};
	struct pool_entry_spec ent[] = {{0, 1, 0}, {1, 1, 0}, {2, 1, 0}, {3, 1, 0}};
	struct pool_spec pool = {"p", POOL_STRATEGY_HASH, ent, 4};
	struct pool_set *set = mkset(src, 4, &pool, 1);
	struct pool *p = pool_set_pool(set, "p");
	char key[32];
	for (unsigned i = 0; i < 500; i++) {
		snprintf(key, sizeof(key), "k%u", i);
		struct pool_pick r = pick_req(p, V6, key, NULL, 0);
		assert_int_equal(r.status, POOL_PICKED);
		assert_true(pool_source_families(r.source) & V6);
		/* excluding the first choice yields another source, then nothing */
		struct pool_tried tried;
		pool_tried_init(&tried);
		assert_int_equal(pool_tried_add(&tried, r.source), 0);
		struct pool_pick r2 = pick_req(p, V6, key, &tried, 0);
		assert_int_equal(r2.status, POOL_PICKED);
		assert_ptr_not_equal(r2.source, r.source);
		assert_int_equal(pool_tried_add(&tried, r2.source), 0);
		assert_int_equal(pick_req(p, V6, key, &tried, 0).status, POOL_NONE);
	}
	pool_set_free(set);
}

static void test_pool_failover_falls_through_and_returns(void **state)
{
	(void)state;
	uint32_t w[] = {1, 2, 1, 1}, prio[] = {1, 2, 2, 3};
	struct pool_set *set = mkpool(POOL_STRATEGY_FAILOVER, "abcd", w, prio);
	struct pool *p = pool_set_pool(set, "p");
	struct pool_source *a = pool_set_source(set, "a");

	assert_sequence(p, "aaaa");
	assert_int_equal(pool_report_failure(a, POOL_FAILURE_UNPLUMBED, EADDRNOTAVAIL, 1000), 0);
	assert_true(suspended(a));
	assert_sequence(p, "bcbbcb"); /* tier 2, SWRR 2:1 */
	assert_int_equal(pool_source_suspend(pool_set_source(set, "b"), 10 * MIN, 1000), 0);
	assert_int_equal(pool_source_suspend(pool_set_source(set, "c"), 10 * MIN, 1000), 0);
	assert_sequence(p, "dd");
	/* a's 5 minutes end: back to tier 1, lazily on the pick */
	assert_int_equal(letter(pick(p, 1000 + 5 * MIN - 1)), 'd');
	assert_int_equal(letter(pick(p, 1000 + 5 * MIN)), 'a');
	assert_false(suspended(a));
	pool_set_free(set);
}

static void test_pool_failover_wait_covers_all_tiers(void **state)
{
	(void)state;
	uint32_t prio[] = {1, 2};
	struct pool_set *set = mkpool(POOL_STRATEGY_FAILOVER, "ab", NULL, prio);
	struct pool *p = pool_set_pool(set, "p");
	assert_int_equal(pool_source_suspend(pool_set_source(set, "a"), 7000, 0), 0);
	assert_int_equal(pool_source_suspend(pool_set_source(set, "b"), 3000, 0), 0);
	struct pool_pick r = pick_req(p, V4, NULL, NULL, 10);
	assert_int_equal(r.status, POOL_WAIT);
	assert_int_equal(r.until_ms, 3000);
	pool_set_free(set);
}

/* Rule 2/period: failures at t and t+period-1 suspend; t and t+period do not. */
static void test_pool_window_edges_two(void **state)
{
	(void)state;
	const uint64_t t = 5000, period = MIN;
	struct pool_source_spec src = src_spec("a", V4);
	src.unplumbed = (struct pool_rule){true, 2, period, 5 * MIN};
	struct pool_entry_spec ent = {0, 1, 0};
	struct pool_spec pool = {"p", POOL_STRATEGY_ROUND_ROBIN, &ent, 1};

	struct pool_set *set = mkset(&src, 1, &pool, 1);
	struct pool_source *a = pool_set_source(set, "a");
	pool_report_failure(a, POOL_FAILURE_UNPLUMBED, EADDRNOTAVAIL, t);
	assert_false(suspended(a));
	pool_report_failure(a, POOL_FAILURE_UNPLUMBED, EADDRNOTAVAIL, t + period - 1);
	assert_true(suspended(a));
	pool_set_free(set);

	set = mkset(&src, 1, &pool, 1);
	a = pool_set_source(set, "a");
	pool_report_failure(a, POOL_FAILURE_UNPLUMBED, EADDRNOTAVAIL, t);
	pool_report_failure(a, POOL_FAILURE_UNPLUMBED, EADDRNOTAVAIL, t + period);
	assert_false(suspended(a));
	/* the window slid: t+period and t+2*period-1 are one period */
	pool_report_failure(a, POOL_FAILURE_UNPLUMBED, EADDRNOTAVAIL, t + 2 * period - 1);
	assert_true(suspended(a));
	pool_set_free(set);
}

/* Rule 3/1m: the third failure decides, measured from the oldest of the last 3. */
static void test_pool_window_edges_three(void **state)
{
	(void)state;
	struct pool_source_spec src = src_spec("a", V4);
	src.unplumbed = (struct pool_rule){true, 3, MIN, 5 * MIN};
	struct pool_entry_spec ent = {0, 1, 0};
	struct pool_spec pool = {"p", POOL_STRATEGY_ROUND_ROBIN, &ent, 1};
	struct counter c = {0};

	struct pool_set *set = mkset(&src, 1, &pool, 1);
	struct pool_source *a = pool_set_source(set, "a");
	assert_int_equal(pool_set_watch(set, POOL_EVENTS_ALL, on_event, &c), 0);
	pool_report_failure(a, POOL_FAILURE_UNPLUMBED, EADDRNOTAVAIL, 0);
	pool_report_failure(a, POOL_FAILURE_UNPLUMBED, EADDRNOTAVAIL, 1000);
	pool_report_failure(a, POOL_FAILURE_UNPLUMBED, EADDRNOTAVAIL, MIN);
	assert_false(suspended(a)); /* 0 .. 60000 is not within one minute */
	assert_int_equal(c.last[POOL_EVENT_FAILURE].errors, 2);
	pool_report_failure(a, POOL_FAILURE_UNPLUMBED, EADDRNOTAVAIL, 1000 + MIN - 1);
	assert_true(suspended(a)); /* 1000, 60000, 60999 */
	assert_int_equal(c.n[POOL_EVENT_OFFLINE], 1);
	assert_int_equal(c.last[POOL_EVENT_OFFLINE].errors, 3);
	assert_int_equal(c.last[POOL_EVENT_OFFLINE].trigger_count, 3);
	assert_int_equal(c.last[POOL_EVENT_OFFLINE].trigger_period_ms, MIN);
	assert_int_equal(c.last[POOL_EVENT_OFFLINE].duration_ms, 5 * MIN);
	assert_int_equal(c.last[POOL_EVENT_OFFLINE].suspended_until_ms, 1000 + MIN - 1 + 5 * MIN);
	assert_int_equal(c.last[POOL_EVENT_OFFLINE].reason, POOL_REASON_UNPLUMBED);
	pool_set_free(set);
}

static void test_pool_immediate_versus_threshold(void **state)
{
	(void)state;
	struct pool_source_spec src[] = {src_spec("imm", V4), src_spec("thr", V4)};
	src[1].unplumbed = (struct pool_rule){true, 3, MIN, 5 * MIN};
	struct pool_entry_spec ent[] = {{0, 1, 0}, {1, 1, 0}};
	struct pool_spec pool = {"p", POOL_STRATEGY_ROUND_ROBIN, ent, 2};
	struct pool_set *set = mkset(src, 2, &pool, 1);
	struct pool_source *imm = pool_set_source(set, "imm"), *thr = pool_set_source(set, "thr");

	pool_report_failure(imm, POOL_FAILURE_UNPLUMBED, EADDRNOTAVAIL, 100);
	pool_report_failure(thr, POOL_FAILURE_UNPLUMBED, EADDRNOTAVAIL, 100);
	assert_true(suspended(imm));
	assert_false(suspended(thr));
	pool_report_failure(thr, POOL_FAILURE_UNPLUMBED, EADDRNOTAVAIL, 200);
	assert_false(suspended(thr));
	pool_report_failure(thr, POOL_FAILURE_UNPLUMBED, EADDRNOTAVAIL, 300);
	assert_true(suspended(thr));
	/* the suspension cleared the window: after it, one failure is not enough */
	assert_int_equal(pool_source_resume(thr, 400), 0);
	pool_report_failure(thr, POOL_FAILURE_UNPLUMBED, EADDRNOTAVAIL, 500);
	assert_false(suspended(thr));
	pool_set_free(set);
}

static void test_pool_success_clears_window(void **state)
{
	(void)state;
	struct pool_source_spec src = src_spec("a", V4);
	src.unplumbed = (struct pool_rule){true, 3, MIN, 5 * MIN};
	struct pool_entry_spec ent = {0, 1, 0};
	struct pool_spec pool = {"p", POOL_STRATEGY_ROUND_ROBIN, &ent, 1};
	struct pool_set *set = mkset(&src, 1, &pool, 1);
	struct pool_source *a = pool_set_source(set, "a");
	struct pool_source_info info;

	pool_report_failure(a, POOL_FAILURE_UNPLUMBED, EADDRNOTAVAIL, 0);
	pool_report_failure(a, POOL_FAILURE_UNPLUMBED, EADDRNOTAVAIL, 10);
	pool_source_get_info(a, 10, &info);
	assert_int_equal(info.window_errors[POOL_FAILURE_UNPLUMBED], 2);
	assert_int_equal(pool_report_success(a, 20), 0);
	pool_source_get_info(a, 20, &info);
	assert_int_equal(info.window_errors[POOL_FAILURE_UNPLUMBED], 0);
	pool_report_failure(a, POOL_FAILURE_UNPLUMBED, EADDRNOTAVAIL, 30);
	pool_report_failure(a, POOL_FAILURE_UNPLUMBED, EADDRNOTAVAIL, 40);
	assert_false(suspended(a));
	pool_report_failure(a, POOL_FAILURE_UNPLUMBED, EADDRNOTAVAIL, 50);
	assert_true(suspended(a));
	pool_source_get_info(a, 50, &info);
	assert_int_equal(info.counters.failures[POOL_FAILURE_UNPLUMBED], 5);
	assert_int_equal(info.counters.successes, 1);
	assert_int_equal(info.counters.suspensions, 1);
	pool_set_free(set);
}

/* A failure reported once a suspension has run out counts in a fresh window
 * (the expiry happens first, with its ONLINE), even without a pick between. */
static void test_pool_report_after_expiry_suspends_again(void **state)
{
	(void)state;
	struct pool_set *set = mkpool(POOL_STRATEGY_ROUND_ROBIN, "a", NULL, NULL);
	struct pool_source *a = pool_set_source(set, "a");
	struct counter c = {0};
	assert_int_equal(pool_set_watch(set, POOL_EVENTS_ALL, on_event, &c), 0);
	pool_report_failure(a, POOL_FAILURE_UNPLUMBED, EADDRNOTAVAIL, 0);
	assert_int_equal(c.n[POOL_EVENT_OFFLINE], 1);
	pool_report_failure(a, POOL_FAILURE_UNPLUMBED, EADDRNOTAVAIL, 5 * MIN - 1);
	assert_int_equal(c.n[POOL_EVENT_OFFLINE], 1); /* still suspended: no extension */
	pool_report_failure(a, POOL_FAILURE_UNPLUMBED, EADDRNOTAVAIL, 5 * MIN);
	assert_int_equal(c.n[POOL_EVENT_ONLINE], 1);
	assert_int_equal(c.n[POOL_EVENT_OFFLINE], 2);
	assert_int_equal(c.last[POOL_EVENT_OFFLINE].suspended_until_ms, 10 * MIN);
	pool_set_free(set);
}

static void test_pool_ports_exhausted_never_suspends(void **state)
{
	(void)state;
	struct pool_set *set = mkpool(POOL_STRATEGY_ROUND_ROBIN, "a", NULL, NULL);
	struct pool_source *a = pool_set_source(set, "a");
	struct counter c = {0};
	struct pool_source_info info;
	assert_int_equal(pool_set_watch(set, POOL_EVENTS_ALL, on_event, &c), 0);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(pool_report_failure(a, POOL_FAILURE_PORTS_EXHAUSTED,
						     -EADDRNOTAVAIL, (uint64_t)i),
				 0);
	pool_source_get_info(a, 1000, &info);
	assert_int_equal(info.state, POOL_STATE_ELIGIBLE);
	assert_int_equal(info.counters.failures[POOL_FAILURE_PORTS_EXHAUSTED], 1000);
	assert_int_equal(info.counters.suspensions, 0);
	assert_int_equal(c.n[POOL_EVENT_FAILURE], 1000);
	assert_int_equal(c.n[POOL_EVENT_OFFLINE], 0);
	assert_int_equal(c.last[POOL_EVENT_FAILURE].kind, POOL_FAILURE_PORTS_EXHAUSTED);
	assert_int_equal(c.last[POOL_EVENT_FAILURE].err, EADDRNOTAVAIL); /* stored positive */
	assert_int_equal(letter(pick(pool_set_pool(set, "p"), 1000)), 'a');
	pool_set_free(set);
}

static void test_pool_disabled_rule_counts_but_never_suspends(void **state)
{
	(void)state;
	struct pool_source_spec src = src_spec("a", ANY);
	src.proxy_unhealthy = (struct pool_rule){false, 2, MIN, 0};
	struct pool_entry_spec ent = {0, 1, 0};
	struct pool_spec pool = {"p", POOL_STRATEGY_ROUND_ROBIN, &ent, 1};
	struct pool_set *set = mkset(&src, 1, &pool, 1);
	struct pool_source *a = pool_set_source(set, "a");
	struct pool_source_info info;
	for (uint64_t t = 0; t < 5; t++)
		pool_report_failure(a, POOL_FAILURE_PROXY_UNHEALTHY, ECONNREFUSED, t);
	pool_source_get_info(a, 5, &info);
	assert_int_equal(info.state, POOL_STATE_ELIGIBLE);
	assert_int_equal(info.window_errors[POOL_FAILURE_PROXY_UNHEALTHY], 2);
	assert_int_equal(info.counters.failures[POOL_FAILURE_PROXY_UNHEALTHY], 5);
	pool_set_free(set);
}

static void test_pool_wait_returns_earliest_expiry(void **state)
{
	(void)state;
	struct pool_set *set = mkpool(POOL_STRATEGY_ROUND_ROBIN, "abc", NULL, NULL);
	struct pool *p = pool_set_pool(set, "p");
	struct counter c = {0};
	assert_int_equal(pool_set_watch(set, POOL_EVENTS_ALL, on_event, &c), 0);
	assert_int_equal(pool_source_suspend(pool_set_source(set, "a"), 9000, 0), 0);
	assert_int_equal(pool_source_suspend(pool_set_source(set, "b"), 4000, 0), 0);
	assert_int_equal(pool_source_suspend(pool_set_source(set, "c"), 6000, 0), 0);
	struct pool_pick r = pick_req(p, V4, NULL, NULL, 100);
	assert_int_equal(r.status, POOL_WAIT);
	assert_int_equal(r.until_ms, 4000);
	assert_null(r.source);
	assert_int_equal(letter(pick(p, 4000)), 'b');
	assert_int_equal(c.n[POOL_EVENT_ONLINE], 1);
	assert_false(c.last[POOL_EVENT_ONLINE].resumed);
	pool_set_free(set);
}

static void test_pool_none_without_source_of_family(void **state)
{
	(void)state;
	struct pool_source_spec src[] = {src_spec("v4", V4), src_spec("dflt", ANY)};
	struct pool_entry_spec e4 = {0, 1, 0}, both[] = {{0, 1, 0}, {1, 1, 0}};
	struct pool_spec pools[] = {{"only4", POOL_STRATEGY_ROUND_ROBIN, &e4, 1},
				    {"mixed", POOL_STRATEGY_ROUND_ROBIN, both, 2},
				    {"empty", POOL_STRATEGY_FAILOVER, NULL, 0}};
	struct pool_set *set = mkset(src, 2, pools, 3);
	assert_int_equal(pick_req(pool_set_pool(set, "only4"), V6, NULL, NULL, 0).status,
			 POOL_NONE);
	assert_int_equal(pick_req(pool_set_pool(set, "empty"), V4, NULL, NULL, 0).status,
			 POOL_NONE);
	for (int i = 0; i < 4; i++) {
		struct pool_pick r = pick_req(pool_set_pool(set, "mixed"), V6, NULL, NULL, 0);
		assert_int_equal(r.status, POOL_PICKED);
		assert_string_equal(pool_source_name(r.source), "dflt");
	}
	struct pool_request bad = {ANY, NULL, 0, NULL};
	struct pool_pick out;
	assert_int_equal(pool_pick(pool_set_pool(set, "mixed"), &bad, 0, &out), -EINVAL);
	pool_set_free(set);
}

static void test_pool_tried_sources_excluded(void **state)
{
	(void)state;
	struct pool_set *set = mkpool(POOL_STRATEGY_ROUND_ROBIN, "abc", NULL, NULL);
	struct pool *p = pool_set_pool(set, "p");
	struct pool_tried tried;
	pool_tried_init(&tried);
	assert_int_equal(pool_tried_add(&tried, pool_set_source(set, "a")), 0);
	assert_int_equal(pool_tried_add(&tried, pool_set_source(set, "a")), 0);
	assert_int_equal(tried.n, 1);
	assert_int_equal(pool_tried_add(&tried, pool_set_source(set, "c")), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(letter(pick_req(p, V4, NULL, &tried, 0).source), 'b');
	assert_int_equal(pool_tried_add(&tried, pool_set_source(set, "b")), 0);
	assert_int_equal(pick_req(p, V4, NULL, &tried, 0).status, POOL_NONE);
	/* a suspended candidate among untried ones still means WAIT, not NONE */
	tried.n = 2;
	assert_int_equal(pool_source_suspend(pool_set_source(set, "b"), 50, 0), 0);
	struct pool_pick r = pick_req(p, V4, NULL, &tried, 0);
	assert_int_equal(r.status, POOL_WAIT);
	assert_int_equal(r.until_ms, 50);
	pool_set_free(set);
}

static void test_pool_tried_is_bounded(void **state)
{
	(void)state;
	struct pool_source_spec src[POOL_TRIED_MAX + 1];
	char names[POOL_TRIED_MAX + 1][8];
	for (unsigned i = 0; i <= POOL_TRIED_MAX; i++) {
		snprintf(names[i], sizeof(names[i]), "s%u", i);
		src[i] = src_spec(names[i], V4);
	}
	struct pool_set *set = mkset(src, POOL_TRIED_MAX + 1, NULL, 0);
	struct pool_tried tried;
	pool_tried_init(&tried);
	for (unsigned i = 0; i < POOL_TRIED_MAX; i++)
		assert_int_equal(pool_tried_add(&tried, pool_set_source_at(set, i)), 0);
	assert_int_equal(pool_tried_add(&tried, pool_set_source_at(set, POOL_TRIED_MAX)), -ENOSPC);
	pool_set_free(set);
}

static void test_pool_watchers_fire_once_per_transition(void **state)
{
	(void)state;
	struct pool_source_spec src = src_spec("a", V4);
	src.unplumbed = (struct pool_rule){true, 3, MIN, 1000};
	struct pool_entry_spec ent = {0, 1, 0};
	struct pool_spec pool = {"p", POOL_STRATEGY_ROUND_ROBIN, &ent, 1};
	struct pool_set *set = mkset(&src, 1, &pool, 1);
	struct pool_source *a = pool_set_source(set, "a");
	struct counter all = {0}, offline_only = {0};
	assert_int_equal(pool_set_watch(set, POOL_EVENTS_ALL, on_event, &all), 0);
	assert_int_equal(
	    pool_set_watch(set, POOL_EVENT_MASK(POOL_EVENT_OFFLINE), on_event, &offline_only), 0);
	assert_int_equal(pool_set_watch(set, 0, on_event, &all), -EINVAL);

	for (uint64_t t = 0; t < 3; t++)
		pool_report_failure(a, POOL_FAILURE_UNPLUMBED, EADDRNOTAVAIL, t);
	/* failures while suspended: counted, no second OFFLINE, no extension */
	for (uint64_t t = 3; t < 10; t++)
		pool_report_failure(a, POOL_FAILURE_UNPLUMBED, EADDRNOTAVAIL, t);
	assert_int_equal(pool_source_suspend(a, 500, 10), 0); /* already suspended */
	assert_int_equal(all.n[POOL_EVENT_FAILURE], 10);
	assert_int_equal(all.n[POOL_EVENT_OFFLINE], 1);
	assert_int_equal(offline_only.n[POOL_EVENT_OFFLINE], 1);
	assert_int_equal(offline_only.n[POOL_EVENT_FAILURE], 0);
	assert_int_equal(all.last[POOL_EVENT_OFFLINE].err, EADDRNOTAVAIL);
	assert_ptr_equal(all.last[POOL_EVENT_OFFLINE].source, a);

	assert_int_equal(pool_expire(set, 509), 510);
	assert_int_equal(all.n[POOL_EVENT_ONLINE], 0);
	assert_int_equal(pool_expire(set, 510), UINT64_MAX);
	assert_int_equal(pool_expire(set, 511), UINT64_MAX);
	assert_non_null(pick(pool_set_pool(set, "p"), 512));
	assert_int_equal(all.n[POOL_EVENT_ONLINE], 1);
	assert_int_equal(all.last[POOL_EVENT_ONLINE].reason, POOL_REASON_MANUAL);
	assert_int_equal(pool_report_success(a, 600), 0);
	assert_int_equal(all.n[POOL_EVENT_SUCCESS], 1);

	assert_int_equal(pool_set_unwatch(set, on_event, &all), 0);
	assert_int_equal(pool_set_unwatch(set, on_event, &all), -ENOENT);
	pool_report_success(a, 700);
	assert_int_equal(all.n[POOL_EVENT_SUCCESS], 1);
	pool_set_free(set);
}

static void test_pool_expiry_lazy_and_explicit(void **state)
{
	(void)state;
	struct pool_set *set = mkpool(POOL_STRATEGY_ROUND_ROBIN, "ab", NULL, NULL);
	struct pool *p = pool_set_pool(set, "p");
	struct pool_source *a = pool_set_source(set, "a"), *b = pool_set_source(set, "b");
	struct counter c = {0};
	assert_int_equal(pool_set_watch(set, POOL_EVENT_MASK(POOL_EVENT_ONLINE), on_event, &c), 0);

	assert_int_equal(pool_expire(set, 0), UINT64_MAX);
	assert_int_equal(pool_source_suspend(a, 5000, 0), 0);
	assert_int_equal(pool_source_suspend(b, 3000, 0), 0);
	assert_int_equal(pool_expire(set, 0), 3000);
	assert_int_equal(pool_expire(set, 2999), 3000);
	assert_int_equal(c.n[POOL_EVENT_ONLINE], 0);
	assert_int_equal(pool_expire(set, 3000), 5000); /* explicit: b back */
	assert_int_equal(c.n[POOL_EVENT_ONLINE], 1);
	assert_ptr_equal(c.last[POOL_EVENT_ONLINE].source, b);
	assert_true(suspended(a));
	assert_int_equal(letter(pick(p, 4999)), 'b');
	assert_int_equal(letter(pick(p, 4999)), 'b');
	/* lazy: a pick at 5000 brings a back without pool_expire */
	char seq[3] = {letter(pick(p, 5000)), letter(pick(p, 5000)), 0};
	assert_true(strcmp(seq, "ab") == 0 || strcmp(seq, "ba") == 0);
	assert_int_equal(c.n[POOL_EVENT_ONLINE], 2);
	assert_int_equal(pool_expire(set, 6000), UINT64_MAX);
	assert_int_equal(c.n[POOL_EVENT_ONLINE], 2);
	pool_set_free(set);
}

static void test_pool_manual_suspend_resume(void **state)
{
	(void)state;
	struct pool_set *set = mkpool(POOL_STRATEGY_ROUND_ROBIN, "ab", NULL, NULL);
	struct pool *p = pool_set_pool(set, "p");
	struct pool_source *a = pool_set_source(set, "a");
	struct counter c = {0};
	struct pool_source_info info;
	assert_int_equal(pool_set_watch(set, POOL_EVENTS_ALL, on_event, &c), 0);

	assert_int_equal(pool_source_suspend(a, 0, 0), -EINVAL);
	assert_int_equal(pool_source_resume(a, 0), -EALREADY);
	assert_int_equal(pool_source_suspend(a, UINT64_MAX, 100), 0);
	pool_source_get_info(a, 100, &info);
	assert_int_equal(info.reason, POOL_REASON_MANUAL);
	assert_int_equal(info.suspended_until_ms, UINT64_MAX);
	assert_int_equal(c.n[POOL_EVENT_OFFLINE], 1);
	assert_int_equal(c.last[POOL_EVENT_OFFLINE].reason, POOL_REASON_MANUAL);
	assert_int_equal(pool_expire(set, UINT64_MAX - 1), UINT64_MAX); /* until resumed */
	assert_sequence(p, "bbb");
	assert_int_equal(pool_source_acquire(a, 100), -EAGAIN);
	assert_int_equal(pool_source_resume(a, 200), 0);
	assert_int_equal(c.n[POOL_EVENT_ONLINE], 1);
	assert_true(c.last[POOL_EVENT_ONLINE].resumed);
	assert_int_equal(pool_source_resume(a, 200), -EALREADY);
	assert_int_equal(c.n[POOL_EVENT_ONLINE], 1);
	assert_sequence(p, "abab");
	pool_set_free(set);
}

static void test_pool_max_connections_skips_without_suspending(void **state)
{
	(void)state;
	struct pool_source_spec src[] = {src_spec("a", V4), src_spec("b", V4)};
	src[0].max_connections = 2;
	src[1].max_connections = 1;
	struct pool_entry_spec ent[] = {{0, 1, 0}, {1, 1, 0}};
	struct pool_spec pool = {"p", POOL_STRATEGY_ROUND_ROBIN, ent, 2};
	struct pool_set *set = mkset(src, 2, &pool, 1);
	struct pool *p = pool_set_pool(set, "p");
	struct pool_source *a = pool_set_source(set, "a"), *b = pool_set_source(set, "b");
	struct counter c = {0};
	struct pool_source_info info;
	assert_int_equal(pool_set_watch(set, POOL_EVENTS_ALL, on_event, &c), 0);

	assert_int_equal(pool_source_acquire(a, 0), 0);
	assert_int_equal(pool_source_acquire(a, 0), 0);
	assert_int_equal(pool_source_acquire(a, 0), -EBUSY);
	pool_source_get_info(a, 0, &info);
	assert_int_equal(info.active, 2);
	assert_true(info.at_cap);
	assert_int_equal(info.state, POOL_STATE_ELIGIBLE);
	assert_sequence(p, "bbbb");
	assert_int_equal(pool_source_acquire(b, 0), 0);
	struct pool_pick r = pick_req(p, V4, NULL, NULL, 0);
	assert_int_equal(r.status, POOL_BUSY);
	assert_int_equal(r.until_ms, UINT64_MAX);
	pool_source_release(a);
	assert_int_equal(letter(pick(p, 0)), 'a');
	pool_source_release(a);
	pool_source_release(b);
	assert_int_equal(c.n[POOL_EVENT_OFFLINE] + c.n[POOL_EVENT_ONLINE], 0);
	pool_source_get_info(a, 0, &info);
	assert_int_equal(info.active, 0);
	assert_int_equal(info.counters.suspensions, 0);
	pool_set_free(set);
}

static void test_pool_rate_cap_skips_without_suspending(void **state)
{
	(void)state;
	struct pool_source_spec src[] = {src_spec("a", V4), src_spec("b", V4)};
	src[0].rate_count = 2;
	src[0].rate_period_ms = 1000;
	struct pool_entry_spec ent[] = {{0, 1, 0}, {1, 1, 0}};
	struct pool_spec pools[] = {{"p", POOL_STRATEGY_ROUND_ROBIN, ent, 2},
				    {"solo", POOL_STRATEGY_ROUND_ROBIN, ent, 1}};
	struct pool_set *set = mkset(src, 2, pools, 2);
	struct pool *p = pool_set_pool(set, "p"), *solo = pool_set_pool(set, "solo");
	struct pool_source *a = pool_set_source(set, "a");
	struct counter c = {0};
	assert_int_equal(pool_set_watch(set, POOL_EVENTS_ALL, on_event, &c), 0);

	assert_int_equal(pool_source_acquire(a, 10), 0);
	pool_source_release(a);
	assert_int_equal(pool_source_acquire(a, 10), 0); /* the burst of 2 is used */
	pool_source_release(a);
	assert_int_equal(pool_source_acquire(a, 10), -EBUSY);
	assert_sequence(p, "bbb");
	struct pool_pick r = pick_req(solo, V4, NULL, NULL, 10);
	assert_int_equal(r.status, POOL_BUSY);
	assert_int_equal(r.until_ms, 510); /* one token per 500 ms */
	assert_int_equal(pick_req(solo, V4, NULL, NULL, 509).status, POOL_BUSY);
	assert_ptr_equal(pick_req(solo, V4, NULL, NULL, 510).source, a);
	assert_int_equal(c.n[POOL_EVENT_OFFLINE], 0);

	/* long run: 2 per second after the burst */
	unsigned got = 0;
	for (uint64_t t = 510; t < 10510; t++)
		if (pool_source_acquire(a, t) == 0) {
			got++;
			pool_source_release(a);
		}
	assert_int_equal(got, 20);
	pool_set_free(set);
}

static void test_pool_reload_carries_state(void **state)
{
	(void)state;
	struct pool_source_spec src[] = {src_spec("keep", V4), src_spec("moved", V4),
					 src_spec("gone", V4), src_spec("rated", V4),
					 src_spec("rerated", V4)};
	src[3].rate_count = src[4].rate_count = 1;
	src[3].rate_period_ms = src[4].rate_period_ms = 1000;
	struct pool_entry_spec ent[] = {{0, 1, 0}, {1, 1, 0}, {2, 1, 0}, {3, 1, 0}, {4, 1, 0}};
	struct pool_spec pool = {"p", POOL_STRATEGY_ROUND_ROBIN, ent, 5};
	struct pool_set *old = mkset(src, 5, &pool, 1), *next;
	struct counter c = {0};
	struct pool_source_info info;
	assert_int_equal(pool_set_watch(old, POOL_EVENTS_ALL, on_event, &c), 0);
	struct pool_source *keep = pool_set_source(old, "keep");
	pool_report_failure(keep, POOL_FAILURE_PROXY_UNHEALTHY, ECONNREFUSED, 900);
	pool_report_failure(keep, POOL_FAILURE_UNPLUMBED, EADDRNOTAVAIL, 1000);
	pool_report_failure(pool_set_source(old, "moved"), POOL_FAILURE_UNPLUMBED, 0, 1000);
	assert_non_null(pick(pool_set_pool(old, "p"), 1000));
	assert_int_equal(pool_source_acquire(keep, 1000), -EAGAIN);
	for (size_t i = 3; i < 5; i++) {
		assert_int_equal(pool_source_acquire(pool_set_source_at(old, i), 0), 0);
		pool_source_release(pool_set_source_at(old, i));
	}

	struct pool_source_spec nsrc[] = {src_spec("new", V4), src_spec("moved", V4),
					  src_spec("keep", V4), src_spec("rated", V4),
					  src_spec("rerated", V4)};
	nsrc[1].identity = "192.0.2.99";
	nsrc[2].proxy_unhealthy.count = 2; /* smaller window keeps the newest failure */
	nsrc[3].rate_count = 1;
	nsrc[3].rate_period_ms = 1000;
	nsrc[4].rate_count = 4; /* new rate: no whole token left, one back in 250 ms */
	nsrc[4].rate_period_ms = 1000;
	struct pool_spec npool = {"p", POOL_STRATEGY_ROUND_ROBIN, ent, 5};
	struct pool_set_spec spec = {nsrc, 5, &npool, 1, &test_alloc};
	assert_int_equal(pool_set_new_from(old, &spec, &next, NULL, 0), 0);
	pool_set_free(old);

	assert_null(pool_set_source(next, "gone"));
	keep = pool_set_source(next, "keep");
	assert_int_equal(pool_source_index(keep), 2);
	pool_source_get_info(keep, 2000, &info);
	assert_int_equal(info.state, POOL_STATE_SUSPENDED);
	assert_int_equal(info.reason, POOL_REASON_UNPLUMBED);
	assert_int_equal(info.suspended_until_ms, 1000 + 5 * MIN);
	assert_int_equal(info.counters.failures[POOL_FAILURE_UNPLUMBED], 1);
	assert_int_equal(info.window_errors[POOL_FAILURE_PROXY_UNHEALTHY], 1);
	pool_source_get_info(pool_set_source(next, "moved"), 2000, &info);
	assert_int_equal(info.state, POOL_STATE_ELIGIBLE); /* identity changed: fresh */
	assert_int_equal(info.counters.failures[POOL_FAILURE_UNPLUMBED], 0);
	/* rate tokens came along */
	struct pool_source *rated = pool_set_source(next, "rated");
	struct pool_source *rerated = pool_set_source(next, "rerated");
	assert_int_equal(pool_source_acquire(rerated, 249), -EBUSY);
	assert_int_equal(pool_source_acquire(rerated, 250), 0);
	assert_int_equal(pool_source_acquire(rated, 999), -EBUSY);
	assert_int_equal(pool_source_acquire(rated, 1000), 0);
	pool_source_release(rated);
	pool_source_release(rerated);
	/* watchers came along: expiry in the new set is announced */
	assert_int_equal(pool_expire(next, 1000 + 5 * MIN), UINT64_MAX);
	assert_int_equal(c.n[POOL_EVENT_ONLINE], 1);
	assert_ptr_equal(c.last[POOL_EVENT_ONLINE].source, keep);
	pool_set_free(next);
}

static void test_pool_reload_live_connection_releases_safely(void **state)
{
	(void)state;
	struct pool_source_spec src = src_spec("a", V4);
	src.max_connections = 1;
	struct pool_entry_spec ent = {0, 1, 0};
	struct pool_spec pool = {"p", POOL_STRATEGY_ROUND_ROBIN, &ent, 1};
	struct pool_set_spec spec = {&src, 1, &pool, 1, &test_alloc};
	struct pool_set *old = mkset(&src, 1, &pool, 1), *next, *third;
	struct pool_source_info info;

	struct pool_source *held = pick(pool_set_pool(old, "p"), 0);
	assert_int_equal(pool_source_acquire(held, 0), 0);
	assert_int_equal(pool_set_new_from(old, &spec, &next, NULL, 0), 0);
	pool_set_free(old); /* held keeps old's memory alive */
	assert_int_equal(pool_source_acquire(held, 0), -ESTALE);

	struct pool_source *a = pool_set_source(next, "a");
	pool_source_get_info(a, 0, &info);
	assert_int_equal(info.active, 1);
	assert_true(info.at_cap);
	assert_int_equal(pick_req(pool_set_pool(next, "p"), V4, NULL, NULL, 0).status, POOL_BUSY);

	/* a report on the old generation lands on the new one */
	assert_int_equal(pool_report_failure(held, POOL_FAILURE_UNPLUMBED, EADDRNOTAVAIL, 0), 0);
	assert_true(suspended(a));
	assert_int_equal(pool_source_resume(a, 0), 0);

	/* a second reload that drops the source: reports are dropped, release still works */
	struct pool_spec empty = {"p", POOL_STRATEGY_ROUND_ROBIN, NULL, 0};
	struct pool_set_spec spec3 = {NULL, 0, &empty, 1, &test_alloc};
	assert_int_equal(pool_set_new_from(next, &spec3, &third, NULL, 0), 0);
	pool_source_release(held); /* shared count: the next generation is free again */
	pool_source_get_info(a, 0, &info);
	assert_int_equal(info.active, 0);
	assert_false(info.at_cap);
	assert_int_equal(pool_source_acquire(a, 0), 0);
	pool_set_free(next);
	assert_int_equal(pool_report_success(a, 0), -ESTALE);
	pool_source_release(a); /* frees next's memory */
	pool_set_free(third);
}

static void test_pool_freed_set_with_acquisition_is_stale(void **state)
{
	(void)state;
	struct pool_set *set = mkpool(POOL_STRATEGY_ROUND_ROBIN, "a", NULL, NULL);
	struct pool *p = pool_set_pool(set, "p");
	struct pool_source *a = pick(p, 0);
	struct pool_pick out;
	struct pool_request req = {V4, NULL, 0, NULL};
	assert_int_equal(pool_source_acquire(a, 0), 0);
	pool_set_free(set);
	assert_int_equal(pool_pick(p, &req, 0, &out), -ESTALE);
	assert_int_equal(pool_report_failure(a, POOL_FAILURE_UNPLUMBED, 0, 0), -ESTALE);
	pool_source_release(a);
}

/* 200 sources, weights 1..4: the O(log n) scheduler gives exact shares per round. */
static struct pool_set *mklarge(enum pool_strategy strategy, unsigned n, char names[][8],
				uint32_t max_connections, uint32_t scale)
{
	struct pool_source_spec src[256];
	struct pool_entry_spec ent[256];
	for (unsigned i = 0; i < n; i++) {
		snprintf(names[i], 8, "s%u", i);
		src[i] = src_spec(names[i], i % 5 == 4 ? ANY : V4);
		src[i].max_connections = max_connections;
		ent[i] = (struct pool_entry_spec){i, scale * (1 + i % 4), i < n / 2 ? 1 : 2};
	}
	struct pool_spec pool = {"p", strategy, ent, n};
	return mkset(src, n, &pool, 1);
}

/* Scaling every weight keeps the order of turns; 16,385 also takes the
 * comparisons past the fixed-point keys to the exact products. */
static void large_pool_exact_proportions(uint32_t scale)
{
	char names[200][8];
	unsigned counts[200] = {0};
	struct pool_set *set = mklarge(POOL_STRATEGY_ROUND_ROBIN, 200, names, 0, scale);
	struct pool *p = pool_set_pool(set, "p");
	unsigned weight = 0;
	/* 10% suspended (weights 1 and 3): total weight 460 left */
	for (unsigned i = 0; i < 200; i += 10)
		assert_int_equal(pool_source_suspend(pool_set_source_at(set, i), MIN, 0), 0);
	for (unsigned i = 0; i < 200; i++)
		weight += i % 10 ? 1 + i % 4 : 0;
	assert_int_equal(weight, 460);
	for (unsigned r = 0; r < 7 * weight; r++)
		counts[pool_source_index(pick(p, 0))]++;
	for (unsigned i = 0; i < 200; i++)
		assert_int_equal(counts[i], i % 10 ? 7 * (1 + i % 4) : 0);

	/* the suspended ones return; source 3 (weight 4) is excluded: total 496 */
	memset(counts, 0, sizeof(counts));
	assert_int_equal(pool_expire(set, MIN), UINT64_MAX);
	struct pool_tried tried;
	pool_tried_init(&tried);
	assert_int_equal(pool_tried_add(&tried, pool_set_source_at(set, 3)), 0);
	for (unsigned r = 0; r < 5000; r++) {
		struct pool_pick out = pick_req(p, V4, NULL, &tried, MIN);
		assert_int_equal(out.status, POOL_PICKED);
		assert_int_not_equal(pool_source_index(out.source), 3);
		counts[pool_source_index(out.source)]++;
	}
	/* returning sources rejoin at the current turn: no catch-up burst */
	for (unsigned i = 0; i < 200; i++)
		if (i != 3)
			assert_in_range(counts[i], 5000u * (1 + i % 4) / 496 - 2,
					5000u * (1 + i % 4) / 496 + 2);
	pool_set_free(set);
}

static void test_pool_large_pool_exact_proportions(void **state)
{
	(void)state;
	large_pool_exact_proportions(1);
	large_pool_exact_proportions(16385);
}

/* Past POOL__REBASE_ROUNDS (1,024) rounds the scheduler rebases its virtual
 * time; shares stay exact per round, and a heavy source back from a long
 * suspension takes its share without a catch-up burst. */
static void test_pool_large_pool_rebase_keeps_exact_shares(void **state)
{
	(void)state;
	enum { N = 70, ROUNDS = 2500 };
	static char names[N][8];
	static struct pool_source_spec src[N];
	static struct pool_entry_spec ent[N];
	static unsigned counts[N];
	unsigned weight = 0;
	for (unsigned i = 0; i < N; i++) {
		snprintf(names[i], sizeof(names[i]), "s%u", i);
		src[i] = src_spec(names[i], V4);
		ent[i] = (struct pool_entry_spec){i, i == 0 ? 1000 : 1 + i % 3, 0};
		weight += i ? 1 + i % 3 : 0;
	}
	struct pool_spec pool = {"p", POOL_STRATEGY_ROUND_ROBIN, ent, N};
	struct pool_set *set = mkset(src, N, &pool, 1);
	struct pool *p = pool_set_pool(set, "p");
	struct pool_source *heavy = pool_set_source_at(set, 0);

	assert_int_equal(pool_source_suspend(heavy, UINT64_MAX, 0), 0);
	for (unsigned r = 0; r < ROUNDS; r++) {
		memset(counts, 0, sizeof(counts));
		for (unsigned i = 0; i < weight; i++)
			counts[pool_source_index(pick(p, 0))]++;
		for (unsigned i = 1; i < N; i++)
			assert_int_equal(counts[i], 1 + i % 3);
	}
	assert_int_equal(pool_source_resume(heavy, 0), 0);
	memset(counts, 0, sizeof(counts));
	for (unsigned i = 0; i < weight + 1000; i++)
		counts[pool_source_index(pick(p, 0))]++;
	assert_in_range(counts[0], 998, 1002);
	for (unsigned i = 1; i < N; i++)
		assert_in_range(counts[i], i % 3, 2 + i % 3);
	pool_set_free(set);
}

/* Weights 1,000,000 - i: every fixed-point key collides, so only the exact
 * comparison orders them, heaviest first in every round. */
static void test_pool_large_pool_heavy_weights_exact_order(void **state)
{
	(void)state;
	enum { N = POOL_SWRR_MAX + 1 };
	static char names[N][8];
	static struct pool_source_spec src[N];
	static struct pool_entry_spec ent[N];
	for (unsigned i = 0; i < N; i++) {
		snprintf(names[i], sizeof(names[i]), "s%u", i);
		src[i] = src_spec(names[i], V4);
		ent[i] = (struct pool_entry_spec){i, POOL_WEIGHT_MAX - i, 0};
	}
	struct pool_spec pool = {"p", POOL_STRATEGY_ROUND_ROBIN, ent, N};
	struct pool_set *set = mkset(src, N, &pool, 1);
	for (unsigned r = 0; r < 3; r++)
		for (unsigned i = 0; i < N; i++)
			assert_int_equal(pool_source_index(pick(pool_set_pool(set, "p"), 0)), i);
	pool_set_free(set);
}

static void test_pool_large_pool_family_and_failover(void **state)
{
	(void)state;
	char names[200][8];
	struct pool_set *set = mklarge(POOL_STRATEGY_FAILOVER, 200, names, 0, 1);
	struct pool *p = pool_set_pool(set, "p");
	/* V6 requests only reach the ANY sources (every fifth) of tier 1 */
	for (int r = 0; r < 1000; r++) {
		struct pool_source *s = pick_req(p, V6, NULL, NULL, 0).source;
		assert_int_equal(pool_source_index(s) % 5, 4);
		assert_true(pool_source_index(s) < 100);
	}
	/* suspend all of tier 1: tier 2 takes over; back when tier 1 returns */
	for (unsigned i = 0; i < 100; i++)
		assert_int_equal(pool_source_suspend(pool_set_source_at(set, i), 1000, 0), 0);
	for (int r = 0; r < 1000; r++)
		assert_true(pool_source_index(pick(p, 1)) >= 100);
	for (unsigned i = 100; i < 200; i++)
		assert_int_equal(pool_source_suspend(pool_set_source_at(set, i), 2000, 1), 0);
	struct pool_pick out = pick_req(p, V4, NULL, NULL, 2);
	assert_int_equal(out.status, POOL_WAIT);
	assert_int_equal(out.until_ms, 1000);
	assert_true(pool_source_index(pick(p, 1000)) < 100);
	pool_set_free(set);
}

static void test_pool_large_pool_caps(void **state)
{
	(void)state;
	char names[100][8];
	bool seen[100] = {false};
	struct pool_set *set = mklarge(POOL_STRATEGY_ROUND_ROBIN, 100, names, 1, 1);
	struct pool *p = pool_set_pool(set, "p");
	/* max_connections 1 everywhere: holding each pick caps it, so every
	 * source comes exactly once, then the pool is BUSY (not WAIT) */
	for (int r = 0; r < 100; r++) {
		struct pool_source *s = pick(p, 0);
		assert_non_null(s);
		assert_false(seen[pool_source_index(s)]);
		seen[pool_source_index(s)] = true;
		assert_int_equal(pool_source_acquire(s, 0), 0);
	}
	struct pool_pick out = pick_req(p, V4, NULL, NULL, 0);
	assert_int_equal(out.status, POOL_BUSY);
	assert_int_equal(out.until_ms, UINT64_MAX);
	pool_source_release(pool_set_source_at(set, 7));
	assert_int_equal(pool_source_index(pick(p, 0)), 7);
	for (unsigned i = 0; i < 100; i++)
		if (i != 7)
			pool_source_release(pool_set_source_at(set, i));
	pool_set_free(set);
}

static void test_pool_lookups(void **state)
{
	(void)state;
	struct pool_source_spec src[] = {src_spec("x", V4), src_spec("y", V6)};
	src[1].ref = 42;
	src[1].identity = NULL;
	struct pool_entry_spec ent[] = {{1, 3, 7}};
	struct pool_spec pools[] = {{"one", POOL_STRATEGY_FAILOVER, ent, 1},
				    {"two", POOL_STRATEGY_HASH, NULL, 0}};
	struct pool_set *set = mkset(src, 2, pools, 2);
	uint32_t w, prio;
	assert_int_equal(pool_set_source_count(set), 2);
	assert_int_equal(pool_set_pool_count(set), 2);
	assert_ptr_equal(pool_set_source(set, "y"), pool_set_source_at(set, 1));
	assert_null(pool_set_source(set, "z"));
	assert_null(pool_set_source_at(set, 2));
	assert_int_equal(pool_source_ref(pool_set_source(set, "y")), 42);
	assert_string_equal(pool_source_identity(pool_set_source(set, "y")), "");
	assert_string_equal(pool_name(pool_set_pool(set, "two")), "two");
	assert_ptr_equal(pool_set_pool_at(set, 0), pool_set_pool(set, "one"));
	assert_null(pool_set_pool(set, "three"));
	assert_int_equal(pool_strategy(pool_set_pool(set, "two")), POOL_STRATEGY_HASH);
	assert_ptr_equal(pool_entry_at(pool_set_pool(set, "one"), 0, &w, &prio),
			 pool_set_source(set, "y"));
	assert_int_equal(w, 3);
	assert_int_equal(prio, 7);
	assert_null(pool_entry_at(pool_set_pool(set, "one"), 1, NULL, NULL));
	assert_int_equal(pool_count_eligible(pool_set_pool(set, "one"), V4), 0);
	assert_int_equal(pool_count_eligible(pool_set_pool(set, "one"), V6), 1);
	assert_string_equal(pool_strategy_name(POOL_STRATEGY_ROUND_ROBIN), "round-robin");
	assert_string_equal(pool_failure_name(POOL_FAILURE_PORTS_EXHAUSTED), "ports_exhausted");
	assert_string_equal(pool_reason_name(POOL_REASON_MANUAL), "manual");
	assert_string_equal(pool_event_name(POOL_EVENT_OFFLINE), "offline");
	pool_set_free(set);
}

static int try_new(const struct pool_source_spec *src, size_t n_src, const struct pool_spec *pools,
		   size_t n_pools, char *err, size_t errlen)
{
	struct pool_set_spec spec = {src, n_src, pools, n_pools, &test_alloc};
	struct pool_set *set = NULL;
	int rc = pool_set_new(&spec, &set, err, errlen);
	pool_set_free(set);
	return rc;
}

static void test_pool_invalid_specs_rejected(void **state)
{
	(void)state;
	char err[POOL_ERR_MAX];
	struct pool_source_spec src[] = {src_spec("a", V4), src_spec("b", V4)};
	struct pool_entry_spec ent[] = {{0, 1, 0}, {0, 2, 0}};
	struct pool_spec pools[] = {{"p", POOL_STRATEGY_ROUND_ROBIN, ent, 1},
				    {"p", POOL_STRATEGY_ROUND_ROBIN, ent, 1}};

	assert_int_equal(try_new(src, 2, pools, 2, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "pool \"p\": defined twice"));
	pools[0].n_entries = 2;
	assert_int_equal(try_new(src, 2, pools, 1, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "listed twice"));
	ent[1] = (struct pool_entry_spec){5, 1, 0};
	assert_int_equal(try_new(src, 2, pools, 1, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "entry 1"));
	ent[1] = (struct pool_entry_spec){1, POOL_WEIGHT_MAX + 1, 0};
	assert_int_equal(try_new(src, 2, pools, 1, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "weight"));
	ent[1].weight = 1;
	assert_int_equal(try_new(src, 2, pools, 1, err, sizeof(err)), 0);

	src[1].name = "a";
	assert_int_equal(try_new(src, 2, pools, 1, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "source \"a\": defined twice"));
	src[1] = src_spec("b", 0);
	assert_int_equal(try_new(src, 2, pools, 1, err, sizeof(err)), -EINVAL);
	src[1] = src_spec("b", V4);
	src[1].unplumbed.duration_ms = 0;
	assert_int_equal(try_new(src, 2, pools, 1, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "duration"));
	src[1] = src_spec("b", V4);
	src[1].proxy_unhealthy.period_ms = 0;
	assert_int_equal(try_new(src, 2, pools, 1, err, sizeof(err)), -EINVAL);
	src[1] = src_spec("b", V4);
	src[1].unplumbed.count = POOL_TRIGGER_MAX + 1;
	assert_int_equal(try_new(src, 2, pools, 1, err, sizeof(err)), -EINVAL);
	src[1] = src_spec("b", V4);
	src[1].rate_count = 10;
	assert_int_equal(try_new(src, 2, pools, 1, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "rate"));
	src[1].name = "";
	assert_int_equal(try_new(src, 2, pools, 1, err, sizeof(err)), -EINVAL);
	assert_int_equal(try_new(src, 2, pools, 1, NULL, 0), -EINVAL);
}

/* Fail every allocation in turn: each failure is -ENOMEM and leaks nothing
 * (cmocka checks), the old set is untouched, and eventually it succeeds. */
static void test_pool_allocation_failures_unwind(void **state)
{
	(void)state;
	struct talloc ta = {0};
	const struct pool_alloc failing = {t_calloc, t_free, &ta};
	struct pool_source_spec src[] = {src_spec("a", V4), src_spec("b", V6), src_spec("c", ANY)};
	struct pool_entry_spec ent[] = {{0, 1, 1}, {1, 2, 2}, {2, 3, 2}};
	struct pool_spec pools[] = {{"rr", POOL_STRATEGY_ROUND_ROBIN, ent, 3},
				    {"h", POOL_STRATEGY_HASH, ent, 3},
				    {"f", POOL_STRATEGY_FAILOVER, ent, 3}};
	struct pool_set_spec spec = {src, 3, pools, 3, &failing};
	struct pool_set *old = mkset(src, 3, pools, 3), *set = NULL;
	struct counter c = {0};
	assert_int_equal(pool_set_watch(old, POOL_EVENTS_ALL, on_event, &c), 0);
	pool_source_suspend(pool_set_source(old, "a"), 1000, 0);
	int rc = -ENOMEM;
	unsigned k;
	for (k = 1; rc == -ENOMEM && k < 200; k++) {
		ta.count = 0;
		ta.fail_at = k;
		rc = pool_set_new_from(old, &spec, &set, NULL, 0);
		if (rc == -ENOMEM)
			assert_null(set);
	}
	assert_int_equal(rc, 0);
	assert_true(k > 10);
	assert_true(suspended(pool_set_source(old, "a")));
	assert_true(suspended(pool_set_source(set, "a")));
	ta.fail_at = 0;
	pool_set_free(old);
	pool_set_free(set);
}

static uint64_t rnd_state = 0x9e3779b97f4a7c15u;

static uint32_t rnd(uint32_t n)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return (uint32_t)(rnd_state % n);
}

#define RS 150

struct held {
	struct pool_source *src;
	char name[8], identity[16];
};

/* Check one pick answer against a brute-force scan of the pool. */
static void check_pick(struct pool_set *set, struct pool *p, unsigned fam,
		       const struct pool_tried *tried, struct pool_pick out)
{
	bool any = false, busy = false, avail[RS] = {false};
	uint64_t wait = UINT64_MAX;
	uint32_t best_prio = UINT32_MAX;
	for (size_t i = 0; i < pool_entry_count(p); i++) {
		uint32_t w, prio;
		struct pool_source *s = pool_entry_at(p, i, &w, &prio);
		bool is_tried = false;
		for (uint32_t t = 0; t < tried->n; t++)
			is_tried |= tried->idx[t] == pool_source_index(s);
		if (!w || !(pool_source_families(s) & fam) || is_tried)
			continue;
		struct pool_source_info info;
		pool_source_get_info(s, 0, &info);
		any = true;
		if (info.state == POOL_STATE_SUSPENDED) {
			wait = info.suspended_until_ms < wait ? info.suspended_until_ms : wait;
		} else if (info.at_cap) {
			busy = true;
		} else {
			avail[pool_source_index(s)] = true;
			best_prio = prio < best_prio ? prio : best_prio;
		}
	}
	if (best_prio != UINT32_MAX) {
		assert_int_equal(out.status, POOL_PICKED);
		assert_true(avail[pool_source_index(out.source)]);
		assert_ptr_equal(pool_set_source_at(set, pool_source_index(out.source)),
				 out.source);
		if (pool_strategy(p) == POOL_STRATEGY_FAILOVER) {
			uint32_t prio = 0;
			for (size_t i = 0; i < pool_entry_count(p); i++)
				if (pool_entry_at(p, i, NULL, &prio) == out.source)
					break;
			assert_int_equal(prio, best_prio);
		}
	} else if (!any) {
		assert_int_equal(out.status, POOL_NONE);
	} else if (busy) {
		assert_int_equal(out.status, POOL_BUSY);
		assert_true(out.until_ms <= wait);
	} else {
		assert_int_equal(out.status, POOL_WAIT);
		assert_int_equal(out.until_ms, wait);
	}
}

static void test_pool_random_operations_match_model(void **state)
{
	(void)state;
	static char names[RS][8], identities[RS][16];
	static struct pool_source_spec src[RS];
	static struct pool_entry_spec all[RS], heavy[RS], small[10], fo[RS];
	/* families V4, V6, V6, any; caps max 2, max 2, rate 3/s, max 2 */
	static const unsigned tiny_ids[] = {0, 4, 7, 8};
	struct pool_entry_spec tiny[] = {{0, 1, 0}, {4, 2, 0}, {7, 1, 0}, {8, 1, 0}};
	static struct held held[4096];
	size_t n_held = 0;
	unsigned reloads = 0, picked = 0, outcomes[4] = {0};

	for (unsigned i = 0; i < RS; i++) {
		snprintf(names[i], sizeof(names[i]), "s%u", i);
		snprintf(identities[i], sizeof(identities[i]), "id%u-0", i);
		src[i] = src_spec(names[i], 1 + i % 3);
		src[i].identity = identities[i];
		src[i].unplumbed.duration_ms = 100 + 37 * (i % 50);
		src[i].proxy_unhealthy = (struct pool_rule){true, 2, 500, 300};
		src[i].max_connections = i % 4 == 0 ? 2 : 0;
		if (i % 7 == 0) {
			src[i].rate_count = 3;
			src[i].rate_period_ms = 1000;
		}
		all[i] = (struct pool_entry_spec){i, i % 11 == 0 ? 0 : 1 + i % 4, 0};
		/* a few weights past 2^14 take the exact comparison path */
		heavy[i] = (struct pool_entry_spec){i, all[i].weight * (i % 13 ? 1 : 20000), 0};
		fo[i] = (struct pool_entry_spec){i, 1 + i % 3, i < 75 ? 1 : 2};
		if (i < 10)
			small[i] = (struct pool_entry_spec){i, 1 + i % 3, 0};
	}
	struct pool_spec pools[] = {{"rr", POOL_STRATEGY_ROUND_ROBIN, heavy, RS},
				    {"small", POOL_STRATEGY_ROUND_ROBIN, small, 10},
				    {"fo", POOL_STRATEGY_FAILOVER, fo, RS},
				    {"h", POOL_STRATEGY_HASH, all, RS},
				    {"tiny", POOL_STRATEGY_ROUND_ROBIN, tiny, 4}};
	struct pool_set_spec spec = {src, RS, pools, 5, &test_alloc};
	struct pool_set *set = mkset(src, RS, pools, 5);
	uint64_t now = 1;

	for (unsigned iter = 0; iter < 20000; iter++) {
		now += rnd(20);
		unsigned op = rnd(100);
		/* half of the outcomes hit the tiny pool, so that it runs dry */
		struct pool_source *s =
		    pool_set_source_at(set, rnd(2) ? tiny_ids[rnd(4)] : rnd(RS));
		if (op < 45) {
			struct pool *p = pool_set_pool_at(set, rnd(5));
			unsigned fam = rnd(2) ? V4 : V6;
			struct pool_tried tried;
			char key[16];
			pool_tried_init(&tried);
			for (unsigned t = rnd(4); t > 0; t--)
				pool_tried_add(&tried,
					       pool_entry_at(p, rnd((uint32_t)pool_entry_count(p)),
							     NULL, NULL));
			snprintf(key, sizeof(key), "k%u", rnd(1000));
			pool_expire(set, now);
			struct pool_pick out = pick_req(p, fam, key, &tried, now);
			check_pick(set, p, fam, &tried, out);
			outcomes[out.status]++;
			if (out.status == POOL_PICKED && n_held < 4096 && rnd(10) < 7) {
				assert_int_equal(pool_source_acquire(out.source, now), 0);
				held[n_held].src = out.source;
				strcpy(held[n_held].name, pool_source_name(out.source));
				strcpy(held[n_held].identity, pool_source_identity(out.source));
				n_held++;
				picked++;
			}
		} else if (op < 70 && n_held) {
			size_t h = rnd((uint32_t)n_held);
			if (rnd(3) == 0)
				pool_report_failure(held[h].src, (enum pool_failure)rnd(3),
						    EADDRNOTAVAIL, now);
			pool_source_release(held[h].src);
			held[h] = held[--n_held];
		} else if (op < 85) {
			pool_report_failure(s, (enum pool_failure)rnd(3), ECONNREFUSED, now);
		} else if (op < 90) {
			pool_report_success(s, now);
		} else if (op < 94) {
			pool_source_suspend(s, 1 + rnd(3000), now);
		} else if (op < 98) {
			pool_source_resume(s, now);
		} else if (op < 99 && rnd(2)) {
			struct pool_set *next;
			unsigned changed = rnd(RS);
			snprintf(identities[changed], sizeof(identities[changed]), "id%u-%u",
				 changed, ++reloads);
			assert_int_equal(pool_set_new_from(set, &spec, &next, NULL, 0), 0);
			pool_set_free(set);
			set = next;
		} else {
			assert_true(pool_expire(set, now) > now);
		}
		/* active connections as seen by the current generation */
		if (iter % 97 == 0) {
			for (unsigned i = 0; i < RS; i++) {
				struct pool_source_info info;
				uint32_t expect = 0;
				pool_source_get_info(pool_set_source_at(set, i), now, &info);
				for (size_t h = 0; h < n_held; h++)
					expect += strcmp(held[h].name, info.name) == 0 &&
						  strcmp(held[h].identity, info.identity) == 0;
				assert_int_equal(info.active, expect);
			}
		}
	}
	print_message("picked %u wait %u busy %u none %u reloads %u\n", outcomes[POOL_PICKED],
		      outcomes[POOL_WAIT], outcomes[POOL_BUSY], outcomes[POOL_NONE], reloads);
	for (int st = 0; st < 4; st++)
		assert_true(outcomes[st] > 100); /* every answer was exercised */
	assert_true(reloads > 50);
	assert_true(picked > 3000);
	while (n_held)
		pool_source_release(held[--n_held].src);
	pool_set_free(set);
}

static void test_pool_absent_suspends_at_once_whatever_the_trigger(void **state)
{
	(void)state;
	struct pool_source_spec src[2] = {src_spec("a", V4), src_spec("b", V4)};
	src[0].unplumbed = (struct pool_rule){true, 3, MIN, 2 * MIN};
	src[1].unplumbed = (struct pool_rule){false, 0, 0, 0};
	struct pool_entry_spec ent[2] = {{0, 1, 0}, {1, 1, 0}};
	struct pool_spec pool = {"p", POOL_STRATEGY_ROUND_ROBIN, ent, 2};
	struct pool_set *set = mkset(src, 2, &pool, 1);
	struct pool_source *a = pool_set_source(set, "a"), *b = pool_set_source(set, "b");
	struct counter c = {0};
	struct pool_source_info info;

	assert_int_equal(pool_set_watch(set, POOL_EVENTS_ALL, on_event, &c), 0);
	/* one request failure sits in the 3/1m window; the watch does not wait */
	assert_int_equal(pool_report_failure(a, POOL_FAILURE_UNPLUMBED, EADDRNOTAVAIL, 10), 0);
	assert_false(suspended(a));
	assert_int_equal(pool_report_absent(a, -EADDRNOTAVAIL, 100), 0);
	pool_source_get_info(a, 100, &info);
	assert_int_equal(info.state, POOL_STATE_SUSPENDED);
	assert_int_equal(info.reason, POOL_REASON_UNPLUMBED);
	assert_int_equal(info.suspended_until_ms, 100 + 2 * MIN); /* the source's duration */
	assert_int_equal(info.window_errors[POOL_FAILURE_UNPLUMBED], 0);
	assert_int_equal(info.counters.failures[POOL_FAILURE_UNPLUMBED], 2);
	assert_int_equal(c.n[POOL_EVENT_FAILURE], 2);
	assert_int_equal(c.n[POOL_EVENT_OFFLINE], 1);
	assert_int_equal(c.last[POOL_EVENT_OFFLINE].reason, POOL_REASON_UNPLUMBED);
	assert_int_equal(c.last[POOL_EVENT_OFFLINE].err, EADDRNOTAVAIL);
	assert_int_equal(c.last[POOL_EVENT_OFFLINE].trigger_count, 1);
	assert_int_equal(c.last[POOL_EVENT_OFFLINE].duration_ms, 2 * MIN);
	assert_true(info.health.has_failure);
	assert_int_equal(info.health.last_failure_kind, POOL_FAILURE_UNPLUMBED);
	assert_int_equal(info.health.last_failure_ms, 100);

	/* already suspended: counted, neither extended nor a second OFFLINE */
	assert_int_equal(pool_report_absent(a, EADDRNOTAVAIL, 5000), 0);
	pool_source_get_info(a, 5000, &info);
	assert_int_equal(info.suspended_until_ms, 100 + 2 * MIN);
	assert_int_equal(info.counters.failures[POOL_FAILURE_UNPLUMBED], 3);
	assert_int_equal(c.n[POOL_EVENT_OFFLINE], 1);
	/* a manual suspension keeps its reason */
	assert_int_equal(pool_source_suspend(b, MIN, 0), 0);
	assert_int_equal(pool_report_absent(b, EADDRNOTAVAIL, 1), 0);
	pool_source_get_info(b, 1, &info);
	assert_int_equal(info.reason, POOL_REASON_MANUAL);
	/* a disabled rule only counts */
	assert_int_equal(pool_source_resume(b, 2), 0);
	assert_int_equal(pool_report_absent(b, EADDRNOTAVAIL, 3), 0);
	assert_false(suspended(b));
	pool_source_get_info(b, 3, &info);
	assert_int_equal(info.counters.failures[POOL_FAILURE_UNPLUMBED], 2);
	assert_int_equal(pool_report_absent(NULL, 0, 0), -EINVAL);
	pool_set_free(set);
}

static void test_pool_check_ok_resumes_only_proxy_unhealthy(void **state)
{
	(void)state;
	struct pool_set *set = mkpool(POOL_STRATEGY_ROUND_ROBIN, "ab", NULL, NULL);
	struct pool_source *a = pool_set_source(set, "a"), *b = pool_set_source(set, "b");
	struct counter c = {0};
	struct pool_source_info info;

	assert_int_equal(pool_set_watch(set, POOL_EVENTS_ALL, on_event, &c), 0);
	/* proxy_unhealthy is 3/5m in src_spec */
	for (uint64_t t = 1; t <= 2; t++)
		pool_report_failure(a, POOL_FAILURE_PROXY_UNHEALTHY, ECONNREFUSED, t);
	assert_int_equal(pool_report_check_ok(a, false, 3), 0);
	pool_source_get_info(a, 3, &info);
	assert_int_equal(info.window_errors[POOL_FAILURE_PROXY_UNHEALTHY], 0); /* cleared */
	assert_int_equal(info.counters.successes, 0); /* not a connection */
	assert_true(info.health.has_success);
	assert_int_equal(info.health.last_success_ms, 3);
	assert_int_equal(c.n[POOL_EVENT_SUCCESS], 0);
	for (uint64_t t = 4; t <= 6; t++)
		pool_report_failure(a, POOL_FAILURE_PROXY_UNHEALTHY, ECONNREFUSED, t);
	assert_true(suspended(a));
	/* without resume_when_healthy the suspension runs its course */
	assert_int_equal(pool_report_check_ok(a, false, 7), 0);
	assert_true(suspended(a));
	assert_int_equal(pool_report_check_ok(a, true, 8), 1);
	assert_false(suspended(a));
	assert_int_equal(c.n[POOL_EVENT_ONLINE], 1);
	assert_true(c.last[POOL_EVENT_ONLINE].resumed);
	assert_int_equal(c.last[POOL_EVENT_ONLINE].reason, POOL_REASON_PROXY_UNHEALTHY);
	/* other reasons are not the health check's to end */
	assert_int_equal(pool_source_suspend(b, MIN, 9), 0);
	assert_int_equal(pool_report_check_ok(b, true, 10), 0);
	assert_true(suspended(b));
	assert_int_equal(pool_report_absent(a, EADDRNOTAVAIL, 11), 0);
	assert_int_equal(pool_report_check_ok(a, true, 12), 0);
	assert_true(suspended(a));
	assert_int_equal(pool_report_check_ok(NULL, true, 0), -EINVAL);
	pool_set_free(set);
}

static void test_pool_health_is_recorded_and_carried_over(void **state)
{
	(void)state;
	struct pool_set *old = mkpool(POOL_STRATEGY_ROUND_ROBIN, "ab", NULL, NULL), *next = NULL;
	struct pool_source *a = pool_set_source(old, "a");
	struct pool_source_info info;

	pool_source_get_info(a, 0, &info);
	assert_false(info.health.has_failure);
	assert_false(info.health.has_success);
	assert_int_equal(pool_report_success(a, 50), 0);
	assert_int_equal(pool_report_failure(a, POOL_FAILURE_PORTS_EXHAUSTED, -EADDRINUSE, 70), 0);
	pool_source_get_info(a, 70, &info);
	assert_int_equal(info.health.last_success_ms, 50);
	assert_int_equal(info.health.last_failure_ms, 70);
	assert_int_equal(info.health.last_failure_kind, POOL_FAILURE_PORTS_EXHAUSTED);
	assert_int_equal(info.health.last_failure_err, EADDRINUSE);

	struct pool_source_spec src[2] = {src_spec("a", V4), src_spec("b", V4)};
	struct pool_entry_spec ent[2] = {{0, 1, 0}, {1, 1, 0}};
	struct pool_spec pool = {"p", POOL_STRATEGY_ROUND_ROBIN, ent, 2};
	struct pool_set_spec spec = {src, 2, &pool, 1, &test_alloc};
	assert_int_equal(pool_set_new_from(old, &spec, &next, NULL, 0), 0);
	pool_source_get_info(pool_set_source(next, "a"), 80, &info);
	assert_true(info.health.has_success && info.health.has_failure);
	assert_int_equal(info.health.last_success_ms, 50);
	assert_int_equal(info.health.last_failure_ms, 70);
	pool_source_get_info(pool_set_source(next, "b"), 80, &info);
	assert_false(info.health.has_failure);
	pool_set_free(old);
	pool_set_free(next);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pool_swrr_sequences),
	    cmocka_unit_test(test_pool_weight_zero_never_picked),
	    cmocka_unit_test(test_pool_swrr_exact_proportions),
	    cmocka_unit_test(test_pool_swrr_skips_suspended_and_rotates),
	    cmocka_unit_test(test_pool_hash_suspend_moves_only_its_keys),
	    cmocka_unit_test(test_pool_hash_removal_on_reload_moves_only_its_keys),
	    cmocka_unit_test(test_pool_hash_independent_of_source_order),
	    cmocka_unit_test(test_pool_hash_proportional_to_weight),
	    cmocka_unit_test(test_pool_hash_respects_family_and_tried),
	    cmocka_unit_test(test_pool_failover_falls_through_and_returns),
	    cmocka_unit_test(test_pool_failover_wait_covers_all_tiers),
	    cmocka_unit_test(test_pool_window_edges_two),
	    cmocka_unit_test(test_pool_window_edges_three),
	    cmocka_unit_test(test_pool_immediate_versus_threshold),
	    cmocka_unit_test(test_pool_success_clears_window),
	    cmocka_unit_test(test_pool_report_after_expiry_suspends_again),
	    cmocka_unit_test(test_pool_ports_exhausted_never_suspends),
	    cmocka_unit_test(test_pool_disabled_rule_counts_but_never_suspends),
	    cmocka_unit_test(test_pool_wait_returns_earliest_expiry),
	    cmocka_unit_test(test_pool_none_without_source_of_family),
	    cmocka_unit_test(test_pool_tried_sources_excluded),
	    cmocka_unit_test(test_pool_tried_is_bounded),
	    cmocka_unit_test(test_pool_watchers_fire_once_per_transition),
	    cmocka_unit_test(test_pool_expiry_lazy_and_explicit),
	    cmocka_unit_test(test_pool_manual_suspend_resume),
	    cmocka_unit_test(test_pool_max_connections_skips_without_suspending),
	    cmocka_unit_test(test_pool_rate_cap_skips_without_suspending),
	    cmocka_unit_test(test_pool_reload_carries_state),
	    cmocka_unit_test(test_pool_reload_live_connection_releases_safely),
	    cmocka_unit_test(test_pool_freed_set_with_acquisition_is_stale),
	    cmocka_unit_test(test_pool_large_pool_exact_proportions),
	    cmocka_unit_test(test_pool_large_pool_rebase_keeps_exact_shares),
	    cmocka_unit_test(test_pool_large_pool_heavy_weights_exact_order),
	    cmocka_unit_test(test_pool_large_pool_family_and_failover),
	    cmocka_unit_test(test_pool_large_pool_caps),
	    cmocka_unit_test(test_pool_lookups),
	    cmocka_unit_test(test_pool_invalid_specs_rejected),
	    cmocka_unit_test(test_pool_allocation_failures_unwind),
	    cmocka_unit_test(test_pool_random_operations_match_model),
	    cmocka_unit_test(test_pool_absent_suspends_at_once_whatever_the_trigger),
	    cmocka_unit_test(test_pool_check_ok_resumes_only_proxy_unhealthy),
	    cmocka_unit_test(test_pool_health_is_recorded_and_carried_over),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
