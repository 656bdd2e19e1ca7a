/* Unit tests for proxy/clients.c: limits, address forms, growth and
 * shrinking, and several threads at once (run under TSan in CI). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "clients.h"

static struct sockaddr_storage ip(const char *text, uint16_t port)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof ss);
	if (strchr(text, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		assert_int_equal(inet_pton(AF_INET6, text, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		assert_int_equal(inet_pton(AF_INET, text, &s4->sin_addr), 1);
	}
	return ss;
}

#define SA(x) ((const struct sockaddr *)&(x))

static void test_clients_limit_per_address_port_ignored(void **state)
{
	struct clients t;
	struct sockaddr_storage a1 = ip("192.0.2.1", 1000), a2 = ip("192.0.2.1", 2000);
	struct sockaddr_storage b = ip("192.0.2.2", 1000), mapped = ip("::ffff:192.0.2.1", 3);

	(void)state;
	assert_int_equal(clients_init(&t, false), 0);
	assert_int_equal(clients_add(&t, SA(a1), 2), 0);
	assert_int_equal(clients_add(&t, SA(a2), 2), 0);
	assert_int_equal(clients_add(&t, SA(a1), 2), -EBUSY);
	/* The v4-mapped spelling is the same client. */
	assert_int_equal(clients_add(&t, SA(mapped), 2), -EBUSY);
	assert_int_equal(clients_add(&t, SA(b), 2), 0);
	assert_int_equal(clients_count(&t, SA(a1)), 2);
	clients_remove(&t, SA(a2));
	assert_int_equal(clients_count(&t, SA(mapped)), 1);
	assert_int_equal(clients_add(&t, SA(mapped), 2), 0);
	/* Limit 0 is no limit. */
	for (int i = 0; i < 100; i++)
		assert_int_equal(clients_add(&t, SA(b), 0), 0);
	assert_int_equal(clients_count(&t, SA(b)), 101);
	clients_destroy(&t);
}

static void test_clients_rejects_other_families(void **state)
{
	struct clients t;
	struct sockaddr_storage un = {.ss_family = AF_UNIX};

	(void)state;
	assert_int_equal(clients_init(&t, false), 0);
	assert_int_equal(clients_add(&t, SA(un), 0), -EINVAL);
	assert_int_equal(clients_add(&t, NULL, 0), -EINVAL);
	assert_int_equal(clients_count(&t, SA(un)), 0);
	clients_remove(&t, SA(un));
	clients_destroy(&t);
}

/* A burst of distinct IPv6 addresses grows the table; once they are gone
 * it shrinks back, and the survivors keep their counts. */
static void test_clients_grows_then_shrinks(void **state)
{
	struct clients t;
	char text[64];
	struct sockaddr_storage keep = ip("2001:db8::1", 1);

	(void)state;
	assert_int_equal(clients_init(&t, false), 0);
	assert_int_equal(clients_add(&t, SA(keep), 0), 0);
	for (int i = 0; i < 5000; i++) {
		snprintf(text, sizeof text, "2001:db8:1::%x", i + 1);
		struct sockaddr_storage a = ip(text, 1);
		assert_int_equal(clients_add(&t, SA(a), 1), 0);
	}
	assert_true(t.cap >= 10000);
	for (int i = 0; i < 5000; i++) {
		snprintf(text, sizeof text, "2001:db8:1::%x", i + 1);
		struct sockaddr_storage a = ip(text, 1);
		assert_int_equal(clients_count(&t, SA(a)), 1);
		clients_remove(&t, SA(a));
	}
	/* Tombstones and the next adds make it rehash down to the live set. */
	for (int i = 0; i < 5000; i++) {
		snprintf(text, sizeof text, "2001:db8:2::%x", i + 1);
		struct sockaddr_storage a = ip(text, 1);
		assert_int_equal(clients_add(&t, SA(a), 1), 0);
		clients_remove(&t, SA(a));
	}
	assert_true(t.cap <= 256);
	assert_int_equal(clients_count(&t, SA(keep)), 1);
	clients_destroy(&t);
}

#define THREADS 4
#define ROUNDS	5000
#define LIMIT	3

struct race {
	struct clients t;
	atomic_uint held, max;
};

static void *race_loop(void *arg)
{
	struct race *r = arg;
	struct sockaddr_storage a = ip("198.51.100.7", 9);

	for (int i = 0; i < ROUNDS; i++) {
		if (clients_add(&r->t, SA(a), LIMIT) != 0)
			continue;
		unsigned now = atomic_fetch_add(&r->held, 1) + 1, max = atomic_load(&r->max);
		while (now > max && !atomic_compare_exchange_weak(&r->max, &max, now))
			;
		atomic_fetch_sub(&r->held, 1);
		clients_remove(&r->t, SA(a));
	}
	return NULL;
}

/* Workers share one table: the limit holds across threads. */
static void test_clients_limit_holds_across_threads(void **state)
{
	struct race r = {0};
	pthread_t th[THREADS];
	struct sockaddr_storage a = ip("198.51.100.7", 9);

	(void)state;
	assert_int_equal(clients_init(&r.t, true), 0);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, race_loop, &r), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	assert_true(atomic_load(&r.max) <= LIMIT);
	assert_true(atomic_load(&r.max) >= 1);
	assert_int_equal(clients_count(&r.t, SA(a)), 0);
	clients_destroy(&r.t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_clients_limit_per_address_port_ignored),
	    cmocka_unit_test(test_clients_rejects_other_families),
	    cmocka_unit_test(test_clients_grows_then_shrinks),
	    cmocka_unit_test(test_clients_limit_holds_across_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
