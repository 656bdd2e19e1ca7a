/* Unit tests for the SOCKS5 codec (proxy/socks5.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include "socks5.h"

/* Every parser behind one signature, so split/pipeline checks are shared. */
typedef int (*parse_fn)(const uint8_t *buf, size_t len, size_t *consumed, void *out);

static int p_greeting(const uint8_t *b, size_t l, size_t *c, void *o)
{
	return socks5_parse_greeting(b, l, c, o);
}

static int p_auth(const uint8_t *b, size_t l, size_t *c, void *o)
{
	return socks5_parse_auth(b, l, c, o);
}

static int p_request(const uint8_t *b, size_t l, size_t *c, void *o)
{
	return socks5_parse_request(b, l, c, o);
}

static int p_method_reply(const uint8_t *b, size_t l, size_t *c, void *o)
{
	return socks5_parse_method_reply(b, l, c, o);
}

static int p_auth_reply(const uint8_t *b, size_t l, size_t *c, void *o)
{
	return socks5_parse_auth_reply(b, l, c, o);
}

static int p_reply(const uint8_t *b, size_t l, size_t *c, void *o)
{
	return socks5_parse_reply(b, l, c, o);
}

/* Parse a copy of exactly len bytes on the heap, so any read past the end
 * is caught by ASan (and by cmocka's guard bytes without it). */
static int parse_exact(parse_fn fn, const uint8_t *msg, size_t len, size_t *consumed, void *out)
{
	uint8_t *copy = test_malloc(len ? len : 1);
	int rc;

	if (len)
		memcpy(copy, msg, len);
	rc = fn(copy, len, consumed, out);
	test_free(copy);
	return rc;
}

/* A complete valid message: NEED_MORE for each strict prefix (consumed left
 * alone), OK with consumed == len for the whole, and the same with junk
 * after it. out holds the result of the whole parse. */
static void check_split(parse_fn fn, const uint8_t *msg, size_t len, void *out)
{
	uint8_t more[SOCKS5_AUTH_MAX + 16];
	size_t consumed;

	for (size_t k = 0; k < len; k++) {
		consumed = 0xdead;
		assert_int_equal(parse_exact(fn, msg, k, &consumed, out), SOCKS5_NEED_MORE);
		assert_int_equal(consumed, 0xdead);
	}
	assert_true(len + 5 <= sizeof(more));
	memcpy(more, msg, len);
	memset(more + len, 0x05, 5);
	consumed = 0;
	assert_int_equal(parse_exact(fn, more, len + 5, &consumed, out), SOCKS5_OK);
	assert_int_equal(consumed, len);
	consumed = 0;
	assert_int_equal(parse_exact(fn, msg, len, &consumed, out), SOCKS5_OK);
	assert_int_equal(consumed, len);
}

/* ---- server side: greeting ---- */

static void test_socks5_greeting_split(void **state)
{
	struct socks5_greeting g;
	const uint8_t one[] = {5, 1, 0};
	const uint8_t two[] = {5, 2, 0, 2};
	uint8_t many[2 + 255];

	check_split(p_greeting, one, sizeof(one), &g);
	assert_int_equal(g.nmethods, 1);
	assert_int_equal(g.methods[0], 0);
	assert_int_equal(g.err.fault, SOCKS5_FAULT_NONE);

	check_split(p_greeting, two, sizeof(two), &g);
	assert_int_equal(g.nmethods, 2);
	assert_int_equal(g.methods[1], 2);

	many[0] = 5;
	many[1] = 255;
	for (int i = 0; i < 255; i++)
		many[2 + i] = (uint8_t)(i + 1);
	check_split(p_greeting, many, sizeof(many), &g);
	assert_int_equal(g.nmethods, 255);
	assert_int_equal(g.methods[254], 255);
}

static void test_socks5_greeting_errors(void **state)
{
	struct socks5_greeting g;
	size_t consumed = 77;
	const uint8_t socks4[] = {4, 1, 0, 80, 127, 0, 0, 1, 0};
	const uint8_t zero[] = {5, 0, 0};

	/* Wrong version: detected on the first byte, closed without reply. */
	assert_int_equal(parse_exact(p_greeting, socks4, 1, &consumed, &g), SOCKS5_ERROR);
	assert_int_equal(g.err.fault, SOCKS5_FAULT_VERSION);
	assert_false(g.err.send_reply);
	assert_int_equal(parse_exact(p_greeting, socks4, sizeof(socks4), &consumed, &g),
			 SOCKS5_ERROR);
	assert_int_equal(consumed, 77);

	/* NMETHODS 0: reply X'FF' and close. */
	assert_int_equal(parse_exact(p_greeting, zero, 2, &consumed, &g), SOCKS5_ERROR);
	assert_int_equal(g.err.fault, SOCKS5_FAULT_NMETHODS);
	assert_true(g.err.send_reply);
	assert_int_equal(g.err.code, 0xff);
}

static void test_socks5_choose_method(void **state)
{
	struct socks5_greeting g = {.nmethods = 3, .methods = {0x80, 0x00, 0x02}};

	assert_int_equal(socks5_choose_method(&g, false), SOCKS5_METHOD_NONE);
	assert_int_equal(socks5_choose_method(&g, true), SOCKS5_METHOD_PASSWORD);

	g.nmethods = 1; /* only 0x80 */
	assert_int_equal(socks5_choose_method(&g, false), 0xff);
	assert_int_equal(socks5_choose_method(&g, true), 0xff);

	/* Exim sends exactly one method. */
	g.methods[0] = 0x02;
	assert_int_equal(socks5_choose_method(&g, true), 0x02);
	assert_int_equal(socks5_choose_method(&g, false), 0xff);
	g.methods[0] = 0x00;
	assert_int_equal(socks5_choose_method(&g, true), 0xff);
}

/* ---- server side: RFC 1929 ---- */

static size_t make_auth(uint8_t *out, const char *user, size_t ulen, const char *pass, size_t plen)
{
	out[0] = 1;
	out[1] = (uint8_t)ulen;
	memcpy(out + 2, user, ulen);
	out[2 + ulen] = (uint8_t)plen;
	memcpy(out + 3 + ulen, pass, plen);
	return 3 + ulen + plen;
}

static void test_socks5_auth_split(void **state)
{
	struct socks5_auth a;
	uint8_t msg[SOCKS5_AUTH_MAX];
	char u[255], p[255];
	size_t n;

	n = make_auth(msg, "mta1", 4, "s3cret", 6);
	check_split(p_auth, msg, n, &a);
	assert_int_equal(a.ulen, 4);
	assert_string_equal(a.user, "mta1");
	assert_int_equal(a.plen, 6);
	assert_string_equal(a.pass, "s3cret");

	/* PLEN 0 is accepted (Exim without a password). */
	n = make_auth(msg, "x", 1, "", 0);
	check_split(p_auth, msg, n, &a);
	assert_string_equal(a.user, "x");
	assert_int_equal(a.plen, 0);
	assert_string_equal(a.pass, "");

	/* Longest name and password; the password may hold any byte. */
	memset(u, 'u', sizeof(u));
	for (size_t i = 0; i < sizeof(p); i++)
		p[i] = (char)(i % 256);
	n = make_auth(msg, u, 255, p, 255);
	assert_int_equal(n, SOCKS5_AUTH_MAX);
	check_split(p_auth, msg, n, &a);
	assert_int_equal(a.ulen, 255);
	assert_int_equal(strlen(a.user), 255);
	assert_int_equal(a.plen, 255);
	assert_memory_equal(a.pass, p, 255);
	assert_int_equal(a.pass[255], 0);
}

static void test_socks5_auth_errors(void **state)
{
	struct socks5_auth a;
	size_t consumed = 99;
	uint8_t msg[64];
	size_t n;

	/* VER 5 where 1 is due: status failure. */
	n = make_auth(msg, "user", 4, "pw", 2);
	msg[0] = 5;
	assert_int_equal(parse_exact(p_auth, msg, 1, &consumed, &a), SOCKS5_ERROR);
	assert_int_equal(a.err.fault, SOCKS5_FAULT_VERSION);
	assert_true(a.err.send_reply);
	assert_int_equal(a.err.code, SOCKS5_AUTH_STATUS_FAIL);
	assert_int_equal(consumed, 99);

	/* ULEN 0. */
	n = make_auth(msg, "", 0, "pw", 2);
	assert_int_equal(parse_exact(p_auth, msg, n, &consumed, &a), SOCKS5_ERROR);
	assert_int_equal(a.err.fault, SOCKS5_FAULT_ULEN);
	assert_true(a.err.send_reply);
	assert_int_equal(parse_exact(p_auth, msg, 2, &consumed, &a), SOCKS5_ERROR);

	/* NUL inside the name, caught as soon as it arrives. */
	n = make_auth(msg, "ad\0min", 6, "pw", 2);
	assert_int_equal(parse_exact(p_auth, msg, n, &consumed, &a), SOCKS5_ERROR);
	assert_int_equal(a.err.fault, SOCKS5_FAULT_USER_NUL);
	assert_int_equal(parse_exact(p_auth, msg, 2 + 3, &consumed, &a), SOCKS5_ERROR);
	assert_int_equal(parse_exact(p_auth, msg, 2 + 2, &consumed, &a), SOCKS5_NEED_MORE);
	assert_int_equal(consumed, 99);

	/* A NUL in the password is data, not a fault. */
	n = make_auth(msg, "admin", 5, "p\0w", 3);
	assert_int_equal(parse_exact(p_auth, msg, n, &consumed, &a), SOCKS5_OK);
	assert_int_equal(a.plen, 3);
	assert_memory_equal(a.pass, "p\0w", 3);
}

/* ---- server side: requests ---- */

static const uint8_t req_v4[] = {5, 1, 0, 1, 192, 0, 2, 10, 0, 25};
static const uint8_t req_v6[] = {5, 1, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0,	   0,	 0,
				 0, 0, 0, 0, 0,	   0,	 0,    0,    0x11, 0x01, 0xbb};
static const uint8_t req_dom[] = {5,   1,   0,	 3,   11,  'e', 'x', 'a', 'm',
				  'p', 'l', 'e', '.', 'o', 'r', 'g', 0,	  25};
static const uint8_t req_bind[] = {5, 2, 0, 1, 192, 0, 2, 10, 0, 0};

static void test_socks5_request_split(void **state)
{
	struct socks5_request r;
	uint8_t req[SOCKS5_REQUEST_MAX];
	const uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 0x11};

	check_split(p_request, req_v4, sizeof(req_v4), &r);
	assert_int_equal(r.cmd, SOCKS5_CMD_CONNECT);
	assert_int_equal(r.dst.atyp, SOCKS5_ATYP_IPV4);
	assert_memory_equal(r.dst.u.ipv4, ((uint8_t[]){192, 0, 2, 10}), 4);
	assert_int_equal(r.dst.port, 25);

	check_split(p_request, req_v6, sizeof(req_v6), &r);
	assert_int_equal(r.dst.atyp, SOCKS5_ATYP_IPV6);
	assert_memory_equal(r.dst.u.ipv6, v6, 16);
	assert_int_equal(r.dst.port, 443);

	check_split(p_request, req_dom, sizeof(req_dom), &r);
	assert_int_equal(r.dst.atyp, SOCKS5_ATYP_DOMAIN);
	assert_int_equal(r.dst.domain_len, 11);
	assert_string_equal(r.dst.u.domain, "example.org");
	assert_int_equal(r.dst.port, 25);

	check_split(p_request, req_bind, sizeof(req_bind), &r);
	assert_int_equal(r.cmd, SOCKS5_CMD_BIND);
	assert_int_equal(r.dst.port, 0);

	/* Longest domain (255 bytes), high port. */
	req[0] = 5, req[1] = 1, req[2] = 0, req[3] = 3, req[4] = 255;
	memset(req + 5, 'a', 255);
	req[260] = 0xff, req[261] = 0xfe;
	check_split(p_request, req, SOCKS5_REQUEST_MAX, &r);
	assert_int_equal(r.dst.domain_len, 255);
	assert_int_equal(strlen(r.dst.u.domain), 255);
	assert_int_equal(r.dst.port, 0xfffe);

	/* RSV is not checked (lenient, as other proxies). */
	memcpy(req, req_v4, sizeof(req_v4));
	req[2] = 0x7f;
	check_split(p_request, req, sizeof(req_v4), &r);
	assert_int_equal(r.cmd, SOCKS5_CMD_CONNECT);
}

static void expect_request_error(const uint8_t *msg, size_t len, enum socks5_fault fault,
				 uint8_t rep, uint8_t atyp)
{
	struct socks5_request r;
	size_t consumed = 1234;

	assert_int_equal(parse_exact(p_request, msg, len, &consumed, &r), SOCKS5_ERROR);
	assert_int_equal(r.err.fault, fault);
	assert_true(r.err.send_reply);
	assert_int_equal(r.err.code, rep);
	assert_int_equal(r.dst.atyp, atyp);
	assert_int_equal(consumed, 1234);
}

static void test_socks5_request_errors(void **state)
{
	uint8_t m[SOCKS5_REQUEST_MAX];

	/* Bad VER: 0x01 at once, reply shaped IPv4. */
	memcpy(m, req_v4, sizeof(req_v4));
	m[0] = 4;
	expect_request_error(m, 1, SOCKS5_FAULT_VERSION, 0x01, SOCKS5_ATYP_IPV4);
	expect_request_error(m, sizeof(req_v4), SOCKS5_FAULT_VERSION, 0x01, SOCKS5_ATYP_IPV4);

	/* Unknown ATYP: 0x08 as soon as ATYP is in. */
	for (unsigned atyp = 0; atyp < 256; atyp++) {
		if (atyp == 1 || atyp == 3 || atyp == 4)
			continue;
		m[0] = 5, m[1] = 1, m[2] = 0, m[3] = (uint8_t)atyp;
		expect_request_error(m, 4, SOCKS5_FAULT_ATYP, 0x08, SOCKS5_ATYP_IPV4);
	}

	/* UDP ASSOCIATE and unknown commands: 0x07 once complete, with the
	 * request's ATYP so the reply has its length. */
	memcpy(m, req_v6, sizeof(req_v6));
	m[1] = 3;
	expect_request_error(m, sizeof(req_v6), SOCKS5_FAULT_COMMAND, 0x07, SOCKS5_ATYP_IPV6);
	m[1] = 9;
	expect_request_error(m, sizeof(req_v6), SOCKS5_FAULT_COMMAND, 0x07, SOCKS5_ATYP_IPV6);
	m[1] = 0;
	expect_request_error(m, sizeof(req_v6), SOCKS5_FAULT_COMMAND, 0x07, SOCKS5_ATYP_IPV6);
	memcpy(m, req_v4, sizeof(req_v4));
	m[1] = 3;
	expect_request_error(m, sizeof(req_v4), SOCKS5_FAULT_COMMAND, 0x07, SOCKS5_ATYP_IPV4);

	/* Domain of length 0: host unreachable, at once. */
	m[0] = 5, m[1] = 1, m[2] = 0, m[3] = 3, m[4] = 0, m[5] = 0, m[6] = 25;
	expect_request_error(m, 5, SOCKS5_FAULT_DOMAIN_LEN, 0x04, SOCKS5_ATYP_DOMAIN);
	expect_request_error(m, 7, SOCKS5_FAULT_DOMAIN_LEN, 0x04, SOCKS5_ATYP_DOMAIN);

	/* Domain with a NUL byte: host unreachable. */
	memcpy(m, req_dom, sizeof(req_dom));
	m[5 + 7] = 0; /* "example\0org" */
	expect_request_error(m, sizeof(req_dom), SOCKS5_FAULT_DOMAIN_NUL, 0x04, SOCKS5_ATYP_DOMAIN);
	m[5 + 10] = 0; /* last byte of the name */
	expect_request_error(m, sizeof(req_dom), SOCKS5_FAULT_DOMAIN_NUL, 0x04, SOCKS5_ATYP_DOMAIN);
}

/* greeting + auth + request in one read, as a pipelining client sends. */
static void test_socks5_pipelined(void **state)
{
	uint8_t buf[512];
	size_t n = 0, off = 0, consumed;
	struct socks5_greeting g;
	struct socks5_auth a;
	struct socks5_request r;

	memcpy(buf, (uint8_t[]){5, 2, 0, 2}, 4);
	n = 4;
	n += make_auth(buf + n, "kumo", 4, "pw", 2);
	memcpy(buf + n, req_dom, sizeof(req_dom));
	n += sizeof(req_dom);

	assert_int_equal(socks5_parse_greeting(buf, n, &consumed, &g), SOCKS5_OK);
	assert_int_equal(consumed, 4);
	assert_int_equal(socks5_choose_method(&g, true), 2);
	off += consumed;
	assert_int_equal(socks5_parse_auth(buf + off, n - off, &consumed, &a), SOCKS5_OK);
	assert_int_equal(consumed, 3 + 4 + 2);
	assert_string_equal(a.user, "kumo");
	off += consumed;
	assert_int_equal(socks5_parse_request(buf + off, n - off, &consumed, &r), SOCKS5_OK);
	assert_int_equal(consumed, sizeof(req_dom));
	assert_string_equal(r.dst.u.domain, "example.org");
	off += consumed;
	assert_int_equal(off, n);

	/* KumoMTA: BIND then CONNECT, here back to back in one buffer. */
	memcpy(buf, req_bind, sizeof(req_bind));
	memcpy(buf + sizeof(req_bind), req_v4, sizeof(req_v4));
	n = sizeof(req_bind) + sizeof(req_v4);
	assert_int_equal(socks5_parse_request(buf, n, &consumed, &r), SOCKS5_OK);
	assert_int_equal(r.cmd, SOCKS5_CMD_BIND);
	assert_int_equal(consumed, sizeof(req_bind));
	assert_int_equal(socks5_parse_request(buf + consumed, n - consumed, &consumed, &r),
			 SOCKS5_OK);
	assert_int_equal(r.cmd, SOCKS5_CMD_CONNECT);
	assert_int_equal(consumed, sizeof(req_v4));
}

/* ---- server side: replies ---- */

static struct sockaddr_storage sa_v4(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

	memset(&ss, 0, sizeof(ss));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
	return ss;
}

static struct sockaddr_storage sa_v6(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
	return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

static void test_socks5_write_small(void **state)
{
	uint8_t out[4];

	assert_int_equal(socks5_write_method(out, 0x02), 2);
	assert_memory_equal(out, ((uint8_t[]){5, 2}), 2);
	assert_int_equal(socks5_write_method(out, 0xff), 2);
	assert_memory_equal(out, ((uint8_t[]){5, 0xff}), 2);
	assert_int_equal(socks5_write_auth_status(out, true), 2);
	assert_memory_equal(out, ((uint8_t[]){1, 0}), 2);
	assert_int_equal(socks5_write_auth_status(out, false), 2);
	assert_memory_equal(out, ((uint8_t[]){1, 1}), 2);
}

static void test_socks5_write_reply(void **state)
{
	uint8_t out[SOCKS5_REPLY_MAX];
	struct sockaddr_storage v4 = sa_v4("192.0.2.10", 40000);
	struct sockaddr_storage v6 = sa_v6("2001:db8::11", 443);
	struct sockaddr_storage mapped = sa_v6("::ffff:198.51.100.7", 1080);
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	const uint8_t want_v4[] = {5, 0, 0, 1, 192, 0, 2, 10, 0x9c, 0x40};
	const uint8_t want_v6[] = {5, 0, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0,    0,	   0,
				   0, 0, 0, 0, 0,    0,	   0,	 0,    0x11, 0x01, 0xbb};
	const uint8_t want_mapped[] = {5, 0, 0, 1, 198, 51, 100, 7, 0x04, 0x38};
	const uint8_t want_null[] = {5, 5, 0, 1, 0, 0, 0, 0, 0, 0};

	assert_int_equal(socks5_write_reply(out, sizeof(out), 0, SA(v4)), 10);
	assert_memory_equal(out, want_v4, 10);
	assert_int_equal(socks5_write_reply(out, sizeof(out), 0, SA(v6)), 22);
	assert_memory_equal(out, want_v6, 22);
	assert_int_equal(socks5_write_reply(out, sizeof(out), 0, SA(mapped)), 10);
	assert_memory_equal(out, want_mapped, 10);
	assert_int_equal(socks5_write_reply(out, sizeof(out), 5, NULL), 10);
	assert_memory_equal(out, want_null, 10);

	assert_int_equal(socks5_write_reply(out, 9, 0, SA(v4)), -ENOBUFS);
	assert_int_equal(socks5_write_reply(out, 21, 0, SA(v6)), -ENOBUFS);
	assert_int_equal(socks5_write_reply(out, 2, 0, NULL), -ENOBUFS);
	assert_int_equal(socks5_write_reply(out, sizeof(out), 0, (struct sockaddr *)&un),
			 -EAFNOSUPPORT);
}

static void test_socks5_write_reply_atyp(void **state)
{
	uint8_t out[SOCKS5_REPLY_MAX];
	struct sockaddr_storage v4 = sa_v4("192.0.2.10", 40000);
	struct sockaddr_storage v6 = sa_v6("2001:db8::11", 443);
	struct sockaddr_storage mapped = sa_v6("::ffff:198.51.100.7", 1080);
	const uint8_t v4_as_v6[] = {5, 0, 0, 4,	   0,	 0,   0, 0, 0,	0,    0,
				    0, 0, 0, 0xff, 0xff, 192, 0, 2, 10, 0x9c, 0x40};
	const uint8_t v6_as_v4[] = {5, 0, 0, 1, 0, 0, 0, 0, 0x01, 0xbb};
	const uint8_t null_v6[] = {5, 4, 0, 4, 0, 0, 0, 0, 0, 0, 0,
				   0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
	const uint8_t null_dom[] = {5, 4, 0, 3, 7, '0', '.', '0', '.', '0', '.', '0', 0, 0};
	const uint8_t v4_dom[] = {5,   0,   0,	 3,   10,  '1', '9',  '2', '.',
				  '0', '.', '2', '.', '1', '0', 0x9c, 0x40};
	const uint8_t v6_dom_head[] = {5, 0, 0, 3, 12};
	int n;

	assert_int_equal(socks5_write_reply_atyp(out, sizeof(out), 0, 4, SA(v4)), 22);
	assert_memory_equal(out, v4_as_v6, 22);
	assert_int_equal(socks5_write_reply_atyp(out, sizeof(out), 0, 1, SA(v6)), 10);
	assert_memory_equal(out, v6_as_v4, 10);
	assert_int_equal(socks5_write_reply_atyp(out, sizeof(out), 0, 1, SA(mapped)), 10);
	assert_memory_equal(out, ((uint8_t[]){5, 0, 0, 1, 198, 51, 100, 7, 0x04, 0x38}), 10);
	assert_int_equal(socks5_write_reply_atyp(out, sizeof(out), 4, 4, NULL), 22);
	assert_memory_equal(out, null_v6, 22);
	n = socks5_write_reply_atyp(out, sizeof(out), 4, 3, NULL);
	assert_int_equal(n, sizeof(null_dom));
	assert_memory_equal(out, null_dom, sizeof(null_dom));
	n = socks5_write_reply_atyp(out, sizeof(out), 0, 3, SA(v4));
	assert_int_equal(n, sizeof(v4_dom));
	assert_memory_equal(out, v4_dom, sizeof(v4_dom));
	n = socks5_write_reply_atyp(out, sizeof(out), 0, 3, SA(v6));
	assert_int_equal(n, 4 + 1 + 12 + 2);
	assert_memory_equal(out, v6_dom_head, 5);
	assert_memory_equal(out + 5, "2001:db8::11", 12);
	assert_memory_equal(out + 17, ((uint8_t[]){0x01, 0xbb}), 2);

	assert_int_equal(socks5_write_reply_atyp(out, sizeof(out), 0, 2, SA(v4)), -EINVAL);
	assert_int_equal(socks5_write_reply_atyp(out, 21, 0, 4, SA(v4)), -ENOBUFS);
	assert_int_equal(socks5_write_reply_atyp(out, 16, 0, 3, SA(v4)), -ENOBUFS);
}

/* SPEC 5, Exim: a reply has exactly the length of the request it answers,
 * for success and failure alike. */
static void test_socks5_reply_matches_request_length(void **state)
{
	const uint8_t *reqs[] = {req_v4, req_v6, req_bind};
	const size_t lens[] = {sizeof(req_v4), sizeof(req_v6), sizeof(req_bind)};
	struct sockaddr_storage bnds[3] = {sa_v4("192.0.2.10", 40000), sa_v6("2001:db8::11", 50000),
					   sa_v6("::ffff:192.0.2.10", 1)};
	uint8_t out[SOCKS5_REPLY_MAX];
	struct socks5_request r;
	size_t consumed;

	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(socks5_parse_request(reqs[i], lens[i], &consumed, &r), SOCKS5_OK);
		for (size_t b = 0; b < 3; b++)
			assert_int_equal(
			    socks5_write_reply_atyp(out, sizeof(out), 0, r.dst.atyp, SA(bnds[b])),
			    lens[i]);
		assert_int_equal(socks5_write_reply_atyp(out, sizeof(out), 5, r.dst.atyp, NULL),
				 lens[i]);
	}
}

/* ---- client side ---- */

static void test_socks5_client_writers(void **state)
{
	uint8_t out[SOCKS5_REQUEST_MAX + 8];
	struct socks5_addr a;
	char big[256];

	assert_int_equal(socks5_write_greeting(out, true, false), 3);
	assert_memory_equal(out, ((uint8_t[]){5, 1, 0}), 3);
	assert_int_equal(socks5_write_greeting(out, false, true), 3);
	assert_memory_equal(out, ((uint8_t[]){5, 1, 2}), 3);
	assert_int_equal(socks5_write_greeting(out, true, true), 4);
	assert_memory_equal(out, ((uint8_t[]){5, 2, 0, 2}), 4);
	assert_int_equal(socks5_write_greeting(out, false, false), -EINVAL);

	assert_int_equal(socks5_write_auth(out, sizeof(out), "relay", 5, "secret", 6), 14);
	assert_memory_equal(out, "\x01\x05relay\x06secret", 14);
	assert_int_equal(socks5_write_auth(out, sizeof(out), "r", 1, NULL, 0), 4);
	assert_memory_equal(out, "\x01\x01r\x00", 4);
	assert_int_equal(socks5_write_auth(out, sizeof(out), "", 0, "x", 1), -EINVAL);
	memset(big, 'b', sizeof(big));
	assert_int_equal(socks5_write_auth(out, sizeof(out), big, 256, "x", 1), -EINVAL);
	assert_int_equal(socks5_write_auth(out, sizeof(out), "u", 1, big, 256), -EINVAL);
	assert_int_equal(socks5_write_auth(out, sizeof(out), "a\0b", 3, "x", 1), -EINVAL);
	assert_int_equal(socks5_write_auth(out, 13, "relay", 5, "secret", 6), -ENOBUFS);

	memset(&a, 0, sizeof(a));
	a.atyp = SOCKS5_ATYP_IPV4;
	memcpy(a.u.ipv4, ((uint8_t[]){192, 0, 2, 10}), 4);
	a.port = 25;
	assert_int_equal(socks5_write_request(out, sizeof(out), 1, &a), 10);
	assert_memory_equal(out, req_v4, 10);
	a.port = 0;
	assert_int_equal(socks5_write_request(out, sizeof(out), 2, &a), 10);
	assert_memory_equal(out, req_bind, 10);
	assert_int_equal(socks5_write_request(out, 9, 2, &a), -ENOBUFS);

	a.atyp = SOCKS5_ATYP_DOMAIN;
	a.domain_len = 11;
	memcpy(a.u.domain, "example.org", 12);
	a.port = 25;
	assert_int_equal(socks5_write_request(out, sizeof(out), 1, &a), sizeof(req_dom));
	assert_memory_equal(out, req_dom, sizeof(req_dom));
	a.domain_len = 0;
	assert_int_equal(socks5_write_request(out, sizeof(out), 1, &a), -EINVAL);
	a.domain_len = 13; /* would include the terminating NUL */
	assert_int_equal(socks5_write_request(out, sizeof(out), 1, &a), -EINVAL);
	a.atyp = 2;
	assert_int_equal(socks5_write_request(out, sizeof(out), 1, &a), -EINVAL);
	assert_int_equal(socks5_write_request(out, sizeof(out), 1, NULL), -EINVAL);
}

static void test_socks5_client_parsers(void **state)
{
	struct socks5_method_reply m;
	struct socks5_auth_reply ar;
	struct socks5_reply r;
	size_t consumed = 5;
	const uint8_t dom_reply[] = {5, 0, 0, 3, 4, 'h', 'o', 's', 't', 0x12, 0x34};
	uint8_t bad[sizeof(req_v4)];

	check_split(p_method_reply, (uint8_t[]){5, 2}, 2, &m);
	assert_int_equal(m.method, 2);
	check_split(p_method_reply, (uint8_t[]){5, 0xff}, 2, &m);
	assert_int_equal(m.method, 0xff);
	assert_int_equal(parse_exact(p_method_reply, (uint8_t[]){1, 0}, 1, &consumed, &m),
			 SOCKS5_ERROR);
	assert_int_equal(m.err.fault, SOCKS5_FAULT_VERSION);
	assert_false(m.err.send_reply);

	check_split(p_auth_reply, (uint8_t[]){1, 0}, 2, &ar);
	assert_int_equal(ar.status, 0);
	check_split(p_auth_reply, (uint8_t[]){1, 1}, 2, &ar);
	assert_int_equal(ar.status, 1);
	check_split(p_auth_reply, (uint8_t[]){5, 0}, 2, &ar); /* lenient */
	assert_int_equal(ar.status, 0);
	assert_int_equal(parse_exact(p_auth_reply, (uint8_t[]){2, 0}, 2, &consumed, &ar),
			 SOCKS5_ERROR);
	assert_int_equal(consumed, 5);

	/* Replies share the request layout; REP is data, not an error. */
	check_split(p_reply, req_v4, sizeof(req_v4), &r);
	assert_int_equal(r.rep, 1);
	assert_int_equal(r.bnd.atyp, 1);
	assert_int_equal(r.bnd.port, 25);
	check_split(p_reply, req_v6, sizeof(req_v6), &r);
	assert_int_equal(r.bnd.atyp, 4);
	assert_int_equal(r.bnd.port, 443);
	check_split(p_reply, dom_reply, sizeof(dom_reply), &r);
	assert_int_equal(r.rep, 0);
	assert_string_equal(r.bnd.u.domain, "host");
	assert_int_equal(r.bnd.port, 0x1234);

	memcpy(bad, req_v4, sizeof(bad));
	bad[0] = 4;
	assert_int_equal(parse_exact(p_reply, bad, 1, &consumed, &r), SOCKS5_ERROR);
	assert_int_equal(r.err.fault, SOCKS5_FAULT_VERSION);
	bad[0] = 5, bad[3] = 7;
	assert_int_equal(parse_exact(p_reply, bad, 4, &consumed, &r), SOCKS5_ERROR);
	assert_int_equal(r.err.fault, SOCKS5_FAULT_ATYP);
	assert_int_equal(parse_exact(p_reply, (uint8_t[]){5, 0, 0, 3, 0}, 5, &consumed, &r),
			 SOCKS5_ERROR);
	assert_int_equal(r.err.fault, SOCKS5_FAULT_DOMAIN_LEN);
	assert_int_equal(
	    parse_exact(p_reply, (uint8_t[]){5, 0, 0, 3, 2, 'a', 0, 0, 1}, 9, &consumed, &r),
	    SOCKS5_ERROR);
	assert_int_equal(r.err.fault, SOCKS5_FAULT_DOMAIN_NUL);
	assert_false(r.err.send_reply);
	assert_int_equal(consumed, 5);
}

/* ---- round trips ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 16);
}

static void random_addr(struct socks5_addr *a)
{
	memset(a, 0, sizeof(*a));
	a->port = (uint16_t)rnd();
	switch (rnd() % 3) {
	case 0:
		a->atyp = SOCKS5_ATYP_IPV4;
		for (int i = 0; i < 4; i++)
			a->u.ipv4[i] = (uint8_t)rnd();
		break;
	case 1:
		a->atyp = SOCKS5_ATYP_IPV6;
		for (int i = 0; i < 16; i++)
			a->u.ipv6[i] = (uint8_t)rnd();
		break;
	default:
		a->atyp = SOCKS5_ATYP_DOMAIN;
		a->domain_len = (uint8_t)(1 + rnd() % 255);
		for (int i = 0; i < a->domain_len; i++)
			a->u.domain[i] = (char)(1 + rnd() % 255);
		break;
	}
}

static void assert_addr_equal(const struct socks5_addr *x, const struct socks5_addr *y)
{
	assert_int_equal(x->atyp, y->atyp);
	assert_int_equal(x->port, y->port);
	if (x->atyp == SOCKS5_ATYP_IPV4)
		assert_memory_equal(x->u.ipv4, y->u.ipv4, 4);
	else if (x->atyp == SOCKS5_ATYP_IPV6)
		assert_memory_equal(x->u.ipv6, y->u.ipv6, 16);
	else {
		assert_int_equal(x->domain_len, y->domain_len);
		assert_memory_equal(x->u.domain, y->u.domain, x->domain_len);
		assert_int_equal(y->u.domain[y->domain_len], 0);
	}
}

static void test_socks5_request_round_trip(void **state)
{
	uint8_t buf[SOCKS5_REQUEST_MAX];
	struct socks5_addr a;
	struct socks5_request r;
	struct socks5_reply rep;
	size_t consumed;
	int n;

	for (int i = 0; i < 20000; i++) {
		uint8_t cmd = (rnd() & 1) ? SOCKS5_CMD_CONNECT : SOCKS5_CMD_BIND;

		random_addr(&a);
		n = socks5_write_request(buf, sizeof(buf), cmd, &a);
		assert_true(n > 0);
		assert_int_equal(socks5_parse_request(buf, (size_t)n, &consumed, &r), SOCKS5_OK);
		assert_int_equal(consumed, (size_t)n);
		assert_int_equal(r.cmd, cmd);
		assert_addr_equal(&a, &r.dst);
		/* A prefix is never enough. */
		assert_int_equal(
		    socks5_parse_request(buf, (size_t)n - 1 - rnd() % (size_t)n, &consumed, &r),
		    SOCKS5_NEED_MORE);
		/* The same bytes read as a reply give the same address. */
		assert_int_equal(socks5_parse_reply(buf, (size_t)n, &consumed, &rep), SOCKS5_OK);
		assert_int_equal(rep.rep, cmd);
		assert_addr_equal(&a, &rep.bnd);
	}
}

static void test_socks5_reply_round_trip(void **state)
{
	uint8_t buf[SOCKS5_REPLY_MAX];
	struct socks5_addr a, back;
	struct socks5_reply rep;
	struct sockaddr_storage ss;
	socklen_t salen;
	size_t consumed;
	int n;

	for (int i = 0; i < 20000; i++) {
		do
			random_addr(&a);
		while (a.atyp == SOCKS5_ATYP_DOMAIN);
		assert_int_equal(socks5_addr_to_sockaddr(&a, &ss, &salen), 0);
		assert_int_equal(salen, a.atyp == SOCKS5_ATYP_IPV4 ? sizeof(struct sockaddr_in)
								   : sizeof(struct sockaddr_in6));
		assert_int_equal(socks5_addr_from_sockaddr(&back, SA(ss)), 0);
		assert_addr_equal(&a, &back);

		n = socks5_write_reply_atyp(buf, sizeof(buf), (uint8_t)(rnd() % 9), a.atyp, SA(ss));
		assert_true(n > 0);
		assert_int_equal(socks5_parse_reply(buf, (size_t)n, &consumed, &rep), SOCKS5_OK);
		assert_int_equal(consumed, (size_t)n);
		assert_addr_equal(&a, &rep.bnd);
	}
}

/* ---- addresses and names ---- */

static void test_socks5_addr_helpers(void **state)
{
	struct socks5_addr a;
	struct sockaddr_storage ss = sa_v6("2001:db8::1", 587);
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	char text[SOCKS5_ADDR_STRLEN];
	socklen_t salen;

	assert_int_equal(socks5_addr_from_sockaddr(&a, SA(ss)), 0);
	assert_string_equal(socks5_addr_str(&a, text, sizeof(text)), "[2001:db8::1]:587");
	ss = sa_v4("192.0.2.1", 25);
	assert_int_equal(socks5_addr_from_sockaddr(&a, SA(ss)), 0);
	assert_string_equal(socks5_addr_str(&a, text, sizeof(text)), "192.0.2.1:25");
	assert_int_equal(socks5_addr_from_sockaddr(&a, (struct sockaddr *)&un), -EAFNOSUPPORT);

	memset(&a, 0, sizeof(a));
	a.atyp = SOCKS5_ATYP_DOMAIN;
	a.domain_len = 255;
	memset(a.u.domain, 'z', 255);
	a.port = 65535;
	socks5_addr_str(&a, text, sizeof(text));
	assert_int_equal(strlen(text), 255 + 6);
	assert_string_equal(text + 255, ":65535");
	assert_int_equal(socks5_addr_to_sockaddr(&a, &ss, &salen), -EINVAL);

	assert_string_equal(socks5_rep_str(0), "succeeded");
	assert_string_equal(socks5_rep_str(5), "connection refused");
	assert_string_equal(socks5_rep_str(8), "address type not supported");
	assert_string_equal(socks5_rep_str(0x42), "unassigned reply code");
	assert_string_equal(socks5_fault_str(SOCKS5_FAULT_ATYP), "unsupported address type");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_socks5_greeting_split),
	    cmocka_unit_test(test_socks5_greeting_errors),
	    cmocka_unit_test(test_socks5_choose_method),
	    cmocka_unit_test(test_socks5_auth_split),
	    cmocka_unit_test(test_socks5_auth_errors),
	    cmocka_unit_test(test_socks5_request_split),
	    cmocka_unit_test(test_socks5_request_errors),
	    cmocka_unit_test(test_socks5_pipelined),
	    cmocka_unit_test(test_socks5_write_small),
	    cmocka_unit_test(test_socks5_write_reply),
	    cmocka_unit_test(test_socks5_write_reply_atyp),
	    cmocka_unit_test(test_socks5_reply_matches_request_length),
	    cmocka_unit_test(test_socks5_client_writers),
	    cmocka_unit_test(test_socks5_client_parsers),
	    cmocka_unit_test(test_socks5_request_round_trip),
	    cmocka_unit_test(test_socks5_reply_round_trip),
	    cmocka_unit_test(test_socks5_addr_helpers),
	};

	return cmocka_run_group_tests_name("socks5", tests, NULL, NULL);
}
