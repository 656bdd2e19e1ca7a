/* Unit tests for the built-in destination policy (proxy/dstpolicy.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "dstpolicy.h"
#include "test_addr.h"

/* The fake host has 192.0.2.1 and 2001:db8::1 besides loopback. */
static bool fake_local(const struct sockaddr *addr, void *ctx)
{
	struct sockaddr_storage a = test_addr("192.0.2.1", 0), b = test_addr("2001:db8::1", 0);
	unsigned *calls = ctx;

	(*calls)++;
	if (addr->sa_family == AF_INET)
		return memcmp(&((const struct sockaddr_in *)addr)->sin_addr,
			      &((struct sockaddr_in *)&a)->sin_addr, 4) == 0;
	return memcmp(&((const struct sockaddr_in6 *)addr)->sin6_addr,
		      &((struct sockaddr_in6 *)&b)->sin6_addr, 16) == 0;
}

struct fixture {
	struct conf_cidr_list allow, deny;
	uint16_t ports[2];
	unsigned local_calls;
	struct dstpolicy p;
};

static void fixture_init(struct fixture *f, const char *allow, const char *deny)
{
	memset(f, 0, sizeof(*f));
	if (allow)
		assert_int_equal(conf_parse_cidr_list(allow, &f->allow), 0);
	if (deny)
		assert_int_equal(conf_parse_cidr_list(deny, &f->deny), 0);
	f->ports[0] = 1080; /* listener */
	f->ports[1] = 9180; /* admin */
	f->p = (struct dstpolicy){
	    .allow = &f->allow,
	    .deny = &f->deny,
	    .own_ports = f->ports,
	    .n_own_ports = 2,
	    .is_local = fake_local,
	    .ctx = &f->local_calls,
	};
}

static void fixture_done(struct fixture *f)
{
	free(f->allow.items);
	free(f->deny.items);
}

static enum dstpolicy_verdict check(struct fixture *f, const char *client, const char *dest,
				    uint16_t port)
{
	struct sockaddr_storage c = test_addr(client, 40000), d = test_addr(dest, port);

	return dstpolicy_check(&f->p, (struct sockaddr *)&c, (struct sockaddr *)&d);
}

static void test_dstpolicy_normalise(void **state)
{
	struct sockaddr_storage in = test_addr("::ffff:127.0.0.1", 9180), out;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&out;

	(void)state;
	assert_int_equal(dstpolicy_normalise((struct sockaddr *)&in, &out), 0);
	assert_int_equal(out.ss_family, AF_INET);
	assert_int_equal(ntohs(s4->sin_port), 9180);
	assert_int_equal(ntohl(s4->sin_addr.s_addr), 0x7f000001);

	in = test_addr("2001:db8::5", 25);
	assert_int_equal(dstpolicy_normalise((struct sockaddr *)&in, &out), 0);
	assert_int_equal(out.ss_family, AF_INET6);
	assert_memory_equal(&out, &in, sizeof(struct sockaddr_in6));

	in.ss_family = AF_UNIX;
	assert_int_equal(dstpolicy_normalise((struct sockaddr *)&in, &out), -EINVAL);
	assert_int_equal(dstpolicy_normalise(NULL, &out), -EINVAL);
}

static void test_dstpolicy_classes(void **state)
{
	static const struct {
		const char *ip;
		bool loop, unspec, link;
	} rows[] = {
	    {"127.0.0.1", true, false, false},
	    {"127.255.255.254", true, false, false},
	    {"128.0.0.1", false, false, false},
	    {"0.0.0.0", false, true, false},
	    {"0.255.1.2", false, true, false},
	    {"1.0.0.0", false, false, false},
	    {"169.254.0.1", false, false, true},
	    {"169.255.0.1", false, false, false},
	    {"169.253.255.255", false, false, false},
	    {"::1", true, false, false},
	    {"::", false, true, false},
	    {"::2", false, false, false},
	    {"fe80::1", false, false, true},
	    {"febf::1", false, false, true},
	    {"fec0::1", false, false, false},
	    {"2001:db8::1", false, false, false},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct sockaddr_storage a = test_addr(rows[i].ip, 0);
		const struct sockaddr *p = (struct sockaddr *)&a;
		assert_int_equal(dstpolicy_is_loopback(p), rows[i].loop);
		assert_int_equal(dstpolicy_is_unspecified(p), rows[i].unspec);
		assert_int_equal(dstpolicy_is_link_local(p), rows[i].link);
	}
}

/* Rule 2: our own ports on any local address, for everyone, whatever
 * allow_destinations says. */
static void test_dstpolicy_own_ports(void **state)
{
	struct fixture f;

	(void)state;
	fixture_init(&f, "0.0.0.0/0, ::/0", NULL);
	static const char *const clients[] = {"127.0.0.1", "::1", "192.0.2.77", "2001:db8::77"};
	static const char *const self[] = {
	    "127.0.0.1",  "127.1.2.3",	      "0.0.0.0",	"0.1.2.3",   "::1",
	    "::",	  "::ffff:127.0.0.1", "::ffff:0.0.0.0", "192.0.2.1", "::ffff:192.0.2.1",
	    "2001:db8::1"};
	for (size_t c = 0; c < 4; c++) {
		for (size_t d = 0; d < sizeof(self) / sizeof(self[0]); d++) {
			assert_int_equal(check(&f, clients[c], self[d], 1080), DSTPOLICY_DENY_SELF);
			assert_int_equal(check(&f, clients[c], self[d], 9180), DSTPOLICY_DENY_SELF);
		}
		/* The same port on an address the host does not have is someone
		 * else's proxy. */
		assert_int_equal(check(&f, clients[c], "192.0.2.2", 1080), DSTPOLICY_ALLOW);
		assert_int_equal(check(&f, clients[c], "2001:db8::2", 9180), DSTPOLICY_ALLOW);
		/* Another port of this host is no loop (allow opens it here). */
		assert_int_equal(check(&f, clients[c], "127.0.0.1", 1081), DSTPOLICY_ALLOW);
		assert_int_equal(check(&f, clients[c], "192.0.2.1", 25), DSTPOLICY_ALLOW);
	}
	fixture_done(&f);
}

/* The local-address question is asked only for our own ports, and not for
 * addresses that are local by their class. */
static void test_dstpolicy_local_cb_only_when_needed(void **state)
{
	struct fixture f;

	(void)state;
	fixture_init(&f, NULL, NULL);
	assert_int_equal(check(&f, "127.0.0.1", "192.0.2.1", 25), DSTPOLICY_ALLOW);
	assert_int_equal(check(&f, "127.0.0.1", "198.51.100.1", 443), DSTPOLICY_ALLOW);
	assert_int_equal(check(&f, "127.0.0.1", "127.0.0.1", 9180), DSTPOLICY_DENY_SELF);
	assert_int_equal(f.local_calls, 0);
	assert_int_equal(check(&f, "127.0.0.1", "198.51.100.1", 1080), DSTPOLICY_ALLOW);
	assert_int_equal(f.local_calls, 1);

	/* Without a callback only loopback and unspecified count as us. */
	f.p.is_local = NULL;
	assert_int_equal(check(&f, "127.0.0.1", "192.0.2.1", 1080), DSTPOLICY_ALLOW);
	assert_int_equal(check(&f, "127.0.0.1", "0.0.0.0", 1080), DSTPOLICY_DENY_SELF);
	fixture_done(&f);
}

/* Rule 4: loopback, this-host and link-local only for loopback clients. */
static void test_dstpolicy_local_for_remote_clients(void **state)
{
	static const char *const local[] = {"127.0.0.1",
					    "127.9.9.9",
					    "0.0.0.0",
					    "0.0.0.1",
					    "::1",
					    "::",
					    "169.254.1.1",
					    "fe80::1",
					    "::ffff:127.0.0.1",
					    "::ffff:169.254.9.9",
					    "::ffff:0.0.0.0"};
	struct fixture f;

	(void)state;
	fixture_init(&f, NULL, NULL);
	for (size_t i = 0; i < sizeof(local) / sizeof(local[0]); i++) {
		assert_int_equal(check(&f, "127.0.0.1", local[i], 8080), DSTPOLICY_ALLOW);
		assert_int_equal(check(&f, "127.5.5.5", local[i], 8080), DSTPOLICY_ALLOW);
		assert_int_equal(check(&f, "::1", local[i], 8080), DSTPOLICY_ALLOW);
		assert_int_equal(check(&f, "::ffff:127.0.0.1", local[i], 8080), DSTPOLICY_ALLOW);
		assert_int_equal(check(&f, "192.0.2.7", local[i], 8080), DSTPOLICY_DENY_LOCAL);
		assert_int_equal(check(&f, "2001:db8::7", local[i], 8080), DSTPOLICY_DENY_LOCAL);
		assert_int_equal(check(&f, "::ffff:192.0.2.7", local[i], 8080),
				 DSTPOLICY_DENY_LOCAL);
		/* A link-local client is not on loopback either. */
		assert_int_equal(check(&f, "fe80::7", local[i], 8080), DSTPOLICY_DENY_LOCAL);
	}
	/* The host's other addresses are ordinary destinations. */
	assert_int_equal(check(&f, "192.0.2.7", "192.0.2.1", 25), DSTPOLICY_ALLOW);
	assert_int_equal(check(&f, "192.0.2.7", "198.51.100.9", 25), DSTPOLICY_ALLOW);
	fixture_done(&f);
}

/* Rules 3 and 5: deny_destinations adds, allow_destinations opens, and an
 * allow beats a deny; neither touches rule 2. */
static void test_dstpolicy_lists(void **state)
{
	struct fixture f;

	(void)state;
	fixture_init(&f, "127.0.0.1/32, 198.51.100.128/25, fe80::/64",
		     "198.51.100.0/24, 10.0.0.0/8");
	assert_int_equal(check(&f, "127.0.0.1", "198.51.100.1", 25), DSTPOLICY_DENY_LIST);
	assert_int_equal(check(&f, "127.0.0.1", "::ffff:198.51.100.1", 25), DSTPOLICY_DENY_LIST);
	assert_int_equal(check(&f, "127.0.0.1", "10.1.2.3", 25), DSTPOLICY_DENY_LIST);
	assert_int_equal(check(&f, "127.0.0.1", "198.51.100.200", 25), DSTPOLICY_ALLOW);
	assert_int_equal(check(&f, "127.0.0.1", "11.0.0.1", 25), DSTPOLICY_ALLOW);

	/* allow opens loopback and link-local for a remote client... */
	assert_int_equal(check(&f, "192.0.2.7", "127.0.0.1", 8080), DSTPOLICY_ALLOW);
	assert_int_equal(check(&f, "192.0.2.7", "::ffff:127.0.0.1", 8080), DSTPOLICY_ALLOW);
	assert_int_equal(check(&f, "192.0.2.7", "fe80::5", 8080), DSTPOLICY_ALLOW);
	/* ...only the range it names... */
	assert_int_equal(check(&f, "192.0.2.7", "127.0.0.2", 8080), DSTPOLICY_DENY_LOCAL);
	assert_int_equal(check(&f, "192.0.2.7", "fe80:0:0:1::5", 8080), DSTPOLICY_DENY_LOCAL);
	/* ...and never our own ports. */
	assert_int_equal(check(&f, "192.0.2.7", "127.0.0.1", 9180), DSTPOLICY_DENY_SELF);
	assert_int_equal(check(&f, "127.0.0.1", "127.0.0.1", 1080), DSTPOLICY_DENY_SELF);

	/* A deny of loopback also binds loopback clients; 0.0.0.0 is no way
	 * around it for a remote one. */
	fixture_done(&f);
	fixture_init(&f, NULL, "127.0.0.0/8, ::1/128");
	assert_int_equal(check(&f, "127.0.0.1", "127.0.0.1", 8080), DSTPOLICY_DENY_LIST);
	assert_int_equal(check(&f, "127.0.0.1", "::ffff:127.0.0.1", 8080), DSTPOLICY_DENY_LIST);
	assert_int_equal(check(&f, "192.0.2.7", "0.0.0.0", 8080), DSTPOLICY_DENY_LOCAL);
	assert_int_equal(check(&f, "192.0.2.7", "::ffff:0.0.0.0", 8080), DSTPOLICY_DENY_LOCAL);
	fixture_done(&f);
}

static void test_dstpolicy_bad_arguments(void **state)
{
	struct fixture f;
	struct sockaddr_storage c = test_addr("127.0.0.1", 1), d = test_addr("198.51.100.1", 25);

	(void)state;
	fixture_init(&f, NULL, NULL);
	assert_int_equal(dstpolicy_check(NULL, (struct sockaddr *)&c, (struct sockaddr *)&d),
			 DSTPOLICY_DENY_LIST);
	assert_int_equal(dstpolicy_check(&f.p, (struct sockaddr *)&c, NULL), DSTPOLICY_DENY_LIST);
	/* An unknown client counts as remote. */
	assert_int_equal(dstpolicy_check(&f.p, NULL, (struct sockaddr *)&d), DSTPOLICY_ALLOW);
	d = test_addr("127.0.0.1", 25);
	assert_int_equal(dstpolicy_check(&f.p, NULL, (struct sockaddr *)&d), DSTPOLICY_DENY_LOCAL);
	assert_string_equal(dstpolicy_verdict_str(DSTPOLICY_DENY_SELF),
			    "own listener or admin port");
	fixture_done(&f);
}

/* The real callback against the real host: loopback is ours, a TEST-NET
 * address is not (no test host plumbs 203.0.113.254). */
static void test_dstpolicy_bind_test(void **state)
{
	struct sockaddr_storage a = test_addr("127.0.0.1", 9180),
				b = test_addr("203.0.113.254", 9180),
				m = test_addr("::ffff:127.0.0.1", 1);

	(void)state;
	assert_true(dstpolicy_bind_test((struct sockaddr *)&a, NULL));
	assert_true(dstpolicy_bind_test((struct sockaddr *)&m, NULL));
	assert_false(dstpolicy_bind_test((struct sockaddr *)&b, NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_dstpolicy_normalise),
	    cmocka_unit_test(test_dstpolicy_classes),
	    cmocka_unit_test(test_dstpolicy_own_ports),
	    cmocka_unit_test(test_dstpolicy_local_cb_only_when_needed),
	    cmocka_unit_test(test_dstpolicy_local_for_remote_clients),
	    cmocka_unit_test(test_dstpolicy_lists),
	    cmocka_unit_test(test_dstpolicy_bad_arguments),
	    cmocka_unit_test(test_dstpolicy_bind_test),
	};

	return cmocka_run_group_tests_name("dstpolicy", tests, NULL, NULL);
}
