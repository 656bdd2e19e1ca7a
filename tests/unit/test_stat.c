/* Unit tests for proxy/stat.h: a writer thread and a reader thread on the
 * same counters, as a worker and the admin endpoint (TSan in CI). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "stat.h"

#define ROUNDS 200000

struct counters {
	uint64_t total, active;
	double sum;
	atomic_bool stop;
};

static void *writer(void *arg)
{
	struct counters *c = arg;

	for (int i = 0; i < ROUNDS; i++) {
		stat_add(&c->active, 1);
		stat_add(&c->total, 1);
		stat_add_double(&c->sum, 0.5);
		stat_sub(&c->active, 1);
	}
	atomic_store(&c->stop, true);
	return NULL;
}

static void test_stat_reader_sees_counters_only_grow(void **state)
{
	struct counters c = {0};
	pthread_t t;
	uint64_t last = 0;
	double last_sum = 0;

	(void)state;
	assert_int_equal(pthread_create(&t, NULL, writer, &c), 0);
	while (!atomic_load(&c.stop)) {
		uint64_t now = stat_get(&c.total), active = stat_get(&c.active);
		double sum = stat_get_double(&c.sum);
		assert_true(now >= last);
		assert_true(sum >= last_sum);
		assert_true(active <= 1);
		last = now;
		last_sum = sum;
	}
	pthread_join(t, NULL);
	assert_int_equal(stat_get(&c.total), ROUNDS);
	assert_int_equal(stat_get(&c.active), 0);
	assert_true(stat_get_double(&c.sum) == ROUNDS * 0.5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_stat_reader_sees_counters_only_grow),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
