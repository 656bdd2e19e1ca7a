/* Unit tests of conf/: value parsers, the loader and its error messages,
 * defaults, pools, the embedded default and the shipped examples. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf.h"
#include "internal.h"

#ifndef EXAMPLES_DIR
#error "EXAMPLES_DIR must point at examples/ (set by tests/unit/meson.build)"
#endif

/* ---- helpers ---- */

static struct conf *load_ok(const char *text)
{
	char err[CONF_ERR_MAX] = "";
	struct conf *c = NULL;
	int rc = conf_load_string(text, "t.ini", &c, err, sizeof(err));

	if (rc != 0)
		fail_msg("expected the config to load, got %d: %s\n--- config ---\n%s", rc, err,
			 text);
	assert_non_null(c);
	return c;
}

/* Loads `text`, expects -EINVAL, *out untouched and every `want` in the message. */
static void expect_error(const char *text, ...)
{
	char err[CONF_ERR_MAX] = "";
	struct conf sentinel;
	struct conf *c = &sentinel;
	const char *want;
	va_list ap;

	int rc = conf_load_string(text, "t.ini", &c, err, sizeof(err));
	if (rc != -EINVAL)
		fail_msg("expected -EINVAL, got %d (%s)\n--- config ---\n%s", rc, err, text);
	assert_ptr_equal(c, &sentinel);
	va_start(ap, text);
	while ((want = va_arg(ap, const char *)) != NULL) {
		if (!strstr(err, want)) {
			va_end(ap);
			fail_msg("error message lacks '%s'\n  got: %s\n--- config ---\n%s", want,
				 err, text);
		}
	}
	va_end(ap);
}

#define EXPECT_ERROR(text, ...) expect_error(text, __VA_ARGS__, (const char *)NULL)

static const char *addr_text(const struct sockaddr_storage *ss)
{
	static char buf[8][64];
	static int n;

	n = (n + 1) % 8;
	return conf_addr_str((const struct sockaddr *)ss, buf[n], sizeof(buf[n]));
}

static uint16_t port_of(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

static const struct conf_source *source(const struct conf *c, const char *name)
{
	int i = conf_find_source(c, name);

	if (i < 0)
		fail_msg("no source '%s'", name);
	return &c->sources[i];
}

static const struct conf_pool *pool(const struct conf *c, const char *name)
{
	int i = conf_find_pool(c, name);

	if (i < 0)
		fail_msg("no pool '%s'", name);
	return &c->pools[i];
}

static const char *entry_name(const struct conf *c, const struct conf_pool *p, size_t e)
{
	assert_true(e < p->n_entries);
	assert_true(p->entries[e].source < c->n_sources);
	return c->sources[p->entries[e].source].name;
}

static struct sockaddr_storage sa(const char *text)
{
	struct sockaddr_storage ss;

	if (conf_parse_addr_port(text, false, &ss))
		fail_msg("bad test address %s", text);
	return ss;
}

static bool match(const struct conf_cidr_list *list, const char *addr)
{
	struct sockaddr_storage ss = sa(addr);
	return conf_cidr_list_match(list, (const struct sockaddr *)&ss);
}

static void assert_rule(const struct conf_suspend_rule *r, bool enabled, uint32_t count,
			uint64_t period_ms, uint64_t duration_ms)
{
	assert_int_equal(r->enabled, enabled);
	assert_int_equal(r->trigger.count, count);
	assert_int_equal(r->trigger.period_ms, period_ms);
	assert_int_equal(r->duration_ms, duration_ms);
}

/* ---- durations ---- */

static void test_duration_units(void **state)
{
	static const struct {
		const char *text;
		uint64_t ms;
	} ok[] = {
	    {"0", 0},
	    {"0s", 0},
	    {"1ms", 1},
	    {"250 ms", 250},
	    {"1s", 1000},
	    {"1sec", 1000},
	    {"2secs", 2000},
	    {"90s", 90000},
	    {"1m", 60000},
	    {"1min", 60000},
	    {"5 mins", 300000},
	    {"1h", 3600000},
	    {"2hr", 7200000},
	    {"3hrs", 10800000},
	    {"1d", 86400000},
	    {"1day", 86400000},
	    {"2 days", 172800000},
	    {" 10s ", 10000},
	    {"1,000ms", 1000},
	    {"1_500ms", 1500},
	    {"5M", 300000},
	    {"18446744073709551615ms", UINT64_MAX},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		uint64_t ms = 12345;
		if (conf_parse_duration(ok[i].text, &ms) != 0)
			fail_msg("'%s' rejected", ok[i].text);
		if (ms != ok[i].ms)
			fail_msg("'%s' gave %llu, want %llu", ok[i].text, (unsigned long long)ms,
				 (unsigned long long)ok[i].ms);
	}
}

static void test_duration_rejects_bad_forms(void **state)
{
	static const char *const bad[] = {
	    "",	   " ",	  "5",	   "s",	 "-5s",		  "5x",	   "5 m s", "1.5s", "5m30s",
	    ",5s", "5,s", "1,,0s", "ms", "5 minutes ago", "0x10s", "+5s",
	};
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t ms = 7;
		if (conf_parse_duration(bad[i], &ms) != -EINVAL)
			fail_msg("'%s' accepted", bad[i]);
		assert_int_equal(ms, 7);
	}
	assert_int_equal(conf_parse_duration(NULL, NULL), -EINVAL);
}

static void test_duration_overflow(void **state)
{
	uint64_t ms;
	(void)state;
	assert_int_equal(conf_parse_duration("18446744073709551616ms", &ms), -EINVAL);
	assert_int_equal(conf_parse_duration("213503982334d", &ms), 0);
	assert_int_equal(ms, 213503982334ull * 86400000ull);
	assert_int_equal(conf_parse_duration("213503982335d", &ms), -EINVAL);
	assert_int_equal(conf_parse_duration("99999999999999999999999s", &ms), -EINVAL);
}

/* ---- thresholds ---- */

static void test_threshold_forms(void **state)
{
	static const struct {
		const char *text;
		uint32_t count;
		uint64_t period_ms;
	} ok[] = {
	    {"immediate", 0, 0},	 {" Immediate ", 0, 0},
	    {"3/1m", 3, 60000},		 {"10/s", 10, 1000},
	    {"1,000/hr", 1000, 3600000}, {"10_000/d", 10000, 86400000},
	    {"3/5m", 3, 300000},	 {"3/2s", 3, 2000},
	    {"5/500ms", 5, 500},	 {"3 / 5 mins", 3, 300000},
	    {"1/1d", 1, 86400000},	 {"4294967295/h", UINT32_MAX, 3600000},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct conf_threshold t = {99, 99};
		if (conf_parse_threshold(ok[i].text, &t) != 0)
			fail_msg("'%s' rejected", ok[i].text);
		if (t.count != ok[i].count || t.period_ms != ok[i].period_ms)
			fail_msg("'%s' gave %u/%llu", ok[i].text, t.count,
				 (unsigned long long)t.period_ms);
	}
}

static void test_threshold_rejects_bad_forms(void **state)
{
	static const char *const bad[] = {
	    "",
	    "0/1m",
	    "3/0s",
	    "3/0",
	    "3",
	    "/1m",
	    "3/",
	    "3/1x",
	    "three/1m",
	    "3/1m/2",
	    "-1/1m",
	    "4294967296/1s",
	    "immediately",
	    "1,000/",
	    "1,,000/hr",
	    "3/m5",
	    "3/1.5m",
	};
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct conf_threshold t = {99, 99};
		if (conf_parse_threshold(bad[i], &t) != -EINVAL)
			fail_msg("'%s' accepted", bad[i]);
		assert_int_equal(t.count, 99);
	}
}

/* ---- booleans and integers ---- */

static void test_bool_values(void **state)
{
	static const char *const yes[] = {"yes", "true", "on", "1", " YES ", "True"};
	static const char *const no[] = {"no", "false", "off", "0", "Off"};
	static const char *const bad[] = {"", "y", "2", "enabled", "yes no"};
	bool b;
	(void)state;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		b = false;
		assert_int_equal(conf_parse_bool(yes[i], &b), 0);
		assert_true(b);
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		b = true;
		assert_int_equal(conf_parse_bool(no[i], &b), 0);
		assert_false(b);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(conf_parse_bool(bad[i], &b), -EINVAL);
}

static void test_uint_separators_and_max(void **state)
{
	uint64_t v;
	(void)state;
	assert_int_equal(conf_parse_uint("0", 10, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(conf_parse_uint("20,000", UINT32_MAX, &v), 0);
	assert_int_equal(v, 20000);
	assert_int_equal(conf_parse_uint("1_000_000", UINT32_MAX, &v), 0);
	assert_int_equal(v, 1000000);
	assert_int_equal(conf_parse_uint(" 42 ", 42, &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(conf_parse_uint("43", 42, &v), -EINVAL);
	assert_int_equal(conf_parse_uint("18446744073709551615", UINT64_MAX, &v), 0);
	assert_int_equal(v, UINT64_MAX);
	assert_int_equal(conf_parse_uint("18446744073709551616", UINT64_MAX, &v), -EINVAL);
	assert_int_equal(conf_parse_uint(",1", 100, &v), -EINVAL);
	assert_int_equal(conf_parse_uint("1,", 100, &v), -EINVAL);
	assert_int_equal(conf_parse_uint("1__0", 100, &v), -EINVAL);
	assert_int_equal(conf_parse_uint("-1", 100, &v), -EINVAL);
	assert_int_equal(conf_parse_uint("1 0", 100, &v), -EINVAL);
	assert_int_equal(conf_parse_uint("", 100, &v), -EINVAL);
}

/* ---- addresses ---- */

static void test_addr_port_forms(void **state)
{
	struct sockaddr_storage ss;
	(void)state;
	assert_int_equal(conf_parse_addr_port("192.0.2.1:1080", true, &ss), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(port_of(&ss), 1080);
	assert_string_equal(addr_text(&ss), "192.0.2.1:1080");

	assert_int_equal(conf_parse_addr_port(" [2001:db8::1]:65535 ", true, &ss), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(port_of(&ss), 65535);
	assert_string_equal(addr_text(&ss), "[2001:db8::1]:65535");

	assert_int_equal(conf_parse_addr_port("127.0.0.1:0", true, &ss), 0);
	assert_int_equal(port_of(&ss), 0);
	assert_int_equal(conf_parse_addr_port("[::1]:0", true, &ss), 0);
	assert_int_equal(port_of(&ss), 0);

	/* Without need_port a bare address is fine, IPv6 with or without brackets. */
	assert_int_equal(conf_parse_addr_port("2001:db8::11", false, &ss), 0);
	assert_string_equal(addr_text(&ss), "2001:db8::11");
	assert_int_equal(conf_parse_addr_port("[2001:db8::11]", false, &ss), 0);
	assert_string_equal(addr_text(&ss), "2001:db8::11");
	assert_int_equal(conf_parse_addr_port("192.0.2.9", false, &ss), 0);
	assert_int_equal(port_of(&ss), 0);

	static const char *const bad_need_port[] = {
	    "192.0.2.1",    "::1",	  "[::1]",	    "192.0.2.1:",  "192.0.2.1:65536",
	    "192.0.2.1:-1", "[::1]:",	  "[::1]80",	    "[::1",	   "[192.0.2.1]:80",
	    "localhost:80", "192.0.2:80", "192.0.2.256:80", "1.2.3.4:80x", "1.2.3.4:999999",
	    "fe80::1%eth0", "",		  "2001:db8::1:80",
	};
	for (size_t i = 0; i < sizeof(bad_need_port) / sizeof(bad_need_port[0]); i++)
		if (conf_parse_addr_port(bad_need_port[i], true, &ss) != -EINVAL)
			fail_msg("'%s' accepted", bad_need_port[i]);
}

static void test_addr_without_port(void **state)
{
	struct sockaddr_storage ss;
	(void)state;
	assert_int_equal(conf_parse_addr("192.0.2.10", &ss), 0);
	assert_string_equal(addr_text(&ss), "192.0.2.10");
	assert_int_equal(conf_parse_addr("2001:DB8::0011", &ss), 0);
	assert_string_equal(addr_text(&ss), "2001:db8::11");
	assert_int_equal(conf_parse_addr("[::1]", &ss), 0);
	assert_string_equal(addr_text(&ss), "::1");
	assert_int_equal(conf_parse_addr("192.0.2.10:80", &ss), -EINVAL);
	assert_int_equal(conf_parse_addr("[::1]:80", &ss), -EINVAL);
	assert_int_equal(conf_parse_addr("192.0.2", &ss), -EINVAL);
	assert_int_equal(conf_parse_addr("example.com", &ss), -EINVAL);
	assert_int_equal(conf_parse_addr("", &ss), -EINVAL);
}

static void test_addr_str_formats(void **state)
{
	struct sockaddr_storage ss;
	char buf[64];
	(void)state;
	ss = sa("[::]:1080");
	assert_string_equal(conf_addr_str((struct sockaddr *)&ss, buf, sizeof(buf)), "[::]:1080");
	ss = sa("0.0.0.0");
	assert_string_equal(conf_addr_str((struct sockaddr *)&ss, buf, sizeof(buf)), "0.0.0.0");
	assert_null(conf_addr_str((struct sockaddr *)&ss, NULL, 0));
}

/* ---- CIDRs ---- */

static void test_cidr_parse(void **state)
{
	struct conf_cidr n;
	char want[16] = {0};
	(void)state;
	assert_int_equal(conf_parse_cidr("10.0.0.0/8", &n), 0);
	assert_int_equal(n.family, AF_INET);
	assert_int_equal(n.prefix_len, 8);
	assert_memory_equal(n.addr, "\x0a\x00\x00\x00", 4);

	assert_int_equal(conf_parse_cidr("192.0.2.7", &n), 0);
	assert_int_equal(n.prefix_len, 32);
	assert_memory_equal(n.addr, "\xc0\x00\x02\x07", 4);

	assert_int_equal(conf_parse_cidr("2001:db8::1", &n), 0);
	assert_int_equal(n.family, AF_INET6);
	assert_int_equal(n.prefix_len, 128);

	/* Host bits beyond the prefix are masked. */
	assert_int_equal(conf_parse_cidr("10.1.2.3/8", &n), 0);
	assert_memory_equal(n.addr, "\x0a\x00\x00\x00", 4);
	assert_int_equal(conf_parse_cidr("192.168.1.255/25", &n), 0);
	assert_memory_equal(n.addr, "\xc0\xa8\x01\x80", 4);
	assert_int_equal(conf_parse_cidr("fe80::1/10", &n), 0);
	want[0] = (char)0xfe;
	want[1] = (char)0x80;
	assert_memory_equal(n.addr, want, 16);

	/* A v4-mapped network is stored as IPv4. */
	assert_int_equal(conf_parse_cidr("::ffff:10.0.0.0/104", &n), 0);
	assert_int_equal(n.family, AF_INET);
	assert_int_equal(n.prefix_len, 8);
	assert_memory_equal(n.addr, "\x0a\x00\x00\x00", 4);

	assert_int_equal(conf_parse_cidr(" 0.0.0.0/0 ", &n), 0);
	assert_int_equal(n.prefix_len, 0);

	static const char *const bad[] = {
	    "10.0.0.0/33", "::/129",	      "10.0.0.0/", "/8",
	    "10.0.0.0/8x", "fe80::1%eth0/64", "10.0.0/8",  "",
	    "10.0.0.0/-1", "10.0.0.0/1,0",    "[::1]/128",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (conf_parse_cidr(bad[i], &n) != -EINVAL)
			fail_msg("'%s' accepted", bad[i]);
}

static void test_cidr_list_parse(void **state)
{
	struct conf_cidr_list l = {NULL, 0};
	(void)state;
	assert_int_equal(conf_parse_cidr_list("10.0.0.0/8, ::1/128", &l), 0);
	assert_int_equal(l.count, 2);
	assert_int_equal(l.items[0].family, AF_INET);
	assert_int_equal(l.items[1].family, AF_INET6);
	free(l.items);

	assert_int_equal(conf_parse_cidr_list("10.0.0.0/8;192.0.2.0/24 ,\t::1", &l), 0);
	assert_int_equal(l.count, 3);
	assert_int_equal(l.items[1].prefix_len, 24);
	assert_int_equal(l.items[2].prefix_len, 128);
	free(l.items);

	l.items = NULL;
	l.count = 77;
	static const char *const bad[] = {"",
					  " ",
					  "10.0.0.0/8,,::1",
					  "10.0.0.0/8,",
					  ";10.0.0.0/8",
					  "10.0.0.0/8 ::1",
					  "10.0.0.0/8, nope"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (conf_parse_cidr_list(bad[i], &l) != -EINVAL)
			fail_msg("'%s' accepted", bad[i]);
		assert_null(l.items);
		assert_int_equal(l.count, 77);
	}
}

static void test_cidr_list_match(void **state)
{
	struct conf_cidr_list l;
	(void)state;
	assert_int_equal(conf_parse_cidr_list("10.0.0.0/8, 192.168.1.0/25, 2001:db8::/127", &l), 0);
	assert_true(match(&l, "10.0.0.0"));
	assert_true(match(&l, "10.255.255.255"));
	assert_false(match(&l, "11.0.0.0"));
	assert_false(match(&l, "9.255.255.255"));
	assert_true(match(&l, "192.168.1.127"));
	assert_false(match(&l, "192.168.1.128"));
	assert_true(match(&l, "2001:db8::1"));
	assert_false(match(&l, "2001:db8::2"));
	/* v4-mapped IPv6 peers are IPv4 peers. */
	assert_true(match(&l, "::ffff:10.1.2.3"));
	assert_false(match(&l, "::ffff:11.1.2.3"));
	assert_false(match(&l, "::1"));
	free(l.items);

	assert_int_equal(conf_parse_cidr_list("0.0.0.0/0", &l), 0);
	assert_true(match(&l, "203.0.113.9"));
	assert_true(match(&l, "::ffff:203.0.113.9"));
	assert_false(match(&l, "2001:db8::1"));
	free(l.items);

	assert_int_equal(conf_parse_cidr_list("::/0", &l), 0);
	assert_true(match(&l, "2001:db8::1"));
	assert_false(match(&l, "::ffff:203.0.113.9"));
	free(l.items);

	assert_false(conf_cidr_list_match(NULL, NULL));
}

/* ---- the loader: basics ---- */

static const char spec_example[] =
    "[server]\n"
    "listen = 0.0.0.0:1080            ; repeatable; IPv4 and [IPv6]:port\n"
    "listen = 0.0.0.0:1081 pool=warm  ; a listener may carry its own pool\n"
    "listen = 0.0.0.0:1082 source=same ; egress from the local address\n"
    "admin_listen = 127.0.0.1:9180    ; empty = off\n"
    "allow = 10.0.0.0/8, ::1/128      ; client CIDRs (default: loopback only)\n"
    "auth = none                      ; none | password\n"
    "default_pool = main\n"
    "handshake_timeout = 10s\n"
    "connect_timeout = 30s\n"
    "idle_timeout = 10m\n"
    "max_connections = 20000\n"
    "bind_unlisted = deny             ; BIND to an unlisted address: deny | allow\n"
    "deny_destinations = 169.254.0.0/16, fe80::/10\n"
    "allow_destinations =             ; explicit exceptions to the built-in policy\n"
    "stall_timeout = 5m               ; unwritten data that makes no progress\n"
    "reload_on_change = no            ; yes: reload when the config file changes\n"
    "tcp_keepalive = 5m               ; 0 = off\n"
    "on_pool_exhausted = reply        ; reply 0x01 | refuse\n"
    "log_level = info                 ; error | warn | info | debug\n"
    "log_target = stderr              ; stderr | syslog | journald\n"
    "log_timestamps = on              ; RFC 3339 times on stderr lines\n"
    "access_log = off                 ; off | on | FILE\n"
    "workers = auto                   ; event-loop threads\n"
    "relay = splice                   ; splice | copy\n"
    "max_connections_per_client = 0   ; per client address; 0 = off\n"
    "shutdown_timeout = 30s           ; SIGTERM drain limit\n"
    "admin_token =                    ; bearer token for admin POSTs\n"
    "user =                           ; drop privileges to this user\n"
    "\n"
    "[defaults]                       ; inherited by every source\n"
    "suspend_when_unplumbed.trigger = immediate\n"
    "suspend_when_unplumbed.duration = 5m\n"
    "\n"
    "[source \"ip-1\"]\n"
    "address = 192.0.2.10\n"
    "suspend_when_unplumbed.trigger = 3/1m   ; N failures within a rolling window\n"
    "suspend_when_unplumbed.duration = 5m\n"
    "max_connections = 500\n"
    "rate = 100/s\n"
    "resume_when_plumbed = no\n"
    "\n"
    "[source \"ip-2\"]\n"
    "address = 192.0.2.11\n"
    "\n"
    "[source \"ip-3\"]\n"
    "address = 2001:db8::11\n"
    "\n"
    "[source \"v6net\"]\n"
    "prefix = 2001:db8:1::/64\n"
    "prefix_pick = hash\n"
    "\n"
    "[source \"far-1\"]\n"
    "socks5_proxy_server = 198.51.100.7:1080\n"
    "socks5_proxy_source_address = 203.0.113.5\n"
    "socks5_proxy_username = relay\n"
    "socks5_proxy_password = secret\n"
    "suspend_when_proxy_unhealthy.trigger = 3/5m\n"
    "suspend_when_proxy_unhealthy.duration = 10m\n"
    "health_check = 30s               ; connect + greeting each period\n"
    "resume_when_healthy = no\n"
    "\n"
    "[pool \"main\"]\n"
    "strategy = round-robin\n"
    "source = ip-1 weight=2\n"
    "source = ip-2, ip-3              ; default weight 1; lists with , or ;\n"
    "source = 192.0.2.99 weight=0     ; bare address = anonymous source\n"
    "\n"
    "[pool \"warm\"]\n"
    "source = v6net; far-1\n"
    "\n"
    "[user \"mta1\"]\n"
    "password_hash = $y$j9T$abc$def\n"
    "pool = main\n";

static void test_load_spec_example(void **state)
{
	struct conf *c = load_ok(spec_example);
	const struct conf_server *sv = &c->server;
	(void)state;

	assert_string_equal(c->path, "t.ini");
	assert_int_equal(sv->n_listens, 3);
	assert_string_equal(addr_text(&sv->listens[0].addr), "0.0.0.0:1080");
	assert_null(sv->listens[0].pool);
	assert_int_equal(sv->listens[0].line, 2);
	assert_string_equal(sv->listens[1].pool, "warm");
	assert_false(sv->listens[1].source_same);
	assert_true(sv->listens[2].source_same);
	assert_true(sv->admin_enabled);
	assert_string_equal(addr_text(&sv->admin_listen), "127.0.0.1:9180");
	assert_int_equal(sv->allow.count, 2);
	assert_true(match(&sv->allow, "10.9.8.7"));
	assert_false(match(&sv->allow, "127.0.0.1"));
	assert_int_equal(sv->auth, CONF_AUTH_NONE);
	assert_string_equal(sv->default_pool, "main");
	assert_int_equal(sv->handshake_timeout_ms, 10000);
	assert_int_equal(sv->connect_timeout_ms, 30000);
	assert_int_equal(sv->idle_timeout_ms, 600000);
	assert_int_equal(sv->max_connections, 20000);
	assert_int_equal(sv->bind_unlisted, CONF_BIND_UNLISTED_DENY);
	assert_int_equal(sv->deny_destinations.count, 2);
	assert_true(match(&sv->deny_destinations, "169.254.169.254"));
	assert_true(match(&sv->deny_destinations, "fe80::1"));
	assert_int_equal(sv->tcp_keepalive_ms, 300000);
	assert_int_equal(sv->on_pool_exhausted, CONF_POOL_EXHAUSTED_REPLY);
	assert_int_equal(sv->log_level, CONF_LOG_INFO);
	assert_false(sv->access_log);
	assert_null(sv->access_log_file);
	assert_int_equal(sv->log_target, CONF_LOG_TARGET_STDERR);
	assert_true(sv->log_timestamps);
	assert_true(sv->log_timestamps_set);
	assert_int_equal(sv->allow_destinations.count, 0);
	assert_int_equal(sv->stall_timeout_ms, 300000);
	assert_false(sv->reload_on_change);
	assert_int_equal(sv->relay, CONF_RELAY_SPLICE);
	assert_int_equal(sv->workers, 0);
	assert_int_equal(sv->max_connections_per_client, 0);
	assert_int_equal(sv->shutdown_timeout_ms, 30000);
	assert_null(sv->admin_token);
	assert_null(sv->user);

	assert_int_equal(c->n_sources, 6);
	const struct conf_source *s = source(c, "ip-1");
	assert_int_equal(s->kind, CONF_SOURCE_ADDRESS);
	assert_false(s->anonymous);
	assert_string_equal(addr_text(&s->addr), "192.0.2.10");
	assert_int_equal(s->line, 35);
	assert_rule(&s->unplumbed, true, 3, 60000, 300000);
	assert_rule(&s->proxy_unhealthy, true, 0, 0, 300000);
	assert_int_equal(s->max_connections, 500);
	assert_int_equal(s->rate.count, 100);
	assert_int_equal(s->rate.period_ms, 1000);
	assert_false(s->resume_when_plumbed);

	s = source(c, "ip-3");
	assert_int_equal(s->addr.ss_family, AF_INET6);
	assert_rule(&s->unplumbed, true, 0, 0, 300000);
	assert_int_equal(s->max_connections, 0);
	assert_int_equal(s->rate.count, 0);

	s = source(c, "v6net");
	assert_int_equal(s->kind, CONF_SOURCE_PREFIX);
	assert_int_equal(s->prefix.family, AF_INET6);
	assert_int_equal(s->prefix.prefix_len, 64);
	assert_int_equal(s->prefix_pick, CONF_PREFIX_PICK_HASH);

	s = source(c, "far-1");
	assert_int_equal(s->kind, CONF_SOURCE_PROXY);
	assert_string_equal(addr_text(&s->proxy_server), "198.51.100.7:1080");
	assert_true(s->has_proxy_source_address);
	assert_string_equal(addr_text(&s->proxy_source_address), "203.0.113.5");
	assert_string_equal(s->proxy_username, "relay");
	assert_string_equal(s->proxy_password, "secret");
	assert_rule(&s->proxy_unhealthy, true, 3, 300000, 600000);
	assert_int_equal(s->health_check_ms, 30000);
	assert_false(s->resume_when_healthy);

	s = source(c, "192.0.2.99");
	assert_true(s->anonymous);
	assert_int_equal(s->kind, CONF_SOURCE_ADDRESS);
	assert_int_equal(s->line, 67);

	const struct conf_pool *p = pool(c, "main");
	assert_int_equal(p->strategy, CONF_STRATEGY_ROUND_ROBIN);
	assert_int_equal(p->n_entries, 4);
	assert_string_equal(entry_name(c, p, 0), "ip-1");
	assert_int_equal(p->entries[0].weight, 2);
	assert_int_equal(p->entries[0].line, 65);
	assert_string_equal(entry_name(c, p, 1), "ip-2");
	assert_int_equal(p->entries[1].weight, 1);
	assert_string_equal(entry_name(c, p, 2), "ip-3");
	assert_string_equal(entry_name(c, p, 3), "192.0.2.99");
	assert_int_equal(p->entries[3].weight, 0);
	p = pool(c, "warm");
	assert_int_equal(p->n_entries, 2);
	assert_string_equal(entry_name(c, p, 0), "v6net");
	assert_string_equal(entry_name(c, p, 1), "far-1");

	assert_int_equal(c->n_users, 1);
	assert_string_equal(c->users[0].name, "mta1");
	assert_string_equal(c->users[0].password_hash, "$y$j9T$abc$def");
	assert_null(c->users[0].password);
	assert_string_equal(c->users[0].pool, "main");
	/* users with auth = none are ignored: warned. Every other key is acted
	 * on (relay = splice was the last one warned "not implemented"). */
	assert_int_equal(c->n_warnings, 1);
	assert_non_null(strstr(c->warnings[0], "auth = none"));
	conf_free(c);
}

static void test_load_server_defaults(void **state)
{
	struct conf *c = load_ok("[source a]\naddress = 192.0.2.1\n");
	const struct conf_server *sv = &c->server;
	(void)state;
	assert_string_equal(c->path, "t.ini");
	assert_int_equal(sv->n_listens, 2);
	assert_string_equal(addr_text(&sv->listens[0].addr), "127.0.0.1:1080");
	assert_string_equal(addr_text(&sv->listens[1].addr), "[::1]:1080");
	assert_true(sv->admin_enabled);
	assert_string_equal(addr_text(&sv->admin_listen), "127.0.0.1:9180");
	assert_int_equal(sv->allow.count, 2);
	assert_true(match(&sv->allow, "127.1.2.3"));
	assert_true(match(&sv->allow, "::1"));
	assert_true(match(&sv->allow, "::ffff:127.0.0.1"));
	assert_false(match(&sv->allow, "192.0.2.1"));
	assert_int_equal(sv->auth, CONF_AUTH_NONE);
	assert_int_equal(sv->handshake_timeout_ms, 10000);
	assert_int_equal(sv->connect_timeout_ms, 30000);
	assert_int_equal(sv->idle_timeout_ms, 600000);
	assert_int_equal(sv->max_connections, 20000);
	assert_int_equal(sv->bind_unlisted, CONF_BIND_UNLISTED_DENY);
	assert_int_equal(sv->deny_destinations.count, 0);
	assert_int_equal(sv->tcp_keepalive_ms, 300000);
	assert_int_equal(sv->on_pool_exhausted, CONF_POOL_EXHAUSTED_REPLY);
	assert_int_equal(sv->log_level, CONF_LOG_INFO);
	assert_false(sv->access_log);
	assert_int_equal(sv->workers, 0);
	assert_int_equal(sv->max_connections_per_client, 0);
	assert_int_equal(sv->stall_timeout_ms, 300000);
	assert_int_equal(sv->relay, CONF_RELAY_SPLICE);
	assert_int_equal(sv->log_target, CONF_LOG_TARGET_STDERR);
	assert_false(sv->log_timestamps_set);
	assert_false(sv->reload_on_change);
	assert_int_equal(sv->shutdown_timeout_ms, 30000);
	assert_null(sv->admin_token);
	assert_null(sv->user);
	assert_string_equal(sv->default_pool, "default");
	assert_int_equal(c->n_warnings, 0);
	conf_free(c);
}

static void test_load_server_values(void **state)
{
	struct conf *c = load_ok("[server]\n"
				 "listen = 127.0.0.1:0\n"
				 "listen = [::1]:0 pool=p\n"
				 "admin_listen =\n"
				 "auth = password\n"
				 "handshake_timeout = 500ms\n"
				 "connect_timeout = 2 mins\n"
				 "idle_timeout = 0\n"
				 "max_connections = 1_000\n"
				 "bind_unlisted = allow\n"
				 "tcp_keepalive = 0\n"
				 "on_pool_exhausted = refuse\n"
				 "log_level = DEBUG\n"
				 "access_log = yes\n"
				 "workers = 64\n"
				 "max_connections_per_client = 0\n"
				 "shutdown_timeout = 1h\n"
				 "admin_token = s3cr3t-t0ken\n"
				 "user = sockpool\n"
				 "[pool p]\nsource = 192.0.2.1\n"
				 "[user u]\npassword_hash = $6$x$y\n");
	const struct conf_server *sv = &c->server;
	(void)state;
	assert_int_equal(sv->n_listens, 2);
	assert_int_equal(port_of(&sv->listens[0].addr), 0);
	assert_string_equal(sv->listens[1].pool, "p");
	assert_false(sv->admin_enabled);
	assert_int_equal(sv->auth, CONF_AUTH_PASSWORD);
	assert_int_equal(sv->handshake_timeout_ms, 500);
	assert_int_equal(sv->connect_timeout_ms, 120000);
	assert_int_equal(sv->idle_timeout_ms, 0);
	assert_int_equal(sv->max_connections, 1000);
	assert_int_equal(sv->bind_unlisted, CONF_BIND_UNLISTED_ALLOW);
	assert_int_equal(sv->tcp_keepalive_ms, 0);
	assert_int_equal(sv->on_pool_exhausted, CONF_POOL_EXHAUSTED_REFUSE);
	assert_int_equal(sv->log_level, CONF_LOG_DEBUG);
	assert_true(sv->access_log);
	assert_int_equal(sv->workers, 64);
	assert_int_equal(sv->max_connections_per_client, 0);
	assert_int_equal(sv->shutdown_timeout_ms, 3600000);
	assert_string_equal(sv->admin_token, "s3cr3t-t0ken");
	assert_string_equal(sv->user, "sockpool");
	assert_string_equal(sv->default_pool, "p");
	assert_int_equal(c->n_warnings, 0);
	conf_free(c);
}

static void test_load_crlf_and_bom(void **state)
{
	struct conf *c = load_ok("\xef\xbb\xbf[server]\r\n"
				 "listen = 127.0.0.1:1080\r\n"
				 "\r\n"
				 "[source \"a\"]\r\n"
				 "address = 192.0.2.1 ; note\r\n"
				 "rate = 5/1m\r\n");
	(void)state;
	assert_int_equal(c->server.n_listens, 1);
	assert_string_equal(source(c, "a")->name, "a");
	assert_string_equal(addr_text(&source(c, "a")->addr), "192.0.2.1");
	assert_int_equal(source(c, "a")->rate.period_ms, 60000);
	conf_free(c);

	/* Line numbers count CRLF lines too. */
	EXPECT_ERROR("[server]\r\n\r\nbogus = 1\r\n", "t.ini:3: [server] bogus:");
}

static void test_load_comments_and_separators(void **state)
{
	struct conf *c = load_ok("; full-line comment\n"
				 "# hash comment\n"
				 "   ; indented comment\n"
				 "[server]\n"
				 "admin_token = ; no token: the comment is not the value\n"
				 "allow = 10.0.0.0/8;192.0.2.0/24 ; a; b lists, then a comment\n"
				 "  deny_destinations = 169.254.0.0/16\t; tab before ';'\n"
				 "[source \"a\"]\n"
				 "address = 192.0.2.1\n"
				 "[source b]\n"
				 "address = 192.0.2.2\n"
				 "[pool \"p\"]\n"
				 "source = a;b ; rspamd form\n");
	(void)state;
	assert_null(c->server.admin_token);
	assert_int_equal(c->server.allow.count, 2);
	assert_true(match(&c->server.allow, "192.0.2.200"));
	assert_int_equal(c->server.deny_destinations.count, 1);
	const struct conf_pool *p = pool(c, "p");
	assert_int_equal(p->n_entries, 2);
	assert_string_equal(entry_name(c, p, 0), "a");
	assert_string_equal(entry_name(c, p, 1), "b");
	conf_free(c);

	/* Indented lines are ordinary lines, never continuations of the previous key. */
	c = load_ok("[server]\n  listen = 127.0.0.1:1080\n  allow = 10.0.0.0/8\n");
	assert_int_equal(c->server.n_listens, 1);
	assert_int_equal(c->server.allow.count, 1);
	conf_free(c);
}

static void test_load_long_line_rejected(void **state)
{
	char text[1024], value[400];
	(void)state;

	/* 300 characters: rejected, never truncated. */
	memset(value, 'a', 300 - strlen("user = "));
	value[300 - strlen("user = ")] = '\0';
	snprintf(text, sizeof(text), "[server]\nuser = %s\n", value);
	assert_int_equal(strlen(text), strlen("[server]\n") + 300 + 1);
	EXPECT_ERROR(text, "t.ini:2: line too long (max 197 characters)",
		     "split long source lists over several 'source =' lines");

	/* Exactly at the limit: accepted in full. */
	value[197 - strlen("user = ")] = '\0';
	snprintf(text, sizeof(text), "[server]\nuser = %s\n", value);
	struct conf *c = load_ok(text);
	assert_int_equal(strlen(c->server.user), 197 - strlen("user = "));
	conf_free(c);

	/* One more: rejected. */
	value[197 - strlen("user = ")] = 'a';
	value[198 - strlen("user = ")] = '\0';
	snprintf(text, sizeof(text), "[server]\nuser = %s\n", value);
	EXPECT_ERROR(text, "t.ini:2: line too long");

	/* A long comment carries no value: it does not count. */
	memset(value, 'x', 300);
	value[300] = '\0';
	snprintf(text, sizeof(text), "; %s\n[server]\nuser = nobody ; %s\n", value, value);
	c = load_ok(text);
	assert_string_equal(c->server.user, "nobody");
	conf_free(c);
}

static void test_load_repeatable_keys_accumulate(void **state)
{
	struct conf *c = load_ok("[server]\n"
				 "listen = 127.0.0.1:1080\n"
				 "listen = [::1]:1081 source=same\n"
				 "allow = 10.0.0.0/8\n"
				 "allow = 192.0.2.0/24, ::1\n"
				 "deny_destinations = 169.254.0.0/16\n"
				 "deny_destinations = fe80::/10\n"
				 "[source s6]\naddress = ::1\n"
				 "[pool p]\n"
				 "source = 192.0.2.1\n"
				 "source = 192.0.2.2, 192.0.2.3\n");
	(void)state;
	assert_int_equal(c->server.n_listens, 2);
	assert_true(c->server.listens[1].source_same);
	assert_int_equal(c->server.allow.count, 3);
	assert_int_equal(c->server.deny_destinations.count, 2);
	assert_int_equal(pool(c, "p")->n_entries, 3);
	assert_int_equal(pool(c, "p")->entries[2].line, 12);
	conf_free(c);
}

static void test_load_duplicate_key_rejected(void **state)
{
	(void)state;
	EXPECT_ERROR("[server]\nauth = none\n\nauth = password\n",
		     "t.ini:4: [server] auth: set twice in this section (first at line 2)");
	EXPECT_ERROR("[source a]\naddress = 192.0.2.1\naddress = 192.0.2.2\n",
		     "t.ini:3: [source \"a\"] address: set twice", "first at line 2");
	EXPECT_ERROR("[defaults]\nrate = 1/s\nrate = 2/s\n", "t.ini:3: [defaults] rate: set twice");
	EXPECT_ERROR("[pool p]\nsource = 192.0.2.1\nstrategy = hash\nstrategy = failover\n",
		     "t.ini:4: [pool \"p\"] strategy: set twice");
	EXPECT_ERROR("[user u]\npassword = a\npool = p\npool = q\n",
		     "t.ini:4: [user \"u\"] pool: set twice");
	EXPECT_ERROR("[source a]\naddress = 192.0.2.1\n"
		     "suspend_when_unplumbed.duration = 1m\nsuspend_when_unplumbed.duration = 2m\n",
		     "t.ini:4:", "suspend_when_unplumbed.duration: set twice");
}

static void test_load_unknown_keys_and_sections(void **state)
{
	(void)state;
	EXPECT_ERROR("[server]\nlisten = 127.0.0.1:1080\nlisen = 127.0.0.1:1081\n",
		     "t.ini:3: [server] lisen: unknown key; did you mean 'listen'?");
	EXPECT_ERROR("[server]\nfrobnicate = 1\n", "t.ini:2: [server] frobnicate: unknown key",
		     "expected one of listen, admin_listen");
	EXPECT_ERROR("[server]\naddress = 192.0.2.1\n",
		     "t.ini:2: [server] address: unknown key here; it belongs in [source");
	EXPECT_ERROR("[source a]\naddress = 192.0.2.1\nlisten = 127.0.0.1:1\n",
		     "t.ini:3: [source \"a\"] listen:", "belongs in [server]");
	EXPECT_ERROR("[pool p]\naddress = 192.0.2.1\n", "t.ini:2: [pool \"p\"] address:");
	EXPECT_ERROR("[user u]\nstrategy = hash\n",
		     "t.ini:2: [user \"u\"] strategy:", "belongs in [pool");
	EXPECT_ERROR("[defaults]\naddress = 192.0.2.1\n",
		     "t.ini:2: [defaults] address: cannot be inherited");
	EXPECT_ERROR("[defaults]\nsuspend_when_unplumbed.trigr = 3/1m\n",
		     "t.ini:2: [defaults] suspend_when_unplumbed.trigr: unknown key; did you mean "
		     "'suspend_when_unplumbed.trigger'?");
	EXPECT_ERROR("[sever]\nlisten = 127.0.0.1:1\n", "t.ini:1: unknown section [sever]",
		     "expected [server], [defaults]");
	EXPECT_ERROR("\n\n[pools \"x\"]\n", "t.ini:3: unknown section [pools \"x\"]");
	EXPECT_ERROR("listen = 127.0.0.1:1080\n", "t.ini:1: listen: key outside any section");
	/* An empty unknown section is still an error: inih alone would not see it. */
	EXPECT_ERROR("[server]\n[nothing]\n", "t.ini:2: unknown section [nothing]");
}

static void test_load_syntax_errors(void **state)
{
	(void)state;
	EXPECT_ERROR("[server]\njust some words\n",
		     "t.ini:2: expected 'key = value', a [section] or a comment, got 'just some "
		     "words'");
	EXPECT_ERROR("[server\nauth = none\n", "t.ini:1: expected a section header");
	EXPECT_ERROR("[server] trailing\n", "t.ini:1: expected a section header");
	EXPECT_ERROR("[server]\n= none\n", "t.ini:2: expected 'key = value' with a key");
	EXPECT_ERROR("[server]\nlog level = info\n", "t.ini:2: expected 'key = value' with a key");
	EXPECT_ERROR("[server]\nauth: none\n", "t.ini:2: expected 'key = value'");
	EXPECT_ERROR("[source \"a\nb\"]\n", "t.ini:1:");
	EXPECT_ERROR("[source \"a\"b\"]\n", "t.ini:1:", "double quotes");
	EXPECT_ERROR("[source]\n", "t.ini:1: [source]: needs a name");
	EXPECT_ERROR("[pool]\n", "t.ini:1: [pool]: needs a name");
	EXPECT_ERROR("[user]\n", "t.ini:1: [user]: needs a name");
	EXPECT_ERROR("[source \"a b\"]\n", "t.ini:1: [source \"a b\"]: a source name is");
	EXPECT_ERROR("[source a b]\n", "t.ini:1: [source a b]: a source name is");
	EXPECT_ERROR("[server \"x\"]\n", "t.ini:1: [server \"x\"]: [server] takes no name");
	EXPECT_ERROR("[source \"\"]\n", "t.ini:1:", "a source name is");
}

static void test_load_duplicate_sections_rejected(void **state)
{
	(void)state;
	EXPECT_ERROR("[source \"a\"]\naddress = 192.0.2.1\n[source a]\naddress = 192.0.2.2\n",
		     "t.ini:3: [source \"a\"]: source defined twice (first at line 1)");
	EXPECT_ERROR("[pool p]\nsource = 192.0.2.1\n[pool \"p\"]\n",
		     "t.ini:3: [pool \"p\"]: pool defined twice (first at line 1)");
	EXPECT_ERROR("[user u]\npassword = x\n[user u]\n",
		     "t.ini:3: [user \"u\"]: user defined twice");
	EXPECT_ERROR("[server]\n[defaults]\n[server]\n",
		     "t.ini:3: [server]: section defined twice (first at line 1)");
	EXPECT_ERROR("[defaults]\n[defaults]\n", "t.ini:2: [defaults]: section defined twice");
}

static void test_load_first_error_wins(void **state)
{
	char err[CONF_ERR_MAX];
	struct conf *c = NULL;
	(void)state;
	/* Later lines, and the final pass, never overwrite the first message. */
	assert_int_equal(conf_load_string("[server]\nauth = maybe\nbogus = 1\n[pool p]\n", "t.ini",
					  &c, err, sizeof(err)),
			 -EINVAL);
	assert_null(c);
	assert_non_null(strstr(err, "t.ini:2: [server] auth: expected none | password, got "
				    "'maybe'"));
	assert_null(strstr(err, "bogus"));
}

/* ---- value errors of every key ---- */

static void test_load_server_value_errors(void **state)
{
	static const struct {
		const char *line;
		const char *want;
	} cases[] = {
	    {"listen = 127.0.0.1", "[server] listen: expected ADDRESS:PORT"},
	    {"listen = localhost:1080", "got 'localhost:1080'"},
	    {"listen = 127.0.0.1:1080 pool=", "expected one pool=NAME"},
	    {"listen = 127.0.0.1:1080 pool = p", "expected pool=NAME or source=same"},
	    {"listen = 127.0.0.1:1080 source=other", "got 'source=other'"},
	    {"listen = 127.0.0.1:1080 source=same source=same", "got 'source=same'"},
	    {"listen = 127.0.0.1:1080 pool=a pool=b", "expected one pool=NAME"},
	    {"listen = 127.0.0.1:1080 pool=p source=same", "exclude each other"},
	    {"listen = 127.0.0.1:70000", "[server] listen: expected ADDRESS:PORT"},
	    {"admin_listen = 9180", "[server] admin_listen: expected ADDRESS:PORT"},
	    {"allow = 10.0.0.0/33", "[server] allow: expected networks"},
	    {"allow = 10.0.0.0/33", "got '10.0.0.0/33'"},
	    {"allow =", "[server] allow: expected networks"},
	    {"allow = 10.0.0.0/8,,::1", "(an empty item)"},
	    {"deny_destinations = nope", "[server] deny_destinations: expected networks"},
	    {"auth = basic", "[server] auth: expected none | password, got 'basic'"},
	    {"default_pool = a b", "[server] default_pool: expected a pool name"},
	    {"handshake_timeout = 10", "[server] handshake_timeout: expected a duration"},
	    {"handshake_timeout = 0", "[server] handshake_timeout: expected a duration > 0"},
	    {"connect_timeout = 0s", "[server] connect_timeout: expected a duration > 0"},
	    {"connect_timeout = 99999999999999999999d", "fits in 64 bits"},
	    {"idle_timeout = forever", "[server] idle_timeout: expected a duration"},
	    {"idle_timeout = forever", "(0 = off), got 'forever'"},
	    {"max_connections = 0", "[server] max_connections: expected an integer from 1"},
	    {"max_connections = 4294967296", "[server] max_connections: expected an integer"},
	    {"max_connections = lots", "got 'lots'"},
	    {"bind_unlisted = maybe", "[server] bind_unlisted: expected deny | allow"},
	    {"tcp_keepalive = 1500ms", "[server] tcp_keepalive: expected whole seconds"},
	    {"tcp_keepalive = on", "[server] tcp_keepalive: expected a duration"},
	    {"on_pool_exhausted = wait", "expected reply | refuse, got 'wait'"},
	    {"log_level = trace", "expected error | warn | info | debug, got 'trace'"},
	    {"access_log = two words", "[server] access_log: expected off | on | the path"},
	    {"workers = 0", "[server] workers: expected auto or an integer from 1 to 64"},
	    {"workers = 65", "[server] workers: expected auto or an integer from 1 to 64"},
	    {"max_connections_per_client = -1", "[server] max_connections_per_client:"},
	    {"shutdown_timeout = 30", "[server] shutdown_timeout: expected a duration"},
	    {"admin_token = two words", "[server] admin_token: expected a token"},
	    {"admin_token = two words", "(value not shown)"},
	    {"user = two words", "[server] user: expected a system user name"},
	};
	char text[512];
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), "[pool p]\nsource = 192.0.2.1\n\n[server]\n%s\n",
			 cases[i].line);
		EXPECT_ERROR(text, "t.ini:5: ", cases[i].want);
	}
	/* The token itself never shows in a message. */
	char err[CONF_ERR_MAX];
	struct conf *c = NULL;
	assert_int_equal(conf_load_string("[server]\nadmin_token = hunter2 hunter3\n", "t.ini", &c,
					  err, sizeof(err)),
			 -EINVAL);
	assert_null(strstr(err, "hunter"));
}

static void test_load_source_value_errors(void **state)
{
	static const struct {
		const char *text;
		const char *want;
	} cases[] = {
	    {"address = 192.0.2.1:80", "[source \"s\"] address: expected an IP address without "
				       "port"},
	    {"address = mail.example.com", "got 'mail.example.com'"},
	    {"prefix = 2001:db8:1::", "[source \"s\"] prefix: expected a network"},
	    {"prefix = ::/0", "[source \"s\"] prefix: expected a network"},
	    {"socks5_proxy_server = 198.51.100.7", "[source \"s\"] socks5_proxy_server: "
						   "expected ADDRESS:PORT"},
	    {"socks5_proxy_server = 198.51.100.7:0", "socks5_proxy_server: expected ADDRESS:PORT"},
	    {"socks5_proxy_server = 198.51.100.7:1\nsocks5_proxy_source_address = x",
	     "socks5_proxy_source_address: expected an IP address"},
	    {"socks5_proxy_server = 198.51.100.7:1\nsocks5_proxy_username =",
	     "socks5_proxy_username: expected 1 to 255 characters"},
	    {"max_connections = -5", "[source \"s\"] max_connections: expected an integer"},
	    {"rate = immediate", "[source \"s\"] rate: expected N/PERIOD"},
	    {"rate = 0/s", "[source \"s\"] rate: expected N/PERIOD"},
	    {"rate = 10", "got '10'"},
	    {"resume_when_plumbed = perhaps", "resume_when_plumbed: expected yes | no"},
	    {"prefix_pick = first", "prefix_pick: expected hash | random, got 'first'"},
	    {"suspend_when_unplumbed = on", "suspend_when_unplumbed: expected off"},
	    {"suspend_when_unplumbed.trigger = soon", "suspend_when_unplumbed.trigger: expected "
						      "immediate or N/PERIOD"},
	    {"suspend_when_unplumbed.trigger = 0/1m", "got '0/1m'"},
	    {"suspend_when_unplumbed.trigger = 10,001/1m", "(1 <= N <= 10000, PERIOD > 0), got "
							   "'10,001/1m'"},
	    {"suspend_when_proxy_unhealthy.trigger = 3/0s", "got '3/0s'"},
	    {"suspend_when_unplumbed.duration = 0", "suspend_when_unplumbed.duration: expected "
						    "a duration > 0"},
	    {"suspend_when_proxy_unhealthy.duration = 5", "suspend_when_proxy_unhealthy.duration:"
							  " expected a duration"},
	};
	char text[512];
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), "[source \"s\"]\n%s\n", cases[i].text);
		/* the bad value is on the last line */
		unsigned line = 2;
		for (const char *p = cases[i].text; *p; p++)
			line += *p == '\n';
		char where[32];
		snprintf(where, sizeof(where), "t.ini:%u: ", line);
		EXPECT_ERROR(text, where, cases[i].want);
	}
	/* The upstream password is never echoed. */
	char err[CONF_ERR_MAX];
	struct conf *c = NULL;
	char text2[600];
	char longpw[300];
	memset(longpw, 'p', 150);
	longpw[150] = '\0';
	snprintf(text2, sizeof(text2),
		 "[source s]\nsocks5_proxy_server = 198.51.100.7:1\nsocks5_proxy_password = %s\n"
		 "socks5_proxy_password = again\n",
		 longpw);
	assert_int_equal(conf_load_string(text2, "t.ini", &c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "t.ini:4:"));
	assert_null(strstr(err, "again"));
}

static void test_load_source_kind_errors(void **state)
{
	(void)state;
	EXPECT_ERROR(
	    "[source s]\nmax_connections = 5\n",
	    "t.ini:1: [source \"s\"]: needs one of address, prefix or socks5_proxy_server");
	EXPECT_ERROR("[source s]\naddress = 192.0.2.1\nprefix = 2001:db8::/64\n",
		     "t.ini:3: [source \"s\"] prefix: conflicts with address at line 2",
		     "exactly one of address, prefix or socks5_proxy_server");
	EXPECT_ERROR(
	    "[source s]\nsocks5_proxy_server = 198.51.100.7:1080\naddress = 192.0.2.1\n",
	    "t.ini:3: [source \"s\"] address: conflicts with socks5_proxy_server at line 2");
	EXPECT_ERROR("[source s]\naddress = 192.0.2.1\nsocks5_proxy_source_address = 192.0.2.2\n",
		     "t.ini:3: [source \"s\"] socks5_proxy_source_address: only applies with "
		     "socks5_proxy_server");
	EXPECT_ERROR("[source s]\nprefix = 2001:db8::/64\nsocks5_proxy_password = x\n",
		     "t.ini:3: [source \"s\"] socks5_proxy_password: only applies");
	EXPECT_ERROR(
	    "[source s]\nsocks5_proxy_server = 198.51.100.7:1080\n"
	    "socks5_proxy_username = relay\n",
	    "t.ini:3: [source \"s\"] socks5_proxy_username: needs socks5_proxy_password too");
	EXPECT_ERROR(
	    "[source s]\nsocks5_proxy_server = 198.51.100.7:1080\n"
	    "socks5_proxy_password = pw\n",
	    "t.ini:3: [source \"s\"] socks5_proxy_password: needs socks5_proxy_username too");
	EXPECT_ERROR("[source s]\naddress = 192.0.2.1\nprefix_pick = random\n",
		     "t.ini:3: [source \"s\"] prefix_pick: only applies with prefix");
	EXPECT_ERROR("[source a]\naddress = 192.0.2.1\n\n[source b]\naddress = 192.0.2.1\n",
		     "t.ini:5: [source \"b\"] address: 192.0.2.1 is already the address of source "
		     "\"a\" (line 1)");
	EXPECT_ERROR("[source a]\naddress = 2001:db8::1\n[source b]\naddress = 2001:DB8:0::1\n",
		     "t.ini:4: [source \"b\"] address: 2001:db8::1 is already");
}

static void test_load_source_kinds(void **state)
{
	struct conf *c = load_ok("[defaults]\nprefix_pick = random\n"
				 "[source p4]\nprefix = 192.0.2.77/24\n"
				 "[source p6]\nprefix = 2001:db8:1::/64\nprefix_pick = hash\n"
				 "[source x]\nsocks5_proxy_server = [2001:db8::7]:1080\n"
				 "[source a]\naddress = [2001:db8::9]\n");
	(void)state;
	const struct conf_source *s = source(c, "p4");
	assert_int_equal(s->kind, CONF_SOURCE_PREFIX);
	assert_int_equal(s->prefix.family, AF_INET);
	assert_int_equal(s->prefix.prefix_len, 24);
	assert_memory_equal(s->prefix.addr, "\xc0\x00\x02\x00", 4);
	assert_int_equal(s->prefix_pick, CONF_PREFIX_PICK_RANDOM);
	assert_int_equal(source(c, "p6")->prefix_pick, CONF_PREFIX_PICK_HASH);
	s = source(c, "x");
	assert_int_equal(s->kind, CONF_SOURCE_PROXY);
	assert_string_equal(addr_text(&s->proxy_server), "[2001:db8::7]:1080");
	assert_false(s->has_proxy_source_address);
	assert_null(s->proxy_username);
	assert_null(s->proxy_password);
	assert_string_equal(addr_text(&source(c, "a")->addr), "2001:db8::9");
	conf_free(c);
}

/* ---- [defaults] and suspension rules ---- */

static void test_defaults_inherited_before_and_after(void **state)
{
	struct conf *c = load_ok("[source before]\naddress = 192.0.2.1\n"
				 "[defaults]\n"
				 "suspend_when_unplumbed.trigger = 3/1m\n"
				 "suspend_when_unplumbed.duration = 7m\n"
				 "suspend_when_proxy_unhealthy.trigger = 2/30s\n"
				 "suspend_when_proxy_unhealthy.duration = 1h\n"
				 "max_connections = 50\n"
				 "rate = 1,000/hr\n"
				 "resume_when_plumbed = yes\n"
				 "[source after]\naddress = 192.0.2.2\n"
				 "[pool p]\nsource = before, after, 192.0.2.3\n");
	(void)state;
	static const char *const names[] = {"before", "after", "192.0.2.3"};
	for (size_t i = 0; i < 3; i++) {
		const struct conf_source *s = source(c, names[i]);
		assert_rule(&s->unplumbed, true, 3, 60000, 420000);
		assert_rule(&s->proxy_unhealthy, true, 2, 30000, 3600000);
		assert_int_equal(s->max_connections, 50);
		assert_int_equal(s->rate.count, 1000);
		assert_int_equal(s->rate.period_ms, 3600000);
		assert_true(s->resume_when_plumbed);
	}
	assert_true(source(c, "192.0.2.3")->anonymous);
	conf_free(c);
}

static void test_defaults_overridden_by_source(void **state)
{
	struct conf *c = load_ok("[defaults]\n"
				 "suspend_when_unplumbed.trigger = 3/1m\n"
				 "suspend_when_unplumbed.duration = 7m\n"
				 "max_connections = 50\n"
				 "rate = 10/s\n"
				 "resume_when_plumbed = yes\n"
				 "[source a]\naddress = 192.0.2.1\n"
				 "suspend_when_unplumbed.trigger = immediate\n"
				 "max_connections = 0\n"
				 "rate = unlimited\n"
				 "resume_when_plumbed = no\n"
				 "[source b]\naddress = 192.0.2.2\n"
				 "suspend_when_unplumbed.duration = 1m\n"
				 "[source c]\naddress = 192.0.2.3\n"
				 "suspend_when_unplumbed = off\n");
	(void)state;
	const struct conf_source *s = source(c, "a");
	assert_rule(&s->unplumbed, true, 0, 0, 420000); /* own trigger, inherited duration */
	assert_int_equal(s->max_connections, 0);
	assert_int_equal(s->rate.count, 0);
	assert_false(s->resume_when_plumbed);
	assert_rule(&source(c, "b")->unplumbed, true, 3, 60000, 60000);
	assert_int_equal(source(c, "b")->max_connections, 50);
	assert_rule(&source(c, "c")->unplumbed, false, 0, 0, 0);
	assert_rule(&source(c, "c")->proxy_unhealthy, true, 0, 0, 300000);
	conf_free(c);
}

static void test_rules_built_in_when_unset(void **state)
{
	struct conf *c = load_ok("[source a]\naddress = 192.0.2.1\n");
	(void)state;
	assert_rule(&source(c, "a")->unplumbed, true, 0, 0, 300000);
	assert_rule(&source(c, "a")->proxy_unhealthy, true, 0, 0, 300000);
	conf_free(c);

	/* A duration alone enables the rule with an immediate trigger. */
	c = load_ok("[source a]\naddress = 192.0.2.1\nsuspend_when_unplumbed.duration = 90s\n");
	assert_rule(&source(c, "a")->unplumbed, true, 0, 0, 90000);
	conf_free(c);
}

static void test_rule_off_in_defaults(void **state)
{
	struct conf *c = load_ok("[defaults]\n"
				 "suspend_when_unplumbed = off\n"
				 "suspend_when_proxy_unhealthy = off\n"
				 "[source a]\naddress = 192.0.2.1\n"
				 "[source b]\naddress = 192.0.2.2\n"
				 "suspend_when_unplumbed.trigger = 2/10s\n"
				 "suspend_when_unplumbed.duration = 1m\n"
				 "[source c]\naddress = 192.0.2.3\n"
				 "suspend_when_proxy_unhealthy.duration = 2m\n");
	(void)state;
	assert_rule(&source(c, "a")->unplumbed, false, 0, 0, 0);
	assert_rule(&source(c, "a")->proxy_unhealthy, false, 0, 0, 0);
	assert_rule(&source(c, "b")->unplumbed, true, 2, 10000, 60000);
	assert_rule(&source(c, "c")->proxy_unhealthy, true, 0, 0, 120000);
	assert_rule(&source(c, "c")->unplumbed, false, 0, 0, 0);
	conf_free(c);
}

static void test_rule_trigger_without_duration_rejected(void **state)
{
	(void)state;
	EXPECT_ERROR("[source a]\naddress = 192.0.2.1\nsuspend_when_unplumbed.trigger = 3/1m\n",
		     "t.ini:3: [source \"a\"] suspend_when_unplumbed.trigger: a suspension rule "
		     "needs a duration; add suspend_when_unplumbed.duration");
	EXPECT_ERROR("[defaults]\nsuspend_when_proxy_unhealthy.trigger = 3/5m\n"
		     "[source a]\naddress = 192.0.2.1\n",
		     "t.ini:2: [defaults] suspend_when_proxy_unhealthy.trigger: a suspension rule "
		     "needs a duration",
		     "source \"a\"");
	/* Anonymous and implicit sources inherit too. */
	EXPECT_ERROR("[defaults]\nsuspend_when_unplumbed.trigger = 3/5m\n",
		     "t.ini:2: [defaults] suspend_when_unplumbed.trigger:", "source \"default\"");
	/* ... but a source with its own duration completes the chain. */
	struct conf *c = load_ok("[defaults]\nsuspend_when_unplumbed.trigger = 3/5m\n"
				 "[source a]\naddress = 192.0.2.1\n"
				 "suspend_when_unplumbed.duration = 1m\n");
	assert_rule(&source(c, "a")->unplumbed, true, 3, 300000, 60000);
	conf_free(c);
	/* off in [defaults] does not give a source's own trigger a duration */
	EXPECT_ERROR("[defaults]\nsuspend_when_unplumbed = off\n"
		     "[source a]\naddress = 192.0.2.1\nsuspend_when_unplumbed.trigger = 3/1m\n",
		     "t.ini:5: [source \"a\"] suspend_when_unplumbed.trigger: a suspension rule");
}

static void test_rule_off_conflicts_rejected(void **state)
{
	(void)state;
	EXPECT_ERROR(
	    "[defaults]\nsuspend_when_unplumbed = off\nsuspend_when_unplumbed.duration = 1m\n",
	    "t.ini:3: [defaults] suspend_when_unplumbed.duration: conflicts with "
	    "suspend_when_unplumbed at line 2");
	EXPECT_ERROR("[source a]\naddress = 192.0.2.1\nsuspend_when_proxy_unhealthy.trigger = 1/s\n"
		     "suspend_when_proxy_unhealthy = off\n",
		     "t.ini:4: [source \"a\"] suspend_when_proxy_unhealthy: conflicts with "
		     "suspend_when_proxy_unhealthy.trigger at line 3");
}

/* ---- pools ---- */

static void test_pool_anonymous_sources_shared(void **state)
{
	struct conf *c = load_ok("[pool a]\nsource = 192.0.2.9, 2001:DB8::0011 weight=3\n"
				 "[pool b]\nsource = 2001:db8::11; 192.0.2.9 weight=0\n"
				 "[pool c]\nsource = [2001:db8::11]\n");
	(void)state;
	assert_int_equal(c->n_sources, 2);
	const struct conf_source *s = source(c, "192.0.2.9");
	assert_true(s->anonymous);
	assert_int_equal(s->line, 2);
	assert_string_equal(addr_text(&s->addr), "192.0.2.9");
	assert_rule(&s->unplumbed, true, 0, 0, 300000);
	assert_true(source(c, "2001:db8::11")->anonymous);
	const struct conf_pool *a = pool(c, "a"), *b = pool(c, "b"), *pc = pool(c, "c");
	assert_int_equal(a->entries[0].source, b->entries[1].source);
	assert_int_equal(a->entries[1].source, b->entries[0].source);
	assert_int_equal(a->entries[1].source, pc->entries[0].source);
	assert_int_equal(a->entries[1].weight, 3);
	assert_int_equal(b->entries[1].weight, 0);
	assert_string_equal(c->server.default_pool, "a"); /* first pool defined */
	conf_free(c);
}

static void test_pool_bare_address_is_named_source(void **state)
{
	struct conf *c = load_ok("[pool p]\nsource = 192.0.2.10, other\n"
				 "[source ip-1]\naddress = 192.0.2.10\n"
				 "[source other]\naddress = 192.0.2.11\n");
	(void)state;
	assert_int_equal(c->n_sources, 2);
	const struct conf_pool *p = pool(c, "p");
	assert_string_equal(entry_name(c, p, 0), "ip-1");
	assert_string_equal(entry_name(c, p, 1), "other");
	assert_int_equal(p->entries[1].line, 2);
	conf_free(c);

	/* ... so naming it both ways is the same source twice. */
	EXPECT_ERROR("[source ip-1]\naddress = 192.0.2.10\n[pool p]\nsource = ip-1\n"
		     "source = 192.0.2.10\n",
		     "t.ini:5: [pool \"p\"] source: '192.0.2.10' is already in this pool (line 4, "
		     "as source \"ip-1\")");
}

static void test_pool_strategies(void **state)
{
	struct conf *c =
	    load_ok("[pool h]\nstrategy = hash\nhash_key = client\nsource = 192.0.2.1\n"
		    "[pool h2]\nstrategy = HASH\nsource = 192.0.2.1\n"
		    "[pool f]\nsource = 192.0.2.1 priority=1 weight=4, 192.0.2.2\n"
		    "strategy = failover\n"
		    "[pool u]\nhash_key = username\nstrategy = hash\nsource = 192.0.2.2\n");
	(void)state;
	assert_int_equal(pool(c, "h")->strategy, CONF_STRATEGY_HASH);
	assert_int_equal(pool(c, "h")->hash_key, CONF_HASH_KEY_CLIENT);
	assert_int_equal(pool(c, "h2")->hash_key, CONF_HASH_KEY_DESTINATION);
	const struct conf_pool *f = pool(c, "f");
	assert_int_equal(f->strategy, CONF_STRATEGY_FAILOVER);
	assert_int_equal(f->entries[0].priority, 1);
	assert_int_equal(f->entries[0].weight, 4);
	assert_int_equal(f->entries[1].priority, 0);
	assert_int_equal(f->entries[1].weight, 1);
	assert_int_equal(pool(c, "u")->hash_key, CONF_HASH_KEY_USERNAME);
	conf_free(c);
}

static void test_pool_errors(void **state)
{
	(void)state;
	EXPECT_ERROR(
	    "[pool p]\nstrategy = hash\n\nsource = ip-9\n",
	    "t.ini:4: [pool \"p\"] source: unknown source 'ip-9'; define [source \"ip-9\"] "
	    "or give an IP address");
	EXPECT_ERROR("[pool p]\nsource = 192.0.2.1, 192.0.2.1\n",
		     "t.ini:2: [pool \"p\"] source: '192.0.2.1' is already in this pool (line 2");
	EXPECT_ERROR("[source a]\naddress = 192.0.2.1\n[pool p]\nstrategy = hash\n",
		     "t.ini:3: [pool \"p\"]: has no sources");
	EXPECT_ERROR("[pool p]\nsource = 192.0.2.1 priority=1\n",
		     "t.ini:2: [pool \"p\"] source: priority= (for '192.0.2.1') only applies with "
		     "strategy = failover");
	EXPECT_ERROR("[pool p]\nhash_key = client\nsource = 192.0.2.1\n",
		     "t.ini:2: [pool \"p\"] hash_key: only applies with strategy = hash");
	EXPECT_ERROR("[pool p]\nsource = 192.0.2.1 weight=65536\n",
		     "t.ini:2: [pool \"p\"] source: expected weight=N (0..65535)",
		     "got 'weight=65536'");
	EXPECT_ERROR("[pool p]\nsource = 192.0.2.1 weight=-1\n", "got 'weight=-1'");
	EXPECT_ERROR("[pool p]\nsource = 192.0.2.1 weight=1 weight=2\n", "got 'weight=2'");
	EXPECT_ERROR("[pool p]\nsource = 192.0.2.1 weight = 2\n", "no blanks around '='");
	EXPECT_ERROR("[pool p]\nsource = 192.0.2.1 heavy\n", "got 'heavy'");
	EXPECT_ERROR(
	    "[pool p]\nsource = 192.0.2.1,, 192.0.2.2\n",
	    "t.ini:2: [pool \"p\"] source: expected sources separated by ',' or ';' (there "
	    "is an empty item)");
	EXPECT_ERROR("[pool p]\nsource =\n", "t.ini:2: [pool \"p\"] source: expected sources");
	EXPECT_ERROR("[pool p]\nsource = 192.0.2.1:25\n",
		     "t.ini:2: [pool \"p\"] source: expected a source name or an IP address, got "
		     "'192.0.2.1:25'");
	EXPECT_ERROR("[pool p]\nsource = 192.0.2.1\nstrategy = random\n",
		     "t.ini:3: [pool \"p\"] strategy: expected round-robin | hash | failover");
	EXPECT_ERROR("[pool p]\nsource = 192.0.2.1\nstrategy = hash\nhash_key = port\n",
		     "t.ini:4: [pool \"p\"] hash_key: expected destination | client | username");
}

static void test_pool_weight_zero_warned(void **state)
{
	struct conf *c = load_ok("[pool p]\nsource = 192.0.2.1 weight=0\n");
	(void)state;
	assert_int_equal(c->n_warnings, 1);
	assert_non_null(strstr(c->warnings[0], "t.ini:1: [pool \"p\"]: every source has weight 0"));
	conf_free(c);
}

static void test_pool_implicit_default(void **state)
{
	struct conf *c =
	    load_ok("[source b]\naddress = 192.0.2.2\n[source a]\naddress = 192.0.2.1\n");
	(void)state;
	assert_int_equal(c->n_pools, 1);
	const struct conf_pool *p = pool(c, "default");
	assert_int_equal(p->strategy, CONF_STRATEGY_ROUND_ROBIN);
	assert_int_equal(p->n_entries, 2);
	assert_string_equal(entry_name(c, p, 0), "b");
	assert_string_equal(entry_name(c, p, 1), "a");
	assert_int_equal(p->entries[0].weight, 1);
	assert_int_equal(p->entries[1].weight, 1);
	assert_string_equal(c->server.default_pool, "default");
	conf_free(c);
}

static void test_pool_implicit_default_route(void **state)
{
	struct conf *c = load_ok("[server]\nlisten = 127.0.0.1:0\n");
	(void)state;
	assert_int_equal(c->n_sources, 1);
	assert_string_equal(c->sources[0].name, "default");
	assert_int_equal(c->sources[0].kind, CONF_SOURCE_DEFAULT_ROUTE);
	assert_false(c->sources[0].anonymous);
	assert_int_equal(c->n_pools, 1);
	assert_string_equal(c->pools[0].name, "default");
	assert_int_equal(c->pools[0].n_entries, 1);
	assert_int_equal(c->pools[0].entries[0].source, 0);
	assert_string_equal(c->server.default_pool, "default");
	conf_free(c);

	/* An empty file is the embedded default without SOCKPOOL_SOURCES. */
	c = load_ok("");
	assert_int_equal(c->n_sources, 1);
	assert_int_equal(c->server.n_listens, 2);
	conf_free(c);
}

static void test_pool_default_pool_choice(void **state)
{
	struct conf *c =
	    load_ok("[pool z]\nsource = 192.0.2.1\n[pool default]\nsource = 192.0.2.2\n");
	(void)state;
	assert_string_equal(c->server.default_pool, "default");
	conf_free(c);
	c = load_ok("[server]\ndefault_pool = z\n[pool z]\nsource = 192.0.2.1\n"
		    "[pool default]\nsource = 192.0.2.2\n");
	assert_string_equal(c->server.default_pool, "z");
	conf_free(c);
	EXPECT_ERROR("[server]\ndefault_pool = main\n[source a]\naddress = 192.0.2.1\n",
		     "t.ini:2: [server] default_pool: no pool named 'main'");
	EXPECT_ERROR("[server]\nlisten = 127.0.0.1:1080 pool=nope\n",
		     "t.ini:2: [server] listen: no pool named 'nope' (for 127.0.0.1:1080)");
	EXPECT_ERROR("[user u]\npassword_hash = $6$a$b\n\npool = nope\n",
		     "t.ini:4: [user \"u\"] pool: no pool named 'nope'");
}

/* ---- listeners ---- */

static void test_listen_errors(void **state)
{
	(void)state;
	EXPECT_ERROR("[server]\nlisten = 127.0.0.1:1080\nlisten = 127.0.0.1:1080 pool=default\n",
		     "t.ini:3: [server] listen: 127.0.0.1:1080 is already a listener (line 2)");
	EXPECT_ERROR(
	    "[server]\nlisten = 127.0.0.1:1080 source=same\n",
	    "t.ini:2: [server] listen: source=same on 127.0.0.1:1080 needs that address to "
	    "be a source");
	EXPECT_ERROR("[server]\nlisten = 127.0.0.1:9180\n",
		     "t.ini:2: [server] listen: 127.0.0.1:9180 is also admin_listen");
	struct conf *c = load_ok("[server]\nlisten = 192.0.2.5:1080 source=same\n"
				 "listen = [2001:db8:1::9]:1080 source=same\n"
				 "listen = [::]:1081 source=same\n"
				 "[source a]\naddress = 192.0.2.5\n"
				 "[source n]\nprefix = 2001:db8:1::/64\n");
	assert_int_equal(c->server.n_listens, 3);
	conf_free(c);
	/* Port 0 is "any free port": such listeners never clash. */
	c = load_ok("[server]\nlisten = 127.0.0.1:0\nlisten = 127.0.0.1:0\n"
		    "admin_listen = 127.0.0.1:0\n");
	assert_int_equal(c->server.n_listens, 2);
	assert_true(c->server.admin_enabled);
	conf_free(c);
}

/* ---- users ---- */

static void test_user_forms(void **state)
{
	struct conf *c = load_ok("[server]\nauth = password\n"
				 "[user \"mta1\"]\npassword_hash = $y$j9T$salt$hash\npool = p\n"
				 "[user mta2]\npassword = plain-secret\n"
				 "[pool p]\nsource = 192.0.2.1\n");
	(void)state;
	assert_int_equal(c->n_users, 2);
	assert_int_equal(conf_find_user(c, "mta1"), 0);
	assert_int_equal(conf_find_user(c, "mta2"), 1);
	assert_int_equal(conf_find_user(c, "mta3"), -ENOENT);
	assert_string_equal(c->users[0].password_hash, "$y$j9T$salt$hash");
	assert_string_equal(c->users[0].pool, "p");
	assert_int_equal(c->users[0].line, 3);
	assert_null(c->users[1].password_hash);
	assert_string_equal(c->users[1].password, "plain-secret");
	assert_null(c->users[1].pool);
	assert_int_equal(c->n_warnings, 1);
	assert_non_null(strstr(c->warnings[0], "t.ini:7: [user \"mta2\"] password:"));
	assert_null(strstr(c->warnings[0], "plain-secret"));
	conf_free(c);
}

static void test_user_errors(void **state)
{
	(void)state;
	EXPECT_ERROR("[server]\nauth = password\n",
		     "t.ini:2: [server] auth: password needs at least one [user \"NAME\"] section");
	EXPECT_ERROR("[user u]\npool = default\n", "t.ini:1: [user \"u\"]: needs password_hash");
	EXPECT_ERROR("[user u]\npassword_hash = plaintext\n",
		     "t.ini:2: [user \"u\"] password_hash: expected a crypt(3) hash starting with "
		     "'$'",
		     "(value not shown)");
	EXPECT_ERROR("[user u]\npassword_hash = $6$a$b\npassword = x\n",
		     "t.ini:3: [user \"u\"] password: conflicts with password_hash at line 2");
	EXPECT_ERROR("[user u]\npassword =\n",
		     "t.ini:2: [user \"u\"] password: expected 1 to 255 characters");
	EXPECT_ERROR("[user u]\npassword = x\npool = a/b\n",
		     "t.ini:3: [user \"u\"] pool: expected a pool name");
	EXPECT_ERROR("[user \"a\"b\"]\n", "t.ini:1:");
}

/* ---- the embedded default ---- */

static void test_default_without_sources(void **state)
{
	char err[CONF_ERR_MAX] = "x";
	struct conf *c = NULL;
	(void)state;
	assert_int_equal(conf_load_default(NULL, &c, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_string_equal(c->path, "<default>");
	assert_int_equal(c->server.n_listens, 2);
	assert_string_equal(addr_text(&c->server.listens[0].addr), "127.0.0.1:1080");
	assert_string_equal(addr_text(&c->server.listens[1].addr), "[::1]:1080");
	assert_true(c->server.admin_enabled);
	assert_string_equal(addr_text(&c->server.admin_listen), "127.0.0.1:9180");
	assert_int_equal(c->server.auth, CONF_AUTH_NONE);
	assert_true(match(&c->server.allow, "127.0.0.1"));
	assert_false(match(&c->server.allow, "10.0.0.1"));
	assert_int_equal(c->n_sources, 1);
	assert_int_equal(c->sources[0].kind, CONF_SOURCE_DEFAULT_ROUTE);
	assert_string_equal(c->sources[0].name, "default");
	assert_int_equal(c->n_pools, 1);
	assert_string_equal(c->pools[0].name, "default");
	assert_int_equal(c->pools[0].n_entries, 1);
	assert_string_equal(c->server.default_pool, "default");
	conf_free(c);

	assert_int_equal(conf_load_default(" ", &c, err, sizeof(err)), 0);
	assert_int_equal(c->n_sources, 1);
	conf_free(c);
}

static void test_default_with_env_sources(void **state)
{
	char err[CONF_ERR_MAX];
	struct conf *c = NULL;
	(void)state;
	assert_int_equal(
	    conf_load_default("192.0.2.10, 2001:db8::11 ,192.0.2.11", &c, err, sizeof(err)), 0);
	assert_int_equal(c->n_sources, 4);
	const struct conf_pool *p = pool(c, "default");
	assert_int_equal(p->n_entries, 4);
	assert_string_equal(entry_name(c, p, 0), "default");
	assert_int_equal(c->sources[p->entries[0].source].kind, CONF_SOURCE_DEFAULT_ROUTE);
	assert_string_equal(entry_name(c, p, 1), "192.0.2.10");
	assert_string_equal(entry_name(c, p, 2), "2001:db8::11");
	assert_string_equal(entry_name(c, p, 3), "192.0.2.11");
	const struct conf_source *s = source(c, "2001:db8::11");
	assert_true(s->anonymous);
	assert_int_equal(s->kind, CONF_SOURCE_ADDRESS);
	assert_rule(&s->unplumbed, true, 0, 0, 300000);
	for (size_t e = 0; e < p->n_entries; e++)
		assert_int_equal(p->entries[e].weight, 1);
	conf_free(c);
}

static void test_default_env_errors(void **state)
{
	char err[CONF_ERR_MAX];
	struct conf sentinel, *c = &sentinel;
	(void)state;
	assert_int_equal(conf_load_default("192.0.2.10, mail.example.com", &c, err, sizeof(err)),
			 -EINVAL);
	assert_ptr_equal(c, &sentinel);
	assert_string_equal(err, "SOCKPOOL_SOURCES: expected IP addresses separated by ',', got "
				 "'mail.example.com'");
	assert_int_equal(conf_load_default("192.0.2.10,,192.0.2.11", &c, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "SOCKPOOL_SOURCES: expected IP addresses"));
	assert_int_equal(conf_load_default("192.0.2.10:25", &c, err, sizeof(err)), -EINVAL);
	assert_int_equal(conf_load_default("192.0.2.10, 192.0.2.10", &c, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "SOCKPOOL_SOURCES: 192.0.2.10 is listed twice");
	assert_ptr_equal(c, &sentinel);
	assert_int_equal(conf_load_default(NULL, NULL, err, sizeof(err)), -EINVAL);
}

/* ---- files, examples, dump, lookups ---- */

static struct conf *load_example(const char *name)
{
	char path[512], err[CONF_ERR_MAX] = "";
	struct conf *c = NULL;

	snprintf(path, sizeof(path), "%s/%s", EXAMPLES_DIR, name);
	int rc = conf_load_file(path, &c, err, sizeof(err));
	if (rc)
		fail_msg("%s: %d %s", path, rc, err);
	assert_string_equal(c->path, path);
	return c;
}

/* How many warnings contain `want`. */
static size_t warnings_with(const struct conf *c, const char *want)
{
	size_t n = 0;

	for (size_t i = 0; i < c->n_warnings; i++)
		n += strstr(c->warnings[i], want) != NULL;
	return n;
}

#define TWO_SOURCES                                                                                \
	"[source \"ip-1\"]\naddress = 192.0.2.1\n[source \"ip-2\"]\naddress = 192.0.2.2\n"

/* ` ;` is a comment to inih, also on a list key: an item after it is lost. */
static void test_lost_list_item_warned(void **state)
{
	static const struct {
		const char *text, *want; /* want NULL: no such warning */
	} rows[] = {
	    {TWO_SOURCES "[pool p]\nsource = ip-1 ; ip-2\n",
	     "t.ini:6: [pool \"p\"] source: ' ;' starts a comment, so 'ip-2' is not in the pool; "
	     "a list item probably lost: write `a; b` without a blank before ';'"},
	    {TWO_SOURCES "[pool p]\nsource = ip-1, ip-2 ;192.0.2.9 weight=2\n",
	     "t.ini:6: [pool \"p\"] source: ' ;' starts a comment, so '192.0.2.9' is not"},
	    /* A source defined after the pool is a source too. */
	    {"[pool p]\nsource = ip-1 ; ip-2, ip-3\n" TWO_SOURCES,
	     "t.ini:2: [pool \"p\"] source: ' ;' starts a comment, so 'ip-2' is not"},
	    {TWO_SOURCES "[pool p]\nsource = ip-1; ip-2\n", NULL},
	    {TWO_SOURCES "[pool p]\nsource = ip-1, ip-2 ; default weight 1; lists with , or ;\n",
	     NULL},
	    {"[server]\nallow = 10.0.0.0/8 ; 192.168.0.0/16\n",
	     "t.ini:2: [server] allow: ' ;' starts a comment, so '192.168.0.0/16' is not in the "
	     "list; a list item probably lost"},
	    {"[server]\nallow = 10.0.0.0/8 ; ::1\n",
	     "[server] allow: ' ;' starts a comment, so '::1'"},
	    {"[server]\nallow = 10.0.0.0/8 ; office network\n", NULL},
	    {"[server]\nallow = 10.0.0.0/8; 192.168.0.0/16\n", NULL},
	    {"[server]\ndeny_destinations = 10.0.0.0/8 ; 172.16.0.0/12, x\n",
	     "t.ini:2: [server] deny_destinations: ' ;' starts a comment, so '172.16.0.0/12'"},
	    {"[server]\nallow_destinations = 127.0.0.1 ;127.0.0.2\n",
	     "t.ini:2: [server] allow_destinations: ' ;' starts a comment, so '127.0.0.2'"},
	    {"[server]\nlisten = 127.0.0.1:1080 ; [::1]:1080\n",
	     "t.ini:2: [server] listen: ' ;' starts a comment, so '[::1]:1080'"},
	    {"[server]\nlisten = 127.0.0.1:1080 ; loopback only\n", NULL},
	    /* Not a list key: a comment is a comment. */
	    {"[server]\nadmin_listen = 127.0.0.1:9180 ; 127.0.0.1:9181\n", NULL},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct conf *c = load_ok(rows[i].text);
		if (rows[i].want) {
			if (warnings_with(c, rows[i].want) != 1)
				fail_msg("row %zu: no warning '%s' (%zu warnings, first: %s)", i,
					 rows[i].want, c->n_warnings,
					 c->n_warnings ? c->warnings[0] : "-");
		} else {
			assert_int_equal(warnings_with(c, "probably lost"), 0);
		}
		conf_free(c);
	}
}

static void test_unused_source_warned(void **state)
{
	struct conf *c;

	(void)state;
	c = load_ok(TWO_SOURCES "[pool p]\nsource = ip-1\n");
	assert_int_equal(c->n_warnings, 1);
	assert_non_null(strstr(c->warnings[0], "t.ini:3: [source \"ip-2\"]: no pool uses this "
					       "source; only BIND and source=same requests can "
					       "reach it; add it to a pool with 'source = ip-2'"));
	conf_free(c);
	/* In any pool, even with weight 0 (excluded on purpose), is used. */
	c = load_ok(TWO_SOURCES
		    "[pool p]\nsource = ip-1\n[pool q]\nsource = ip-2 weight=0, ip-1\n");
	assert_int_equal(warnings_with(c, "no pool uses"), 0);
	conf_free(c);
	/* A source=same listener on its address, or on a wildcard, uses it. */
	c = load_ok("[server]\nlisten = 192.0.2.2:1082 source=same\n" TWO_SOURCES
		    "[pool p]\nsource = ip-1\n");
	assert_int_equal(warnings_with(c, "no pool uses"), 0);
	conf_free(c);
	c = load_ok("[server]\nlisten = 0.0.0.0:1082 source=same\n" TWO_SOURCES
		    "[pool p]\nsource = ip-1\n");
	assert_int_equal(warnings_with(c, "no pool uses"), 0);
	conf_free(c);
	c = load_ok("[server]\nlisten = 192.0.2.1:1082 source=same\n" TWO_SOURCES
		    "[pool p]\nsource = ip-1\n");
	assert_int_equal(warnings_with(c, "[source \"ip-2\"]: no pool uses"), 1);
	conf_free(c);
	/* Without [pool] every source is in the implicit one. */
	c = load_ok(TWO_SOURCES);
	assert_int_equal(c->n_warnings, 0);
	conf_free(c);
}

static void test_pool_all_weights_zero_warned(void **state)
{
	struct conf *c = load_ok(TWO_SOURCES "[pool p]\nsource = ip-1 weight=0, ip-2 weight=0\n"
					     "[pool q]\nsource = ip-1, ip-2 weight=0\n");

	(void)state;
	assert_int_equal(warnings_with(c, "every source has weight 0"), 1);
	assert_int_equal(warnings_with(c, "[pool \"p\"]: every source has weight 0"), 1);
	conf_free(c);
}

/* A temporary directory with one config file, mode `dir_mode` / `file_mode`. */
struct tmpconf {
	char dir[64];
	char path[128];
};

static void tmpconf_write(struct tmpconf *t, const char *text, mode_t dir_mode, mode_t file_mode)
{
	FILE *f;

	snprintf(t->dir, sizeof(t->dir), "/tmp/sockpool-conf-XXXXXX");
	assert_non_null(mkdtemp(t->dir));
	snprintf(t->path, sizeof(t->path), "%s/sockpool.ini", t->dir);
	f = fopen(t->path, "w");
	assert_non_null(f);
	assert_true(fputs(text, f) >= 0);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(t->path, file_mode), 0);
	assert_int_equal(chmod(t->dir, dir_mode), 0);
}

static void tmpconf_remove(struct tmpconf *t)
{
	assert_int_equal(unlink(t->path), 0);
	assert_int_equal(rmdir(t->dir), 0);
}

static struct conf *load_tmp(const struct tmpconf *t)
{
	char err[CONF_ERR_MAX] = "";
	struct conf *c = NULL;

	if (conf_load_file(t->path, &c, err, sizeof(err)) != 0)
		fail_msg("%s: %s", t->path, err);
	return c;
}

static void test_secrets_readable_by_all_warned(void **state)
{
	static const char *const secret[] = {
	    "[server]\nadmin_token = s3cret\n",
	    ("[server]\nauth = password\n[user \"u\"]\npassword_hash = "
	     "$6$aEU.0yqhcHP95aL3$bhGeEBp3bRjsX/ESOl/3AbvYydWaQZPSjDLqeXKU11fRWyYXcoLEDxbn56Uqx/"
	     "CNf3Ah.mrptn801FH3uorBQ0\n"),
	    "[server]\nauth = password\n[user \"u\"]\npassword = pw\n",
	    ("[source \"far\"]\nsocks5_proxy_server = 198.51.100.7:1080\n"
	     "socks5_proxy_username = u\nsocks5_proxy_password = pw\n"),
	};
	struct tmpconf t;
	struct conf *c;

	(void)state;
	for (size_t i = 0; i < sizeof(secret) / sizeof(secret[0]); i++) {
		tmpconf_write(&t, secret[i], 0755, 0644);
		c = load_tmp(&t);
		if (warnings_with(c, "every user of this host can read it (mode 0644) and it holds "
				     "passwords or tokens; chmod o-r") != 1)
			fail_msg("row %zu: no mode warning", i);
		/* Never the secret itself. */
		for (size_t w = 0; w < c->n_warnings; w++) {
			assert_null(strstr(c->warnings[w], "s3cret"));
			assert_null(strstr(c->warnings[w], "$6$"));
		}
		conf_free(c);
		/* Group-readable is how `user =` gets its access: fine. */
		assert_int_equal(chmod(t.path, 0640), 0);
		c = load_tmp(&t);
		assert_int_equal(warnings_with(c, "every user of this host"), 0);
		conf_free(c);
		tmpconf_remove(&t);
	}
	/* No secrets: nothing to hide. */
	tmpconf_write(&t, "[server]\nlisten = 127.0.0.1:1080\n", 0755, 0644);
	c = load_tmp(&t);
	assert_int_equal(c->n_warnings, 0);
	conf_free(c);
	tmpconf_remove(&t);
	/* From a string there is no file to look at. */
	c = load_ok(secret[0]);
	assert_int_equal(c->n_warnings, 0);
	conf_free(c);
}

/* The mode-bit judgement itself, with made-up credentials. */
static void test_may_read(void **state)
{
	struct tmpconf t;
	struct stat st;
	char why[256];
	gid_t other_group = 54321;

	(void)state;
	tmpconf_write(&t, "[server]\n", 0750, 0640);
	assert_int_equal(stat(t.path, &st), 0);
	struct conf__cred owner = {st.st_uid == 0 ? 4242 : st.st_uid, 1, NULL, 0};
	struct conf__cred group = {4243, st.st_gid, NULL, 0};
	struct conf__cred supp = {4244, 1, &st.st_gid, 1};
	struct conf__cred other = {4245, 1, &other_group, 1};
	struct conf__cred root = {0, 0, NULL, 0};

	if (owner.uid == 4242) {
		/* Running as root: the file is root's, so judge a made-up owner. */
		assert_int_equal(chown(t.path, 4242, st.st_gid), 0);
		assert_int_equal(chown(t.dir, 4242, st.st_gid), 0);
	}
	assert_int_equal(conf__may_read(t.path, &owner, why, sizeof(why)), 1);
	assert_int_equal(conf__may_read(t.path, &group, why, sizeof(why)), 1);
	assert_int_equal(conf__may_read(t.path, &supp, why, sizeof(why)), 1);
	assert_int_equal(conf__may_read(t.path, &root, why, sizeof(why)), 1);
	/* Others: the directory is in the way first. */
	assert_int_equal(conf__may_read(t.path, &other, why, sizeof(why)), 0);
	assert_string_equal(why, t.dir);
	assert_int_equal(chmod(t.dir, 0755), 0);
	assert_int_equal(conf__may_read(t.path, &other, why, sizeof(why)), 0);
	assert_string_equal(why, t.path);
	assert_int_equal(chmod(t.path, 0644), 0);
	assert_int_equal(conf__may_read(t.path, &other, why, sizeof(why)), 1);
	/* Owner bits win over group bits: an owner without r cannot. */
	assert_int_equal(chmod(t.path, 0044), 0);
	assert_int_equal(conf__may_read(t.path, &owner, why, sizeof(why)), 0);
	assert_int_equal(chmod(t.path, 0600), 0);
	tmpconf_remove(&t);
	assert_int_equal(conf__may_read(t.path, &other, why, sizeof(why)), -ENOENT);
}

/* `user =` that cannot read the file: a reload would fail. nobody is on
 * every Debian system and owns nothing in /tmp. */
static void test_user_cannot_read_warned(void **state)
{
	struct tmpconf t;
	struct conf *c;

	(void)state;
	tmpconf_write(&t, "[server]\nuser = nobody\n", 0700, 0600);
	c = load_tmp(&t);
	assert_int_equal(c->n_warnings, 1);
	assert_non_null(strstr(c->warnings[0], "[server] user: 'nobody' (uid "));
	assert_non_null(strstr(c->warnings[0], "so a reload (SIGHUP) will fail"));
	assert_non_null(strstr(c->warnings[0], t.dir)); /* the directory is in the way */
	conf_free(c);
	assert_int_equal(chmod(t.dir, 0755), 0);
	c = load_tmp(&t);
	assert_int_equal(c->n_warnings, 1);
	assert_non_null(strstr(c->warnings[0], t.path));
	conf_free(c);
	assert_int_equal(chmod(t.path, 0644), 0);
	c = load_tmp(&t);
	assert_int_equal(c->n_warnings, 0);
	conf_free(c);
	tmpconf_remove(&t);

	tmpconf_write(&t, "[server]\nuser = no-such-user-here\n", 0755, 0644);
	c = load_tmp(&t);
	assert_int_equal(c->n_warnings, 1);
	assert_non_null(strstr(c->warnings[0], "t.ini") == NULL ? c->warnings[0] : NULL);
	assert_non_null(strstr(c->warnings[0], "no user named 'no-such-user-here'"));
	conf_free(c);
	tmpconf_remove(&t);
}

static bool example_world_readable(const char *name)
{
	char path[512];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", EXAMPLES_DIR, name);
	assert_int_equal(stat(path, &st), 0);
	return st.st_mode & S_IROTH;
}

static void test_examples_load(void **state)
{
	(void)state;
	struct conf *c = load_example("default.ini");
	struct conf *d = NULL;
	char err[CONF_ERR_MAX];
	assert_int_equal(conf_load_default(NULL, &d, err, sizeof(err)), 0);
	/* default.ini is the embedded default written out */
	assert_int_equal(c->server.n_listens, d->server.n_listens);
	for (size_t i = 0; i < c->server.n_listens; i++)
		assert_string_equal(addr_text(&c->server.listens[i].addr),
				    addr_text(&d->server.listens[i].addr));
	assert_int_equal(c->server.admin_enabled, d->server.admin_enabled);
	assert_memory_equal(&c->server.admin_listen, &d->server.admin_listen,
			    sizeof(struct sockaddr_in));
	assert_int_equal(c->server.allow.count, d->server.allow.count);
	assert_memory_equal(c->server.allow.items, d->server.allow.items,
			    c->server.allow.count * sizeof(struct conf_cidr));
	assert_int_equal(c->server.auth, d->server.auth);
	assert_int_equal(c->server.handshake_timeout_ms, d->server.handshake_timeout_ms);
	assert_int_equal(c->server.idle_timeout_ms, d->server.idle_timeout_ms);
	assert_int_equal(c->server.tcp_keepalive_ms, d->server.tcp_keepalive_ms);
	assert_int_equal(c->server.max_connections, d->server.max_connections);
	assert_int_equal(c->n_sources, 1);
	assert_int_equal(c->sources[0].kind, CONF_SOURCE_DEFAULT_ROUTE);
	assert_string_equal(c->server.default_pool, d->server.default_pool);
	assert_int_equal(c->n_warnings, 0);
	conf_free(c);
	conf_free(d);

	c = load_example("kumomta.ini");
	assert_int_equal(c->server.bind_unlisted, CONF_BIND_UNLISTED_DENY);
	assert_string_equal(c->server.default_pool, "main");
	assert_rule(&source(c, "ip-1")->unplumbed, true, 3, 60000, 300000);
	assert_true(source(c, "192.0.2.99")->anonymous);
	/* It holds a password hash: a checkout readable by everyone is told so. */
	if (example_world_readable("kumomta.ini")) {
		assert_int_equal(c->n_warnings, 1);
		assert_non_null(strstr(c->warnings[0], "every user of this host can read it"));
	} else {
		assert_int_equal(c->n_warnings, 0);
	}
	conf_free(c);

	c = load_example("exim.ini");
	assert_int_equal(c->server.auth, CONF_AUTH_PASSWORD);
	assert_int_equal(pool(c, "outbound")->strategy, CONF_STRATEGY_FAILOVER);
	assert_int_equal(c->n_users, 2);
	/* It holds password hashes: a checkout readable by everyone is told so. */
	if (example_world_readable("exim.ini")) {
		assert_int_equal(c->n_warnings, 1);
		assert_non_null(strstr(c->warnings[0], "every user of this host can read it"));
	} else {
		assert_int_equal(c->n_warnings, 0);
	}
	conf_free(c);

	c = load_example("loopback-rotation.ini");
	assert_int_equal(c->server.n_listens, 1);
	assert_string_equal(addr_text(&c->server.listens[0].addr), "127.0.0.1:1080");
	const struct conf_pool *p = pool(c, "rotation");
	assert_int_equal(p->strategy, CONF_STRATEGY_ROUND_ROBIN);
	assert_int_equal(p->n_entries, 3);
	for (size_t i = 0; i < 3; i++) {
		char want[16];
		snprintf(want, sizeof(want), "127.0.0.%zu", i + 1);
		assert_string_equal(addr_text(&c->sources[p->entries[i].source].addr), want);
		assert_int_equal(p->entries[i].weight, 1);
	}
	assert_string_equal(c->server.default_pool, "rotation");
	conf_free(c);

	c = load_example("docker.ini");
	assert_int_equal(c->server.n_listens, 1);
	assert_true(c->server.admin_enabled);
	assert_string_equal(addr_text(&c->server.admin_listen), "127.0.0.1:9180");
	assert_int_equal(c->sources[0].kind, CONF_SOURCE_DEFAULT_ROUTE);
	assert_int_equal(c->n_warnings, 0);
	conf_free(c);
}

static void test_load_file_errors(void **state)
{
	char err[CONF_ERR_MAX], path[] = "/tmp/sockpool-test-conf-XXXXXX";
	struct conf sentinel, *c = &sentinel;
	(void)state;
	assert_int_equal(conf_load_file("/nonexistent/sockpool.ini", &c, err, sizeof(err)),
			 -ENOENT);
	assert_string_equal(err, "/nonexistent/sockpool.ini: cannot open: No such file or "
				 "directory");
	assert_ptr_equal(c, &sentinel);
	assert_int_equal(conf_load_file(EXAMPLES_DIR, &c, err, sizeof(err)), -EISDIR);
	assert_ptr_equal(c, &sentinel);

	int fd = mkstemp(path);
	assert_true(fd >= 0);
	static const char text[] = "[server]\nlisten = 127.0.0.1:1080\n\x00garbage\n";
	assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)sizeof(text) - 1);
	close(fd);
	assert_int_equal(conf_load_file(path, &c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, ":3: NUL byte in line"));
	assert_ptr_equal(c, &sentinel);

	/* Errors from a file name the file. */
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("[server]\r\nauth = none\r\nauth = none\r\n", f);
	fclose(f);
	assert_int_equal(conf_load_file(path, &c, err, sizeof(err)), -EINVAL);
	char want[128];
	snprintf(want, sizeof(want), "%s:3: [server] auth: set twice", path);
	assert_non_null(strstr(err, want));
	unlink(path);

	/* A short error buffer is cut, not overrun; NULL is fine too. */
	char tiny[8];
	assert_int_equal(conf_load_string("[x]\n", "t.ini", &c, tiny, sizeof(tiny)), -EINVAL);
	assert_string_equal(tiny, "t.ini:1");
	assert_int_equal(conf_load_string("[x]\n", "t.ini", &c, NULL, 0), -EINVAL);
	assert_int_equal(conf_load_string(NULL, "t.ini", &c, err, sizeof(err)), -EINVAL);
	assert_ptr_equal(c, &sentinel);
	/* Without a name, messages say <string>. */
	assert_int_equal(conf_load_string("[x]\n", NULL, &c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "<string>:1: unknown section [x]"));
}

static void test_dump_output(void **state)
{
	struct conf *c = load_ok("[server]\nlisten = 127.0.0.1:1080\nlisten = [::1]:0 pool=main\n"
				 "admin_token = t0p\n"
				 "[source \"ip-1\"]\naddress = 192.0.2.10\n"
				 "suspend_when_unplumbed.trigger = 3/1m\n"
				 "suspend_when_unplumbed.duration = 5m\n"
				 "suspend_when_proxy_unhealthy = off\n"
				 "rate = 100/s\n"
				 "[source far]\nsocks5_proxy_server = 198.51.100.7:1080\n"
				 "socks5_proxy_username = u\nsocks5_proxy_password = pw-xyz\n"
				 "[pool main]\nsource = ip-1 weight=2, 192.0.2.99\n"
				 "[pool f]\nstrategy = failover\nsource = far priority=3\n");
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	(void)state;
	assert_non_null(out);
	conf_dump(c, out);
	fclose(out);
	static const char *const lines[] = {
	    "\nlisten 127.0.0.1:1080 pool=main\n",
	    "\nlisten [::1]:0 pool=main\n",
	    "\nadmin_listen 127.0.0.1:9180\n",
	    "\nallow 127.0.0.0/8, ::1/128\n",
	    "\nsource ip-1 address=192.0.2.10 unplumbed=3/1m for 5m proxy_unhealthy=off "
	    "rate=100/1s\n",
	    "\nsource 192.0.2.99 address=192.0.2.99 (anonymous) unplumbed=immediate for 5m "
	    "proxy_unhealthy=immediate for 5m\n",
	    "\npool main strategy=round-robin\n  ip-1 weight=2\n  192.0.2.99 weight=1\n",
	    "\npool f strategy=failover\n  far weight=1 priority=3\n",
	    "\ndefault_pool main\n",
	    "\nadmin_token set (not shown)\n",
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		if (!strstr(buf, lines[i]))
			fail_msg("dump lacks '%s'\n--- dump ---\n%s", lines[i], buf);
	assert_null(strstr(buf, "t0p"));
	assert_null(strstr(buf, "pw-xyz"));
	free(buf);
	conf_free(c);
}

static void test_find_functions(void **state)
{
	struct conf *c =
	    load_ok("[source a]\naddress = 192.0.2.1\n[source b]\naddress = 192.0.2.2\n"
		    "[pool p]\nsource = b, a\n");
	(void)state;
	assert_int_equal(conf_find_source(c, "a"), 0);
	assert_int_equal(conf_find_source(c, "b"), 1);
	assert_int_equal(conf_find_source(c, "c"), -ENOENT);
	assert_int_equal(conf_find_pool(c, "p"), 0);
	assert_int_equal(conf_find_pool(c, "default"), -ENOENT);
	assert_int_equal(conf_find_user(c, "a"), -ENOENT);
	assert_int_equal(conf_find_source(NULL, "a"), -EINVAL);
	assert_int_equal(conf_find_pool(c, NULL), -EINVAL);
	conf_free(c);
	conf_free(NULL);
}

static void test_load_operation_keys(void **state)
{
	struct conf *c = load_ok("[server]\n"
				 "log_target = syslog\n"
				 "log_timestamps = off\n"
				 "access_log = /var/log/sockpool/access.log\n"
				 "allow_destinations = 127.0.0.1/32; 10.1.0.0/16\n"
				 "allow_destinations = ::1\n"
				 "stall_timeout = 0\n"
				 "reload_on_change = yes\n"
				 "relay = COPY\n"
				 "[source up]\n"
				 "socks5_proxy_server = 198.51.100.7:1080\n"
				 "health_check = 1m\n"
				 "resume_when_healthy = yes\n");
	const struct conf_server *sv = &c->server;
	(void)state;
	assert_int_equal(sv->log_target, CONF_LOG_TARGET_SYSLOG);
	assert_true(sv->log_timestamps_set);
	assert_false(sv->log_timestamps);
	assert_true(sv->access_log);
	assert_string_equal(sv->access_log_file, "/var/log/sockpool/access.log");
	assert_int_equal(sv->allow_destinations.count, 3);
	assert_true(match(&sv->allow_destinations, "10.1.2.3"));
	assert_false(match(&sv->allow_destinations, "127.0.0.2"));
	/* The destination policy acts on it: no "not implemented" warning. */
	for (size_t i = 0; i < c->n_warnings; i++)
		assert_null(strstr(c->warnings[i], "allow_destinations"));
	assert_int_equal(sv->stall_timeout_ms, 0);
	assert_true(sv->reload_on_change);
	assert_int_equal(sv->relay, CONF_RELAY_COPY);
	assert_int_equal(c->sources[0].health_check_ms, 60000);
	assert_true(c->sources[0].resume_when_healthy);
	/* the upstream checks are implemented: no warning names their keys */
	for (size_t i = 0; i < c->n_warnings; i++) {
		assert_null(strstr(c->warnings[i], "health_check"));
		assert_null(strstr(c->warnings[i], "resume_when_healthy"));
	}
	conf_free(c);

	c = load_ok("[server]\naccess_log = on\nlog_target = journald\n"
		    "[source a]\naddress = 192.0.2.1\n");
	assert_true(c->server.access_log);
	assert_null(c->server.access_log_file);
	assert_int_equal(c->server.log_target, CONF_LOG_TARGET_JOURNALD);
	conf_free(c);

	EXPECT_ERROR("[server]\nlog_target = file\n", "t.ini:2:", "log_target",
		     "stderr | syslog | journald");
	EXPECT_ERROR("[server]\nrelay = zerocopy\n", "t.ini:2:", "relay", "copy | splice");
	EXPECT_ERROR("[server]\nstall_timeout = soon\n", "t.ini:2:", "stall_timeout");
	EXPECT_ERROR("[server]\nallow_destinations = 10.0.0.0/8,,\n",
		     "t.ini:2:", "allow_destinations");
	EXPECT_ERROR("[server]\nreload_on_change = maybe\n", "t.ini:2:", "reload_on_change");
	EXPECT_ERROR("[source a]\naddress = 192.0.2.1\nhealth_check = 30s\n",
		     "t.ini:3:", "health_check", "only applies with socks5_proxy_server");
	EXPECT_ERROR("[defaults]\nhealth_check = 30s\n", "t.ini:2:", "health_check");
}

static void test_key_names(void **state)
{
	bool seen_listen = false, seen_stall = false, seen_trigger = false;
	const char *k;
	(void)state;

	for (size_t i = 0; (k = conf_key_name("server", i)); i++) {
		seen_listen |= !strcmp(k, "listen");
		seen_stall |= !strcmp(k, "stall_timeout");
	}
	assert_true(seen_listen && seen_stall);
	for (size_t i = 0; (k = conf_key_name("defaults", i)); i++) {
		assert_null(strstr(k, "address")); /* identity keys are not policy */
		seen_trigger |= !strcmp(k, "suspend_when_unplumbed.trigger");
	}
	assert_true(seen_trigger);
	assert_string_equal(conf_key_name("pool", 0), "strategy");
	assert_string_equal(conf_key_name("user", 0), "password_hash");
	assert_null(conf_key_name("user", 3));
	assert_null(conf_key_name("nonsense", 0));
	assert_null(conf_key_name(NULL, 0));
}

static void test_addr_key(void **state)
{
	struct sockaddr_storage a, b;
	uint8_t ka[16], kb[16];
	(void)state;

	assert_int_equal(conf_parse_addr("192.0.2.7", &a), 0);
	assert_int_equal(conf_parse_addr("::ffff:192.0.2.7", &b), 0);
	assert_int_equal(conf_addr_key((struct sockaddr *)&a, ka), 0);
	assert_int_equal(conf_addr_key((struct sockaddr *)&b, kb), 0);
	assert_memory_equal(ka, kb, 16); /* v4 and v4-mapped key alike */
	assert_int_equal(ka[10], 0xff);
	assert_int_equal(ka[15], 7);
	assert_int_equal(conf_parse_addr("2001:db8::7", &b), 0);
	assert_int_equal(conf_addr_key((struct sockaddr *)&b, kb), 0);
	assert_int_equal(kb[0], 0x20);
	assert_memory_not_equal(ka, kb, 16);
	a.ss_family = AF_UNIX;
	memset(ka, 1, sizeof ka);
	assert_int_equal(conf_addr_key((struct sockaddr *)&a, ka), -EINVAL);
	assert_int_equal(ka[0] | ka[15], 0);
	assert_int_equal(conf_addr_key(NULL, ka), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_duration_units),
	    cmocka_unit_test(test_duration_rejects_bad_forms),
	    cmocka_unit_test(test_duration_overflow),
	    cmocka_unit_test(test_threshold_forms),
	    cmocka_unit_test(test_threshold_rejects_bad_forms),
	    cmocka_unit_test(test_bool_values),
	    cmocka_unit_test(test_uint_separators_and_max),
	    cmocka_unit_test(test_addr_port_forms),
	    cmocka_unit_test(test_addr_without_port),
	    cmocka_unit_test(test_addr_str_formats),
	    cmocka_unit_test(test_cidr_parse),
	    cmocka_unit_test(test_cidr_list_parse),
	    cmocka_unit_test(test_cidr_list_match),
	    cmocka_unit_test(test_load_spec_example),
	    cmocka_unit_test(test_load_operation_keys),
	    cmocka_unit_test(test_key_names),
	    cmocka_unit_test(test_addr_key),
	    cmocka_unit_test(test_load_server_defaults),
	    cmocka_unit_test(test_load_server_values),
	    cmocka_unit_test(test_load_crlf_and_bom),
	    cmocka_unit_test(test_load_comments_and_separators),
	    cmocka_unit_test(test_load_long_line_rejected),
	    cmocka_unit_test(test_load_repeatable_keys_accumulate),
	    cmocka_unit_test(test_load_duplicate_key_rejected),
	    cmocka_unit_test(test_load_unknown_keys_and_sections),
	    cmocka_unit_test(test_load_syntax_errors),
	    cmocka_unit_test(test_load_duplicate_sections_rejected),
	    cmocka_unit_test(test_load_first_error_wins),
	    cmocka_unit_test(test_load_server_value_errors),
	    cmocka_unit_test(test_load_source_value_errors),
	    cmocka_unit_test(test_load_source_kind_errors),
	    cmocka_unit_test(test_load_source_kinds),
	    cmocka_unit_test(test_defaults_inherited_before_and_after),
	    cmocka_unit_test(test_defaults_overridden_by_source),
	    cmocka_unit_test(test_rules_built_in_when_unset),
	    cmocka_unit_test(test_rule_off_in_defaults),
	    cmocka_unit_test(test_rule_trigger_without_duration_rejected),
	    cmocka_unit_test(test_rule_off_conflicts_rejected),
	    cmocka_unit_test(test_pool_anonymous_sources_shared),
	    cmocka_unit_test(test_pool_bare_address_is_named_source),
	    cmocka_unit_test(test_pool_strategies),
	    cmocka_unit_test(test_pool_errors),
	    cmocka_unit_test(test_pool_weight_zero_warned),
	    cmocka_unit_test(test_lost_list_item_warned),
	    cmocka_unit_test(test_unused_source_warned),
	    cmocka_unit_test(test_pool_all_weights_zero_warned),
	    cmocka_unit_test(test_secrets_readable_by_all_warned),
	    cmocka_unit_test(test_may_read),
	    cmocka_unit_test(test_user_cannot_read_warned),
	    cmocka_unit_test(test_pool_implicit_default),
	    cmocka_unit_test(test_pool_implicit_default_route),
	    cmocka_unit_test(test_pool_default_pool_choice),
	    cmocka_unit_test(test_listen_errors),
	    cmocka_unit_test(test_user_forms),
	    cmocka_unit_test(test_user_errors),
	    cmocka_unit_test(test_default_without_sources),
	    cmocka_unit_test(test_default_with_env_sources),
	    cmocka_unit_test(test_default_env_errors),
	    cmocka_unit_test(test_examples_load),
	    cmocka_unit_test(test_load_file_errors),
	    cmocka_unit_test(test_dump_output),
	    cmocka_unit_test(test_find_functions),
	};
	return cmocka_run_group_tests_name("conf", tests, NULL, NULL);
}
