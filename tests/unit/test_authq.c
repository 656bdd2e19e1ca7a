/* Unit tests for the fair password-check queue and the failure throttle
 * (proxy/authq.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authq.h"

static struct sockaddr_storage sa(const char *ip)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':')) {
		ss.ss_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)&ss)->sin6_addr),
				 1);
	} else {
		ss.ss_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, ip, &((struct sockaddr_in *)&ss)->sin_addr), 1);
	}
	return ss;
}

/* A login: which client it came from, for checking the serving order. */
struct login {
	struct authq_entry e;
	int client;
};

static struct authq *queue(unsigned running, unsigned per_client, unsigned total)
{
	struct authq_limits lim = {running, per_client, total};
	struct authq *q = NULL;

	assert_int_equal(authq_new(&lim, &q), 0);
	return q;
}

static int submit(struct authq *q, struct login *l, const char *ip, int client)
{
	struct sockaddr_storage ss = sa(ip);

	l->client = client;
	return authq_submit(q, &l->e, (struct sockaddr *)&ss);
}

static void test_authq_limits(void **state)
{
	struct authq *q = NULL;
	struct authq_limits bad[] = {{0, 1, 1}, {1, 0, 1}, {2, 1, 1}, {1, 4, 2}};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(authq_new(&bad[i], &q), -EINVAL);
	assert_int_equal(authq_new(NULL, &q), -EINVAL);
	q = queue(1, 1, 1);
	struct login l = {0};
	assert_int_equal(authq_submit(q, &l.e, NULL), -EINVAL);
	assert_int_equal(submit(q, &l, "192.0.2.1", 0), 1);
	/* Not IDLE any more. */
	assert_int_equal(submit(q, &l, "192.0.2.1", 0), -EINVAL);
	assert_null(authq_done(q, &l.e));
	assert_int_equal(l.e.state, AUTHQ_IDLE);
	/* done on an IDLE entry changes nothing. */
	assert_null(authq_done(q, &l.e));
	assert_int_equal(authq_running(q), 0);
	authq_free(q);
	authq_free(NULL);
}

/* Slots first, then waiting; done hands out the next one. */
static void test_authq_run_then_wait(void **state)
{
	struct authq *q = queue(2, 8, 16);
	struct login l[4] = {0};

	(void)state;
	assert_int_equal(submit(q, &l[0], "192.0.2.1", 0), 1);
	assert_int_equal(submit(q, &l[1], "192.0.2.2", 1), 1);
	assert_int_equal(submit(q, &l[2], "192.0.2.3", 2), 0);
	assert_int_equal(submit(q, &l[3], "192.0.2.3", 2), 0);
	assert_int_equal(authq_running(q), 2);
	assert_int_equal(authq_waiting(q), 2);
	assert_ptr_equal(authq_done(q, &l[1].e), &l[2].e);
	assert_int_equal(l[2].e.state, AUTHQ_RUNNING);
	assert_ptr_equal(authq_done(q, &l[0].e), &l[3].e);
	assert_null(authq_done(q, &l[2].e));
	assert_null(authq_done(q, &l[3].e));
	assert_int_equal(authq_running(q), 0);
	assert_int_equal(authq_waiting(q), 0);
	authq_free(q);
}

/* 600 logins from one address and then one from another: the other one
 * is the second served, not the 601st; the flood's excess is refused. */
static void test_authq_fair_against_a_flood(void **state)
{
	enum { FLOOD = 600 };
	struct authq *q = queue(2, 8, 256);
	struct login *flood = calloc(FLOOD, sizeof(*flood));
	struct login good = {0}, *running[2];
	int accepted = 0, refused = 0, n;

	(void)state;
	assert_non_null(flood);
	for (int i = 0; i < FLOOD; i++) {
		n = submit(q, &flood[i], "198.51.100.66", 0);
		if (n == -EBUSY)
			refused++;
		else
			accepted++;
	}
	assert_int_equal(accepted, 8);
	assert_int_equal(refused, FLOOD - 8);
	assert_int_equal(submit(q, &good, "203.0.113.5", 1), 0);
	running[0] = &flood[0];
	running[1] = &flood[1];
	/* The flood was in the ring first and gets one turn, then it is the
	 * other client's: the good login waits for at most one check. */
	assert_ptr_equal(authq_done(q, &running[0]->e), &flood[2].e);
	assert_ptr_equal(authq_done(q, &running[1]->e), &good.e);
	/* The flood drains in its own order. */
	struct authq_entry *e = authq_done(q, &good.e);
	for (int i = 3; i < 8; i++) {
		assert_ptr_equal(e, &flood[i].e);
		e = authq_done(q, e);
	}
	assert_null(e);
	assert_null(authq_done(q, &flood[2].e));
	assert_int_equal(authq_running(q), 0);
	assert_int_equal(authq_waiting(q), 0);
	/* Everything is free again: the cap counts pending, not history. */
	for (int i = 0; i < 2; i++)
		assert_int_equal(submit(q, &flood[i], "198.51.100.66", 0), 1);
	authq_done(q, &flood[0].e);
	authq_done(q, &flood[1].e);
	free(flood);
	authq_free(q);
}

/* Round-robin across three clients with several each: a b c a b c ... */
static void test_authq_round_robin_order(void **state)
{
	static const char *const ips[] = {"192.0.2.1", "192.0.2.2", "192.0.2.3"};
	struct authq *q = queue(1, 8, 64);
	struct login blocker = {0}, l[3][4];
	int order[12], k = 0;

	(void)state;
	memset(l, 0, sizeof(l));
	assert_int_equal(submit(q, &blocker, "198.51.100.1", 9), 1);
	/* a a a a, then b b b b, then c c c c arrive in that order. */
	for (int c = 0; c < 3; c++)
		for (int i = 0; i < 4; i++)
			assert_int_equal(submit(q, &l[c][i], ips[c], c), 0);
	struct authq_entry *e = authq_done(q, &blocker.e);
	while (e) {
		order[k++] = ((struct login *)e)->client;
		e = authq_done(q, e);
	}
	assert_int_equal(k, 12);
	for (int i = 0; i < 12; i++)
		assert_int_equal(order[i], i % 3);
	/* Within a client, first come first served. */
	authq_free(q);
}

/* Caps: per client, and in all; IPv6 clients are their /64. */
static void test_authq_caps(void **state)
{
	struct authq *q = queue(1, 2, 4);
	struct login l[8] = {0};

	(void)state;
	assert_int_equal(submit(q, &l[0], "2001:db8:1:1::1", 0), 1);
	assert_int_equal(submit(q, &l[1], "2001:db8:1:1::2", 0), 0);
	assert_int_equal(submit(q, &l[2], "2001:db8:1:1:ffff::9", 0), -EBUSY);
	assert_int_equal(l[2].e.state, AUTHQ_IDLE);
	assert_int_equal(submit(q, &l[2], "2001:db8:1:2::1", 1), 0);
	assert_int_equal(submit(q, &l[3], "192.0.2.1", 2), 0);
	/* total 4 pending: nobody else, whatever its own count. */
	assert_int_equal(submit(q, &l[4], "::ffff:192.0.2.1", 2), -ENOSPC);
	assert_int_equal(submit(q, &l[4], "192.0.2.9", 3), -ENOSPC);
	struct authq_entry *e = authq_done(q, &l[0].e);
	assert_ptr_equal(e, &l[1].e);
	assert_int_equal(submit(q, &l[4], "::ffff:192.0.2.1", 2), 0);
	while ((e = authq_done(q, e)))
		;
	assert_int_equal(authq_running(q), 0);
	assert_int_equal(authq_waiting(q), 0);
	authq_free(q);

	/* v4-mapped is the IPv4 client: one cap for both spellings. */
	q = queue(1, 2, 8);
	memset(l, 0, sizeof(l));
	assert_int_equal(submit(q, &l[0], "192.0.2.1", 0), 1);
	assert_int_equal(submit(q, &l[1], "::ffff:192.0.2.1", 0), 0);
	assert_int_equal(submit(q, &l[2], "::ffff:192.0.2.1", 0), -EBUSY);
	assert_int_equal(submit(q, &l[2], "192.0.2.1", 0), -EBUSY);
	assert_ptr_equal(authq_done(q, &l[0].e), &l[1].e);
	assert_null(authq_done(q, &l[1].e));
	authq_free(q);
}

/* A waiting login whose client leaves is taken out; the ring skips a
 * client with nothing left. */
static void test_authq_cancel(void **state)
{
	struct authq *q = queue(1, 8, 16);
	struct login run = {0}, a1 = {0}, a2 = {0}, b1 = {0}, c1 = {0};

	(void)state;
	assert_int_equal(submit(q, &run, "192.0.2.9", 9), 1);
	assert_int_equal(submit(q, &a1, "192.0.2.1", 0), 0);
	assert_int_equal(submit(q, &a2, "192.0.2.1", 0), 0);
	assert_int_equal(submit(q, &b1, "192.0.2.2", 1), 0);
	assert_int_equal(submit(q, &c1, "192.0.2.3", 2), 0);
	authq_cancel(q, &a2.e); /* the tail of a's list */
	authq_cancel(q, &b1.e); /* b has nothing left: out of the ring */
	assert_int_equal(a2.e.state, AUTHQ_IDLE);
	assert_int_equal(authq_waiting(q), 2);
	authq_cancel(q, &b1.e);	 /* IDLE: no-op */
	authq_cancel(q, &run.e); /* RUNNING: not cancellable */
	assert_int_equal(run.e.state, AUTHQ_RUNNING);
	struct authq_entry *e = authq_done(q, &run.e);
	assert_ptr_equal(e, &a1.e);
	e = authq_done(q, e);
	assert_ptr_equal(e, &c1.e);
	assert_null(authq_done(q, e));
	/* The freed pending counts let the same clients in again. */
	for (int i = 0; i < 1; i++) {
		assert_int_equal(submit(q, &a2, "192.0.2.1", 0), 1);
		assert_int_equal(submit(q, &a1, "192.0.2.1", 0), 0);
		authq_cancel(q, &a1.e); /* the head and only entry */
		assert_null(authq_done(q, &a2.e));
	}
	authq_free(q);
}

/* Over its client's cap a login is parked: no slot, no cap, until a login
 * of that client succeeds; parked entries of other clients stay. */
static void test_authq_park(void **state)
{
	struct authq *q = queue(1, 1, 8);
	struct sockaddr_storage a = sa("192.0.2.1"), b = sa("192.0.2.2"),
				m = sa("::ffff:192.0.2.1");
	struct login run = {0}, pa1 = {0}, pa2 = {0}, pb = {0}, other = {0};

	(void)state;
	assert_int_equal(submit(q, &run, "192.0.2.1", 0), 1);
	assert_int_equal(submit(q, &pa1, "192.0.2.1", 0), -EBUSY);
	assert_int_equal(authq_park(q, &pa1.e, (struct sockaddr *)&a), 0);
	assert_int_equal(pa1.e.state, AUTHQ_PARKED);
	assert_int_equal(authq_park(q, &pa1.e, (struct sockaddr *)&a), -EINVAL);
	assert_int_equal(submit(q, &pa2, "192.0.2.1", 0), -EBUSY);
	assert_int_equal(authq_park(q, &pa2.e, (struct sockaddr *)&m), 0);
	assert_int_equal(authq_park(q, &pb.e, (struct sockaddr *)&b), 0);
	assert_int_equal(authq_parked(q), 3);
	/* Parked ones hold no pending count: another client still queues. */
	assert_int_equal(submit(q, &other, "192.0.2.3", 2), 0);
	/* The client's oldest first, only the client's. */
	assert_ptr_equal(authq_unpark(q, (struct sockaddr *)&a), &pa1.e);
	assert_int_equal(pa1.e.state, AUTHQ_IDLE);
	authq_cancel(q, &pa2.e); /* its session closed while parked */
	assert_int_equal(pa2.e.state, AUTHQ_IDLE);
	assert_null(authq_unpark(q, (struct sockaddr *)&a));
	assert_int_equal(authq_parked(q), 1);
	assert_ptr_equal(authq_unpark(q, (struct sockaddr *)&b), &pb.e);
	assert_null(authq_unpark(q, (struct sockaddr *)&b));
	assert_int_equal(authq_parked(q), 0);
	assert_null(authq_unpark(NULL, (struct sockaddr *)&b));
	struct authq_entry *e = authq_done(q, &run.e);
	assert_ptr_equal(e, &other.e);
	assert_null(authq_done(q, e));
	authq_free(q);
}

/* A model run: random submits, cancels and completions against a simple
 * reference of the caps and counters. */
static void test_authq_model(void **state)
{
	enum { N = 200, CLIENTS = 7 };
	struct authq *q = queue(3, 4, 20);
	struct login l[N];
	unsigned pending[CLIENTS] = {0}, total = 0, parked = 0;
	char ip[32];

	(void)state;
	memset(l, 0, sizeof(l));
	srand(42);
	for (int step = 0; step < 20000; step++) {
		int i = rand() % N, c = i % CLIENTS;
		snprintf(ip, sizeof(ip), "192.0.2.%d", c + 1);
		switch (l[i].e.state) {
		case AUTHQ_IDLE: {
			int rc = submit(q, &l[i], ip, c);
			int want = total >= 20 ? -ENOSPC : pending[c] >= 4 ? -EBUSY : 0;
			if (want < 0)
				assert_int_equal(rc, want);
			else
				assert_true(rc == 0 || rc == 1);
			if (rc >= 0) {
				pending[c]++;
				total++;
			} else if (rc == -EBUSY && rand() % 2) {
				struct sockaddr_storage ss = sa(ip);
				assert_int_equal(authq_park(q, &l[i].e, (struct sockaddr *)&ss), 0);
				parked++;
			}
			break;
		}
		case AUTHQ_PARKED:
			if (rand() % 2) {
				authq_cancel(q, &l[i].e);
			} else {
				struct sockaddr_storage ss = sa(ip);
				struct authq_entry *e = authq_unpark(q, (struct sockaddr *)&ss);
				assert_non_null(e); /* at least this one is parked */
				assert_int_equal(e->state, AUTHQ_IDLE);
				assert_int_equal(((struct login *)e)->client % CLIENTS, c);
			}
			parked--;
			break;
		case AUTHQ_WAITING:
			authq_cancel(q, &l[i].e);
			pending[c]--;
			total--;
			break;
		case AUTHQ_RUNNING: {
			struct authq_entry *next = authq_done(q, &l[i].e);
			pending[c]--;
			total--;
			if (next)
				assert_int_equal(next->state, AUTHQ_RUNNING);
			break;
		}
		}
		assert_true(authq_running(q) <= 3);
		assert_int_equal(authq_running(q) + authq_waiting(q), total);
		assert_int_equal(authq_parked(q), parked);
		/* Work-conserving: nobody waits while a slot is free. */
		assert_true(authq_waiting(q) == 0 || authq_running(q) == 3);
	}
	authq_free(q);
}

static void test_authq_throttle(void **state)
{
	struct authq_throttle *t = NULL;
	struct sockaddr_storage a = sa("192.0.2.1"), b = sa("192.0.2.2"),
				m = sa("::ffff:192.0.2.1");
	struct sockaddr_storage v6a = sa("2001:db8::1"), v6b = sa("2001:db8::ffff:2");
	const struct sockaddr *pa = (struct sockaddr *)&a, *pb = (struct sockaddr *)&b;
	static const uint64_t want[] = {0, 100, 200, 400, 800, 1600, 2000, 2000, 2000};
	uint64_t now = 1000000;

	(void)state;
	assert_int_equal(authq_throttle_new(0, 1, &t), -EINVAL);
	assert_int_equal(authq_throttle_new(1024, 12345, &t), 0);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++, now += 10)
		assert_int_equal(authq_throttle_fail(t, pa, now), want[i]);
	/* Another client is not slowed by a's failures. */
	assert_int_equal(authq_throttle_fail(t, pb, now), 0);
	/* v4-mapped is the same client. */
	assert_int_equal(authq_throttle_fail(t, (struct sockaddr *)&m, now), 2000);
	/* A success forgets. */
	authq_throttle_ok(t, pa);
	assert_int_equal(authq_throttle_fail(t, pa, now), 0);
	assert_int_equal(authq_throttle_fail(t, pa, now), 100);
	/* A quiet window forgets: just under it does not. */
	assert_int_equal(authq_throttle_fail(t, pa, now + AUTHQ_FAIL_WINDOW_MS - 1), 200);
	assert_int_equal(authq_throttle_fail(t, pa, now + 2 * AUTHQ_FAIL_WINDOW_MS), 0);
	/* One /64 is one client. */
	assert_int_equal(authq_throttle_fail(t, (struct sockaddr *)&v6a, now), 0);
	assert_int_equal(authq_throttle_fail(t, (struct sockaddr *)&v6b, now), 100);
	authq_throttle_free(t);
	authq_throttle_free(NULL);
}

static void test_authq_key(void **state)
{
	struct sockaddr_storage a = sa("192.0.2.1"), m = sa("::ffff:192.0.2.1"), u;
	uint8_t k1[16], k2[16];

	(void)state;
	assert_int_equal(authq__key((struct sockaddr *)&a, k1), 0);
	assert_int_equal(authq__key((struct sockaddr *)&m, k2), 0);
	assert_memory_equal(k1, k2, 16);
	memset(&u, 0, sizeof(u));
	u.ss_family = AF_UNIX;
	assert_int_equal(authq__key((struct sockaddr *)&u, k1), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_authq_limits),
	    cmocka_unit_test(test_authq_run_then_wait),
	    cmocka_unit_test(test_authq_fair_against_a_flood),
	    cmocka_unit_test(test_authq_round_robin_order),
	    cmocka_unit_test(test_authq_caps),
	    cmocka_unit_test(test_authq_cancel),
	    cmocka_unit_test(test_authq_park),
	    cmocka_unit_test(test_authq_model),
	    cmocka_unit_test(test_authq_throttle),
	    cmocka_unit_test(test_authq_key),
	};

	return cmocka_run_group_tests_name("authq", tests, NULL, NULL);
}
