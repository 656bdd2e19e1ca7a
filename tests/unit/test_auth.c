/* Unit tests for password verification (proxy/auth.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <crypt.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"

/* A fresh crypt(3) hash of pw with the method of prefix ("$y$", "$6$"). */
static void make_hash(const char *prefix, const char *pw, char *out, size_t outlen)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd = test_calloc(1, sizeof(*cd));
	const char *h;

	assert_non_null(crypt_gensalt_rn(prefix, 0, NULL, 0, setting, sizeof(setting)));
	assert_memory_equal(setting, prefix, strlen(prefix));
	h = crypt_rn(pw, setting, cd, (int)sizeof(*cd));
	assert_non_null(h);
	assert_true(strlen(h) < outlen);
	strcpy(out, h);
	test_free(cd);
}

static enum auth_result check(struct auth_store *s, const char *user, const char *pw)
{
	return auth_check_cached(s, user, pw, strlen(pw));
}

static enum auth_result slow(struct auth_store *s, const char *user, const char *pw)
{
	return auth_verify_slow(s, user, pw, strlen(pw));
}

/* The whole loop-thread/worker sequence for one hashed user. */
static void hashed_user_flow(const char *prefix)
{
	struct auth_store *s = auth_store_new();
	char hash[CRYPT_OUTPUT_SIZE];

	assert_non_null(s);
	make_hash(prefix, "correct horse", hash, sizeof(hash));
	assert_int_equal(auth_store_add(s, "mta1", hash, NULL), 0);

	/* Not cached yet: the fast path may not decide. */
	assert_int_equal(check(s, "mta1", "correct horse"), AUTH_NEED_SLOW);
	assert_int_equal(check(s, "mta1", "wrong"), AUTH_NEED_SLOW);

	assert_int_equal(slow(s, "mta1", "wrong"), AUTH_FAIL);
	assert_int_equal(slow(s, "mta1", "correct hors"), AUTH_FAIL);
	assert_int_equal(slow(s, "mta1", "correct horse "), AUTH_FAIL);
	assert_int_equal(slow(s, "mta1", ""), AUTH_FAIL);
	assert_int_equal(slow(s, "mta1", "correct horse"), AUTH_OK);
	/* verify_slow alone does not fill the cache. */
	assert_int_equal(check(s, "mta1", "correct horse"), AUTH_NEED_SLOW);

	auth_cache_put(s, "mta1", "correct horse", strlen("correct horse"));
	assert_int_equal(check(s, "mta1", "correct horse"), AUTH_OK);
	/* Failures are never cached, and a wrong password is no hit. */
	assert_int_equal(check(s, "mta1", "wrong"), AUTH_NEED_SLOW);
	assert_int_equal(check(s, "mta1", "correct horsE"), AUTH_NEED_SLOW);

	/* A NUL would cut the phrase short for crypt(3): refused, after a
	 * crypt of its own like any other failure. */
	assert_int_equal(auth_verify_slow(s, "mta1", "correct horse\0x", 15), AUTH_FAIL);
	assert_int_equal(auth_check_cached(s, "mta1", "correct horse\0x", 15), AUTH_NEED_SLOW);

	auth_store_free(s);
}

static void test_auth_yescrypt(void **state)
{
	hashed_user_flow("$y$");
}

static void test_auth_sha512(void **state)
{
	hashed_user_flow("$6$");
}

static void test_auth_plain(void **state)
{
	struct auth_store *s = auth_store_new();

	assert_non_null(s);
	assert_int_equal(auth_store_add(s, "kumo", NULL, "s3cret"), 0);
	assert_int_equal(auth_store_add(s, "nopw", NULL, ""), 0);
	assert_int_equal(auth_store_count(s), 2);

	assert_int_equal(check(s, "kumo", "s3cret"), AUTH_OK);
	assert_int_equal(check(s, "kumo", "s3cre"), AUTH_FAIL);
	assert_int_equal(check(s, "kumo", "s3cret!"), AUTH_FAIL);
	assert_int_equal(check(s, "kumo", "S3cret"), AUTH_FAIL);
	assert_int_equal(check(s, "kumo", ""), AUTH_FAIL);
	assert_int_equal(auth_check_cached(s, "kumo", "s3cret\0", 7), AUTH_FAIL);
	assert_int_equal(slow(s, "kumo", "s3cret"), AUTH_OK);
	assert_int_equal(slow(s, "kumo", "nope"), AUTH_FAIL);

	/* Empty password (PLEN 0). */
	assert_int_equal(auth_check_cached(s, "nopw", NULL, 0), AUTH_OK);
	assert_int_equal(check(s, "nopw", "x"), AUTH_FAIL);

	/* Caching a plain user changes nothing. */
	auth_cache_put(s, "kumo", "other", 5);
	assert_int_equal(check(s, "kumo", "other"), AUTH_FAIL);
	auth_store_free(s);
}

static void test_auth_empty_password_hashed(void **state)
{
	struct auth_store *s = auth_store_new();
	char hash[CRYPT_OUTPUT_SIZE];

	make_hash("$y$", "", hash, sizeof(hash));
	assert_int_equal(auth_store_add(s, "empty", hash, NULL), 0);
	assert_int_equal(auth_check_cached(s, "empty", "", 0), AUTH_NEED_SLOW);
	assert_int_equal(auth_verify_slow(s, "empty", NULL, 0), AUTH_OK);
	assert_int_equal(slow(s, "empty", "x"), AUTH_FAIL);
	auth_cache_put(s, "empty", "", 0);
	assert_int_equal(auth_check_cached(s, "empty", "", 0), AUTH_OK);
	assert_int_equal(check(s, "empty", "x"), AUTH_NEED_SLOW);
	auth_store_free(s);
}

static void test_auth_unknown_user(void **state)
{
	struct auth_store *s = auth_store_new();
	char hash[CRYPT_OUTPUT_SIZE];
	char longname[300];

	make_hash("$6$", "pw", hash, sizeof(hash));
	assert_int_equal(auth_store_add(s, "known", hash, NULL), 0);
	/* With a hashed user in the store an unknown one goes the slow way
	 * too, and fails there. */
	assert_int_equal(check(s, "unknown", "pw"), AUTH_NEED_SLOW);
	assert_int_equal(slow(s, "unknown", "pw"), AUTH_FAIL);
	assert_int_equal(check(s, "", "pw"), AUTH_NEED_SLOW);
	assert_int_equal(slow(s, "", "pw"), AUTH_FAIL);
	assert_int_equal(check(s, "Known", "pw"), AUTH_NEED_SLOW);
	assert_int_equal(slow(s, "Known", "pw"), AUTH_FAIL);
	memset(longname, 'k', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(check(s, longname, "pw"), AUTH_NEED_SLOW);
	assert_int_equal(slow(s, longname, "pw"), AUTH_FAIL);
	/* Caching for an unknown user is ignored, not a way in. */
	auth_cache_put(s, "unknown", "pw", 2);
	assert_int_equal(check(s, "unknown", "pw"), AUTH_NEED_SLOW);
	assert_int_equal(slow(s, "unknown", "pw"), AUTH_FAIL);
	assert_int_equal(check(s, NULL, "pw"), AUTH_NEED_SLOW);
	assert_int_equal(slow(s, NULL, "pw"), AUTH_FAIL);
	/* The right password of the known user, asked for another name. */
	assert_int_equal(slow(s, "unknown", "pw"), AUTH_FAIL);
	assert_int_equal(slow(s, "known", "pw"), AUTH_OK);
	auth_store_free(s);

	/* Plain users only: nothing is slow, so failing fast leaks nothing. */
	s = auth_store_new();
	assert_int_equal(auth_store_add(s, "p", NULL, "pw"), 0);
	assert_int_equal(check(s, "unknown", "pw"), AUTH_FAIL);
	assert_int_equal(check(s, "p", "wrong"), AUTH_FAIL);
	assert_int_equal(slow(s, "unknown", "pw"), AUTH_FAIL);
	auth_store_free(s);

	/* An empty store. */
	s = auth_store_new();
	assert_int_equal(check(s, "anyone", "pw"), AUTH_FAIL);
	assert_int_equal(slow(s, "anyone", "pw"), AUTH_FAIL);
	auth_store_free(s);
	auth_store_free(NULL);
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double time_slow_ms(struct auth_store *s, const char *user, const char *pw, size_t len)
{
	double t0 = now_ms();

	assert_int_equal(auth_verify_slow(s, user, pw, len), AUTH_FAIL);
	return now_ms() - t0;
}

/* An unknown user, a plain user's wrong password and a password crypt
 * cannot take cost what a known user's wrong password costs: a crypt with
 * the same setting. Measured interleaved (drift hits all alike), medians of
 * 11, against a 20000-round hash; the bound is loose (a loaded CI machine),
 * the gap it closes was three orders of magnitude. */
static void test_auth_unknown_costs_the_same(void **state)
{
	enum { ROUNDS = 11 };
	struct auth_store *s = auth_store_new();
	char setting[CRYPT_GENSALT_OUTPUT_SIZE], hash[CRYPT_OUTPUT_SIZE];
	struct crypt_data *cd = test_calloc(1, sizeof(*cd));
	double t[4][ROUNDS], med[4];

	(void)state;
	assert_non_null(crypt_gensalt_rn("$6$", 20000, NULL, 0, setting, sizeof(setting)));
	assert_non_null(crypt_rn("pw", setting, cd, (int)sizeof(*cd)));
	assert_true(strlen(cd->output) < sizeof(hash));
	strcpy(hash, cd->output);
	test_free(cd);
	assert_int_equal(auth_store_add(s, "known", hash, NULL), 0);
	assert_int_equal(auth_store_add(s, "plain", NULL, "secret"), 0);
	for (size_t r = 0; r < ROUNDS; r++) {
		t[0][r] = time_slow_ms(s, "known", "wrong", 5);
		t[1][r] = time_slow_ms(s, "nobody-here", "wrong", 5);
		t[2][r] = time_slow_ms(s, "plain", "wrong", 5);
		t[3][r] = time_slow_ms(s, "known", "p\0w", 3);
	}
	for (size_t k = 0; k < 4; k++) {
		qsort(t[k], ROUNDS, sizeof(t[k][0]), cmp_double);
		med[k] = t[k][ROUNDS / 2];
	}
	assert_true(med[0] > 1.0); /* a real crypt, not a shortcut */
	for (size_t k = 1; k < 4; k++)
		if (!(med[k] > med[0] / 3 && med[k] < med[0] * 3))
			fail_msg("case %zu: median %.2f ms against %.2f ms for a known user", k,
				 med[k], med[0]);
	assert_int_equal(auth_check_cached(s, "known", "p\0w", 3), AUTH_NEED_SLOW);
	assert_int_equal(check(s, "plain", "secret"), AUTH_OK);
	assert_int_equal(check(s, "plain", "wrong"), AUTH_NEED_SLOW);
	assert_int_equal(slow(s, "plain", "secret"), AUTH_OK);
	auth_store_free(s);
}

/* A cache entry belongs to one user: another user with the same hash
 * does not ride on it. */
static void test_auth_cache_per_user(void **state)
{
	struct auth_store *s = auth_store_new();
	char hash[CRYPT_OUTPUT_SIZE];

	make_hash("$6$", "shared", hash, sizeof(hash));
	assert_int_equal(auth_store_add(s, "a", hash, NULL), 0);
	assert_int_equal(auth_store_add(s, "b", hash, NULL), 0);
	assert_int_equal(slow(s, "a", "shared"), AUTH_OK);
	auth_cache_put(s, "a", "shared", 6);
	assert_int_equal(check(s, "a", "shared"), AUTH_OK);
	assert_int_equal(check(s, "b", "shared"), AUTH_NEED_SLOW);
	/* A new store (a reload) starts with an empty cache. */
	auth_store_free(s);
	s = auth_store_new();
	assert_int_equal(auth_store_add(s, "a", hash, NULL), 0);
	assert_int_equal(check(s, "a", "shared"), AUTH_NEED_SLOW);
	auth_store_free(s);
}

static void test_auth_store_add_errors(void **state)
{
	struct auth_store *s = auth_store_new();
	char hash[CRYPT_OUTPUT_SIZE];
	char name[257];

	make_hash("$y$", "pw", hash, sizeof(hash));
	assert_int_equal(auth_store_add(s, "u", NULL, NULL), -EINVAL);
	assert_int_equal(auth_store_add(s, "u", hash, "pw"), -EINVAL);
	assert_int_equal(auth_store_add(s, "", hash, NULL), -EINVAL);
	assert_int_equal(auth_store_add(s, NULL, hash, NULL), -EINVAL);
	assert_int_equal(auth_store_add(NULL, "u", hash, NULL), -EINVAL);
	memset(name, 'n', 256);
	name[256] = '\0';
	assert_int_equal(auth_store_add(s, name, NULL, "pw"), -EINVAL);
	name[255] = '\0';
	assert_int_equal(auth_store_add(s, name, NULL, "pw"), 0);
	assert_int_equal(check(s, name, "pw"), AUTH_OK);
	assert_int_equal(auth_store_add(s, "bad", "not a hash", NULL), -EINVAL);
	assert_int_equal(auth_store_add(s, "bad", "*", NULL), -EINVAL);
	assert_int_equal(auth_store_add(s, "bad", "", NULL), -EINVAL);
	assert_int_equal(auth_store_add(s, "u", hash, NULL), 0);
	assert_int_equal(auth_store_add(s, "u", NULL, "other"), -EEXIST);
	assert_int_equal(auth_store_count(s), 2);
	auth_store_free(s);
}

static void test_auth_many_users(void **state)
{
	struct auth_store *s = auth_store_new();
	char name[32], pw[32];

	for (int i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "user%d", i);
		snprintf(pw, sizeof(pw), "pw-%d", i * 7);
		assert_int_equal(auth_store_add(s, name, NULL, pw), 0);
	}
	assert_int_equal(auth_store_count(s), 2000);
	for (int i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "user%d", i);
		snprintf(pw, sizeof(pw), "pw-%d", i * 7);
		assert_int_equal(check(s, name, pw), AUTH_OK);
		snprintf(pw, sizeof(pw), "pw-%d", i * 7 + 1);
		assert_int_equal(check(s, name, pw), AUTH_FAIL);
	}
	assert_int_equal(check(s, "user2000", "pw-14000"), AUTH_FAIL);
	auth_store_free(s);
}

struct worker {
	struct auth_store *store;
	int ok;
};

static void *verify_worker(void *arg)
{
	struct worker *w = arg;

	for (int i = 0; i < 3; i++) {
		if (slow(w->store, "mta", "pw") == AUTH_OK &&
		    slow(w->store, "mta", "no") == AUTH_FAIL)
			w->ok++;
		auth_cache_put(w->store, "mta", "pw", 2);
		if (check(w->store, "mta", "pw") == AUTH_OK)
			w->ok++;
	}
	return NULL;
}

/* auth_verify_slow runs on worker threads, concurrently. */
static void test_auth_threads(void **state)
{
	struct auth_store *s = auth_store_new();
	char hash[CRYPT_OUTPUT_SIZE];
	pthread_t t[4];
	struct worker w[4];

	make_hash("$6$", "pw", hash, sizeof(hash));
	assert_int_equal(auth_store_add(s, "mta", hash, NULL), 0);
	for (int i = 0; i < 4; i++) {
		w[i].store = s;
		w[i].ok = 0;
		assert_int_equal(pthread_create(&t[i], NULL, verify_worker, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(w[i].ok, 6);
	}
	auth_store_free(s);
}

/* Reference vectors of SipHash-2-4-128 (key 00..0f, message 00..len-1). */
static void test_auth_siphash_vectors(void **state)
{
	static const struct {
		size_t len;
		uint8_t out[16];
	} v[] = {
	    {0,
	     {0xa3, 0x81, 0x7f, 0x04, 0xba, 0x25, 0xa8, 0xe6, 0x6d, 0xf6, 0x72, 0x14, 0xc7, 0x55,
	      0x02, 0x93}},
	    {1,
	     {0xda, 0x87, 0xc1, 0xd8, 0x6b, 0x99, 0xaf, 0x44, 0x34, 0x76, 0x59, 0x11, 0x9b, 0x22,
	      0xfc, 0x45}},
	    {7,
	     {0xa1, 0xf1, 0xeb, 0xbe, 0xd8, 0xdb, 0xc1, 0x53, 0xc0, 0xb8, 0x4a, 0xa6, 0x1f, 0xf0,
	      0x82, 0x39}},
	    {8,
	     {0x3b, 0x62, 0xa9, 0xba, 0x62, 0x58, 0xf5, 0x61, 0x0f, 0x83, 0xe2, 0x64, 0xf3, 0x14,
	      0x97, 0xb4}},
	    {15,
	     {0x54, 0x93, 0xe9, 0x99, 0x33, 0xb0, 0xa8, 0x11, 0x7e, 0x08, 0xec, 0x0f, 0x97, 0xcf,
	      0xc3, 0xd9}},
	    {63,
	     {0x51, 0x50, 0xd1, 0x77, 0x2f, 0x50, 0x83, 0x4a, 0x50, 0x3e, 0x06, 0x9a, 0x97, 0x3f,
	      0xbd, 0x7c}},
	};
	unsigned char key[16], msg[64], out[16];

	for (int i = 0; i < 16; i++)
		key[i] = (unsigned char)i;
	for (int i = 0; i < 64; i++)
		msg[i] = (unsigned char)i;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		auth__siphash128(key, msg, v[i].len, out);
		assert_memory_equal(out, v[i].out, 16);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_auth_siphash_vectors),
	    cmocka_unit_test(test_auth_yescrypt),
	    cmocka_unit_test(test_auth_sha512),
	    cmocka_unit_test(test_auth_plain),
	    cmocka_unit_test(test_auth_empty_password_hashed),
	    cmocka_unit_test(test_auth_unknown_user),
	    cmocka_unit_test(test_auth_unknown_costs_the_same),
	    cmocka_unit_test(test_auth_cache_per_user),
	    cmocka_unit_test(test_auth_store_add_errors),
	    cmocka_unit_test(test_auth_many_users),
	    cmocka_unit_test(test_auth_threads),
	};

	return cmocka_run_group_tests_name("auth", tests, NULL, NULL);
}
