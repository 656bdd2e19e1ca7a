/* Unit tests for the SPEC 4.2 failure table (proxy/classify.c): every row,
 * unknown errors, and the pinned-source rule. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <uv.h>

#include "classify.h"
#include "socks5.h"

struct row {
	const char *what;
	struct classify_input in;
	enum classify_blame blame;
	enum classify_next next;
	uint8_t rep;
};

#define IN(ph, e, ...)                                                                             \
	{                                                                                          \
		.phase = CLASSIFY_##ph, .err = (e), __VA_ARGS__                                    \
	}

static void check_rows(const struct row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct classify_verdict v = classify_failure(&rows[i].in);

		print_message("  %s\n", rows[i].what);
		assert_int_equal(v.blame, rows[i].blame);
		assert_int_equal(v.next, rows[i].next);
		assert_int_equal(v.rep, rows[i].rep);
	}
}

/* Row 1: bind EADDRNOTAVAIL: unplumbed, next source. */
static void test_classify_bind_unplumbed(void **state)
{
	static const struct row rows[] = {
	    {"bind EADDRNOTAVAIL", IN(BIND, UV_EADDRNOTAVAIL), CLASSIFY_BLAME_UNPLUMBED,
	     CLASSIFY_NEXT_SOURCE, SOCKS5_REP_GENERAL_FAILURE},
	};

	(void)state;
	check_rows(rows, sizeof rows / sizeof rows[0]);
}

/* Row 2: connect EADDRNOTAVAIL / EADDRINUSE with the source present: ports
 * exhausted, next source, never a suspension. */
static void test_classify_connect_ports_exhausted(void **state)
{
	static const struct row rows[] = {
	    {"connect EADDRNOTAVAIL", IN(CONNECT, UV_EADDRNOTAVAIL), CLASSIFY_BLAME_PORTS,
	     CLASSIFY_NEXT_SOURCE, SOCKS5_REP_GENERAL_FAILURE},
	    {"connect EADDRINUSE", IN(CONNECT, UV_EADDRINUSE), CLASSIFY_BLAME_PORTS,
	     CLASSIFY_NEXT_SOURCE, SOCKS5_REP_GENERAL_FAILURE},
	    {"connect EADDRINUSE, source gone", IN(CONNECT, UV_EADDRINUSE, .source_gone = true),
	     CLASSIFY_BLAME_PORTS, CLASSIFY_NEXT_SOURCE, SOCKS5_REP_GENERAL_FAILURE},
	};

	(void)state;
	check_rows(rows, sizeof rows / sizeof rows[0]);
}

/* Row 3: the source address vanished between bind and connect. */
static void test_classify_connect_source_gone(void **state)
{
	static const struct row rows[] = {
	    {"ENETUNREACH, gone", IN(CONNECT, UV_ENETUNREACH, .source_gone = true),
	     CLASSIFY_BLAME_UNPLUMBED, CLASSIFY_NEXT_SOURCE, SOCKS5_REP_GENERAL_FAILURE},
	    {"EHOSTUNREACH, gone", IN(CONNECT, UV_EHOSTUNREACH, .source_gone = true),
	     CLASSIFY_BLAME_UNPLUMBED, CLASSIFY_NEXT_SOURCE, SOCKS5_REP_GENERAL_FAILURE},
	    {"EADDRNOTAVAIL, gone", IN(CONNECT, UV_EADDRNOTAVAIL, .source_gone = true),
	     CLASSIFY_BLAME_UNPLUMBED, CLASSIFY_NEXT_SOURCE, SOCKS5_REP_GENERAL_FAILURE},
	    {"EINVAL, gone", IN(CONNECT, UV_EINVAL, .source_gone = true), CLASSIFY_BLAME_UNPLUMBED,
	     CLASSIFY_NEXT_SOURCE, SOCKS5_REP_GENERAL_FAILURE},
	    /* A refusal is the destination's even when the source is gone. */
	    {"ECONNREFUSED, gone", IN(CONNECT, UV_ECONNREFUSED, .source_gone = true),
	     CLASSIFY_BLAME_NONE, CLASSIFY_NEXT_DEST, SOCKS5_REP_CONN_REFUSED},
	    {"EINVAL, present", IN(CONNECT, UV_EINVAL), CLASSIFY_BLAME_NONE, CLASSIFY_NEXT_DEST,
	     SOCKS5_REP_GENERAL_FAILURE},
	};

	(void)state;
	check_rows(rows, sizeof rows / sizeof rows[0]);
	assert_true(classify_may_be_vanished(UV_ENETUNREACH));
	assert_true(classify_may_be_vanished(UV_EHOSTUNREACH));
	assert_true(classify_may_be_vanished(UV_EADDRNOTAVAIL));
	assert_true(classify_may_be_vanished(UV_EINVAL));
	assert_false(classify_may_be_vanished(UV_ECONNREFUSED));
	assert_false(classify_may_be_vanished(UV_ETIMEDOUT));
	assert_false(classify_may_be_vanished(0));
}

/* Row 4: the destination's failures: next destination address, and the
 * code to answer with when none is left. */
static void test_classify_connect_destination(void **state)
{
	static const struct row rows[] = {
	    {"ECONNREFUSED", IN(CONNECT, UV_ECONNREFUSED), CLASSIFY_BLAME_NONE, CLASSIFY_NEXT_DEST,
	     SOCKS5_REP_CONN_REFUSED},
	    {"ENETUNREACH", IN(CONNECT, UV_ENETUNREACH), CLASSIFY_BLAME_NONE, CLASSIFY_NEXT_DEST,
	     SOCKS5_REP_NET_UNREACHABLE},
	    {"EHOSTUNREACH", IN(CONNECT, UV_EHOSTUNREACH), CLASSIFY_BLAME_NONE, CLASSIFY_NEXT_DEST,
	     SOCKS5_REP_HOST_UNREACHABLE},
	    {"ETIMEDOUT", IN(CONNECT, UV_ETIMEDOUT), CLASSIFY_BLAME_NONE, CLASSIFY_NEXT_DEST,
	     SOCKS5_REP_TTL_EXPIRED},
	    {"EACCES", IN(CONNECT, UV_EACCES), CLASSIFY_BLAME_NONE, CLASSIFY_NEXT_DEST,
	     SOCKS5_REP_NOT_ALLOWED},
	    {"EPERM", IN(CONNECT, UV_EPERM), CLASSIFY_BLAME_NONE, CLASSIFY_NEXT_DEST,
	     SOCKS5_REP_NOT_ALLOWED},
	};

	(void)state;
	check_rows(rows, sizeof rows / sizeof rows[0]);
}

/* Row 5: the source's upstream proxy unreachable, refusing, timing out, or
 * refusing our BIND: proxy unhealthy, next source. */
static void test_classify_upstream_proxy(void **state)
{
	static const struct row rows[] = {
	    {"proxy refused", IN(UPSTREAM_HANDSHAKE, UV_ECONNREFUSED), CLASSIFY_BLAME_PROXY,
	     CLASSIFY_NEXT_SOURCE, SOCKS5_REP_GENERAL_FAILURE},
	    {"proxy unreachable", IN(UPSTREAM_HANDSHAKE, UV_EHOSTUNREACH), CLASSIFY_BLAME_PROXY,
	     CLASSIFY_NEXT_SOURCE, SOCKS5_REP_GENERAL_FAILURE},
	    {"proxy timeout", IN(UPSTREAM_HANDSHAKE, UV_ETIMEDOUT), CLASSIFY_BLAME_PROXY,
	     CLASSIFY_NEXT_SOURCE, SOCKS5_REP_GENERAL_FAILURE},
	    {"proxy reset", IN(UPSTREAM_HANDSHAKE, UV_ECONNRESET), CLASSIFY_BLAME_PROXY,
	     CLASSIFY_NEXT_SOURCE, SOCKS5_REP_GENERAL_FAILURE},
	    {"proxy protocol error", IN(UPSTREAM_HANDSHAKE, UV_EPROTO), CLASSIFY_BLAME_PROXY,
	     CLASSIFY_NEXT_SOURCE, SOCKS5_REP_GENERAL_FAILURE},
	    {"proxy refused BIND", IN(UPSTREAM_BIND, 0, .rep = SOCKS5_REP_NOT_ALLOWED),
	     CLASSIFY_BLAME_PROXY, CLASSIFY_NEXT_SOURCE, SOCKS5_REP_GENERAL_FAILURE},
	};

	(void)state;
	check_rows(rows, sizeof rows / sizeof rows[0]);
}

/* Row 6: the upstream's CONNECT failed: the destination's; its code passes
 * through. */
static void test_classify_upstream_connect(void **state)
{
	static const struct row rows[] = {
	    {"upstream 0x05", IN(UPSTREAM_CONNECT, 0, .rep = SOCKS5_REP_CONN_REFUSED),
	     CLASSIFY_BLAME_NONE, CLASSIFY_NEXT_DEST, SOCKS5_REP_CONN_REFUSED},
	    {"upstream 0x04", IN(UPSTREAM_CONNECT, 0, .rep = SOCKS5_REP_HOST_UNREACHABLE),
	     CLASSIFY_BLAME_NONE, CLASSIFY_NEXT_DEST, SOCKS5_REP_HOST_UNREACHABLE},
	    {"upstream 0x02", IN(UPSTREAM_CONNECT, 0, .rep = SOCKS5_REP_NOT_ALLOWED),
	     CLASSIFY_BLAME_NONE, CLASSIFY_NEXT_DEST, SOCKS5_REP_NOT_ALLOWED},
	    {"upstream 0x08", IN(UPSTREAM_CONNECT, 0, .rep = SOCKS5_REP_ATYP_NOT_SUPPORTED),
	     CLASSIFY_BLAME_NONE, CLASSIFY_NEXT_DEST, SOCKS5_REP_ATYP_NOT_SUPPORTED},
	    {"upstream without a code", IN(UPSTREAM_CONNECT, 0), CLASSIFY_BLAME_NONE,
	     CLASSIFY_NEXT_DEST, SOCKS5_REP_GENERAL_FAILURE},
	};

	(void)state;
	check_rows(rows, sizeof rows / sizeof rows[0]);
}

/* Errors the table does not list: local in bind, the destination's in
 * connect; neither blames the source. */
static void test_classify_unknown_errors(void **state)
{
	static const struct row rows[] = {
	    {"bind EMFILE", IN(BIND, UV_EMFILE), CLASSIFY_BLAME_NONE, CLASSIFY_NEXT_DEST,
	     SOCKS5_REP_GENERAL_FAILURE},
	    {"bind ENOMEM", IN(BIND, UV_ENOMEM), CLASSIFY_BLAME_NONE, CLASSIFY_NEXT_DEST,
	     SOCKS5_REP_GENERAL_FAILURE},
	    {"bind EAFNOSUPPORT", IN(BIND, UV_EAFNOSUPPORT), CLASSIFY_BLAME_NONE,
	     CLASSIFY_NEXT_DEST, SOCKS5_REP_GENERAL_FAILURE},
	    {"bind EADDRINUSE", IN(BIND, UV_EADDRINUSE), CLASSIFY_BLAME_NONE, CLASSIFY_NEXT_DEST,
	     SOCKS5_REP_GENERAL_FAILURE},
	    {"connect ECONNRESET", IN(CONNECT, UV_ECONNRESET), CLASSIFY_BLAME_NONE,
	     CLASSIFY_NEXT_DEST, SOCKS5_REP_GENERAL_FAILURE},
	    {"connect EMFILE", IN(CONNECT, UV_EMFILE), CLASSIFY_BLAME_NONE, CLASSIFY_NEXT_DEST,
	     SOCKS5_REP_GENERAL_FAILURE},
	    {"connect -9999", IN(CONNECT, -9999), CLASSIFY_BLAME_NONE, CLASSIFY_NEXT_DEST,
	     SOCKS5_REP_GENERAL_FAILURE},
	    {"bind without error", IN(BIND, 0), CLASSIFY_BLAME_NONE, CLASSIFY_NEXT_DEST,
	     SOCKS5_REP_GENERAL_FAILURE},
	    {"unknown phase", IN(UPSTREAM_CONNECT + 1, UV_EIO), CLASSIFY_BLAME_NONE,
	     CLASSIFY_NEXT_DEST, SOCKS5_REP_GENERAL_FAILURE},
	};

	(void)state;
	check_rows(rows, sizeof rows / sizeof rows[0]);
}

/* The client chose the source (BIND, source=same): no failover. Busy
 * ports move on to the next destination address; the other source faults
 * answer 0x01; the destination's failures are as for a picked source. */
static void test_classify_pinned_source(void **state)
{
	static const struct row rows[] = {
	    {"pinned bind EADDRNOTAVAIL", IN(BIND, UV_EADDRNOTAVAIL, .pinned = true),
	     CLASSIFY_BLAME_UNPLUMBED, CLASSIFY_REPLY, SOCKS5_REP_GENERAL_FAILURE},
	    {"pinned ports", IN(CONNECT, UV_EADDRINUSE, .pinned = true), CLASSIFY_BLAME_PORTS,
	     CLASSIFY_NEXT_DEST, SOCKS5_REP_GENERAL_FAILURE},
	    {"pinned gone", IN(CONNECT, UV_EINVAL, .source_gone = true, .pinned = true),
	     CLASSIFY_BLAME_UNPLUMBED, CLASSIFY_REPLY, SOCKS5_REP_GENERAL_FAILURE},
	    {"pinned proxy", IN(UPSTREAM_HANDSHAKE, UV_ECONNREFUSED, .pinned = true),
	     CLASSIFY_BLAME_PROXY, CLASSIFY_REPLY, SOCKS5_REP_GENERAL_FAILURE},
	    {"pinned proxy BIND", IN(UPSTREAM_BIND, 0, .rep = 1, .pinned = true),
	     CLASSIFY_BLAME_PROXY, CLASSIFY_REPLY, SOCKS5_REP_GENERAL_FAILURE},
	    {"pinned refused", IN(CONNECT, UV_ECONNREFUSED, .pinned = true), CLASSIFY_BLAME_NONE,
	     CLASSIFY_NEXT_DEST, SOCKS5_REP_CONN_REFUSED},
	    {"pinned upstream CONNECT", IN(UPSTREAM_CONNECT, 0, .rep = 4, .pinned = true),
	     CLASSIFY_BLAME_NONE, CLASSIFY_NEXT_DEST, SOCKS5_REP_HOST_UNREACHABLE},
	    {"pinned bind EMFILE", IN(BIND, UV_EMFILE, .pinned = true), CLASSIFY_BLAME_NONE,
	     CLASSIFY_NEXT_DEST, SOCKS5_REP_GENERAL_FAILURE},
	};

	(void)state;
	check_rows(rows, sizeof rows / sizeof rows[0]);
}

static void test_classify_rep_for(void **state)
{
	(void)state;
	assert_int_equal(classify_rep_for(UV_ECONNREFUSED), SOCKS5_REP_CONN_REFUSED);
	assert_int_equal(classify_rep_for(UV_ENETUNREACH), SOCKS5_REP_NET_UNREACHABLE);
	assert_int_equal(classify_rep_for(UV_EHOSTUNREACH), SOCKS5_REP_HOST_UNREACHABLE);
	assert_int_equal(classify_rep_for(UV_ETIMEDOUT), SOCKS5_REP_TTL_EXPIRED);
	assert_int_equal(classify_rep_for(UV_EACCES), SOCKS5_REP_NOT_ALLOWED);
	assert_int_equal(classify_rep_for(UV_EPERM), SOCKS5_REP_NOT_ALLOWED);
	assert_int_equal(classify_rep_for(0), SOCKS5_REP_GENERAL_FAILURE);
	assert_int_equal(classify_rep_for(UV_EOF), SOCKS5_REP_GENERAL_FAILURE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_classify_bind_unplumbed),
	    cmocka_unit_test(test_classify_connect_ports_exhausted),
	    cmocka_unit_test(test_classify_connect_source_gone),
	    cmocka_unit_test(test_classify_connect_destination),
	    cmocka_unit_test(test_classify_upstream_proxy),
	    cmocka_unit_test(test_classify_upstream_connect),
	    cmocka_unit_test(test_classify_unknown_errors),
	    cmocka_unit_test(test_classify_pinned_source),
	    cmocka_unit_test(test_classify_rep_for),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
