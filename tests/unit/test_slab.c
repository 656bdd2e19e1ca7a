/* Unit tests for the handshake-state slab (proxy/slab.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "slab.h"

/* Every object is zeroed, 16-byte aligned, and distinct from the others. */
static void test_slab_alloc_zeroed_aligned_distinct(void **state)
{
	struct slab *s;
	enum { N = 100 };
	uint8_t *p[N];

	(void)state;
	assert_int_equal(slab_new(3000, 0, &s), 0);
	for (int i = 0; i < N; i++) {
		p[i] = slab_alloc(s);
		assert_non_null(p[i]);
		assert_int_equal((uintptr_t)p[i] % 16, 0);
		for (size_t k = 0; k < 3000; k++)
			assert_int_equal(p[i][k], 0);
		memset(p[i], 0xa5, 3000);
	}
	for (int i = 0; i < N; i++)
		for (int j = i + 1; j < N; j++)
			assert_true(p[i] + 3000 <= p[j] || p[j] + 3000 <= p[i]);
	assert_int_equal(slab_in_use(s), N);
	/* A freed slot comes back zeroed. */
	slab_free(s, p[7]);
	p[7] = slab_alloc(s);
	for (size_t k = 0; k < 3000; k++)
		assert_int_equal(p[7][k], 0);
	for (int i = 0; i < N; i++)
		slab_free(s, p[i]);
	assert_int_equal(slab_in_use(s), 0);
	slab_destroy(s);
}

/* After a burst every chunk goes back, except keep_empty of them. */
static void test_slab_burst_gives_chunks_back(void **state)
{
	struct slab *s;
	enum { N = 1000 };
	void **p = calloc(N, sizeof *p);

	(void)state;
	assert_non_null(p);
	assert_int_equal(slab_new(4000, 2, &s), 0);
	for (int i = 0; i < N; i++)
		assert_non_null(p[i] = slab_alloc(s));
	assert_true(slab_chunks(s) >= N / 16);
	/* Free in an order that empties chunks late: every other one first. */
	for (int i = 0; i < N; i += 2)
		slab_free(s, p[i]);
	assert_true(slab_chunks(s) >= N / 32);
	for (int i = 1; i < N; i += 2)
		slab_free(s, p[i]);
	assert_int_equal(slab_in_use(s), 0);
	assert_int_equal(slab_chunks(s), 2);
	/* The kept chunks serve the next objects without a new mapping. */
	for (int i = 0; i < 16; i++)
		assert_non_null(p[i] = slab_alloc(s));
	assert_int_equal(slab_chunks(s), 2);
	for (int i = 0; i < 16; i++)
		slab_free(s, p[i]);
	slab_destroy(s);
	free(p);
}

/* keep_empty = 0: the last free of a chunk unmaps it. */
static void test_slab_keep_none(void **state)
{
	struct slab *s;
	void *a;

	(void)state;
	assert_int_equal(slab_new(64, 0, &s), 0);
	a = slab_alloc(s);
	assert_int_equal(slab_chunks(s), 1);
	slab_free(s, a);
	assert_int_equal(slab_chunks(s), 0);
	slab_free(s, NULL);
	slab_destroy(s);
	slab_destroy(NULL);
}

static void test_slab_rejects_bad_sizes(void **state)
{
	struct slab *s = NULL;

	(void)state;
	assert_int_equal(slab_new(0, 0, &s), -EINVAL);
	assert_int_equal(slab_new(64 * 1024 + 1, 0, &s), -EINVAL);
	assert_int_equal(slab_new(64, 0, NULL), -EINVAL);
	assert_null(s);
}

/* A model-based random run: interleaved allocs and frees keep every live
 * object's bytes intact. */
static void test_slab_random_run(void **state)
{
	struct slab *s;
	enum { N = 600 };
	uint8_t *p[N] = {0};
	unsigned seed = 12345;

	(void)state;
	assert_int_equal(slab_new(1500, 1, &s), 0);
	for (int step = 0; step < 20000; step++) {
		int i = (int)(rand_r(&seed) % N);
		if (p[i]) {
			for (size_t k = 0; k < 1500; k += 97)
				assert_int_equal(p[i][k], (uint8_t)i);
			slab_free(s, p[i]);
			p[i] = NULL;
		} else {
			assert_non_null(p[i] = slab_alloc(s));
			memset(p[i], i, 1500);
		}
	}
	for (int i = 0; i < N; i++)
		slab_free(s, p[i]);
	assert_int_equal(slab_in_use(s), 0);
	assert_true(slab_chunks(s) <= 1);
	slab_destroy(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_slab_alloc_zeroed_aligned_distinct),
	    cmocka_unit_test(test_slab_burst_gives_chunks_back),
	    cmocka_unit_test(test_slab_keep_none),
	    cmocka_unit_test(test_slab_rejects_bad_sizes),
	    cmocka_unit_test(test_slab_random_run),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
