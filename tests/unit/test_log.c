/* Unit tests for the log module: log_quote over hostile strings, the line
 * sanitiser, the rate limiter, timestamps, journald fields and the native
 * journal protocol, the access log file and its reopen, and whole lines as
 * log_msg writes them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "logsink.h"
#include "ratelimit.h"

static char qbuf[LOG_QUOTE_SIZE(1024)];

static const char *q(const char *s)
{
	return log_quote_str(qbuf, sizeof qbuf, s);
}

static const char *qn(const char *s, size_t n)
{
	return log_quote(qbuf, sizeof qbuf, s, n);
}

/* No byte below 0x20 and no DEL anywhere. */
static void assert_no_controls(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			fail_msg("control byte 0x%02x in %s", *p, s);
}

/* ---- log_quote ---- */

static void test_quote_plain_values_stay_bare(void **state)
{
	(void)state;
	assert_string_equal(q("mta1"), "mta1");
	assert_string_equal(q("example.org:25"), "example.org:25");
	assert_string_equal(q("[2001:db8::1]:25"), "[2001:db8::1]:25");
	/* well-formed UTF-8 passes as it is */
	assert_string_equal(q("b\xc3\xa9la"), "b\xc3\xa9la");
	assert_string_equal(q("\xf0\x9f\x98\x80"), "\xf0\x9f\x98\x80");
	assert_string_equal(q("\xe2\x82\xac"), "\xe2\x82\xac");
}

static void test_quote_empty_dash_and_null(void **state)
{
	(void)state;
	assert_string_equal(q(""), "\"\"");
	assert_string_equal(q(NULL), "-");
	/* a user literally named `-` is not the same as no user */
	assert_string_equal(q("-"), "\"-\"");
	assert_string_equal(q("--"), "--");
}

static void test_quote_blanks_quotes_and_equals(void **state)
{
	(void)state;
	assert_string_equal(q("a b"), "\"a b\"");
	assert_string_equal(q("user=root"), "\"user=root\"");
	assert_string_equal(q("x source=default"), "\"x source=default\"");
	assert_string_equal(q("say \"hi\""), "\"say \\\"hi\\\"\"");
	assert_string_equal(q("a\\b"), "\"a\\\\b\"");
	assert_string_equal(q("\""), "\"\\\"\"");
}

static void test_quote_forged_line(void **state)
{
	(void)state;
	assert_string_equal(q("zz\nWARN source: source suspended source=default"),
			    "\"zz\\nWARN source: source suspended source=default\"");
	assert_string_equal(q("a\r\nINFO access: id=1"), "\"a\\r\\nINFO access: id=1\"");
	assert_string_equal(q("tab\there"), "\"tab\\there\"");
	assert_no_controls(q("zz\nWARN x\r\n\t\x1b[2J"));
}

static void test_quote_control_bytes_del_and_esc(void **state)
{
	char in[2] = {0, 0};

	(void)state;
	assert_string_equal(q("\x1b[31mred\x1b[0m"), "\"\\x1b[31mred\\x1b[0m\"");
	assert_string_equal(q("a\x7f"), "\"a\\x7f\"");
	assert_string_equal(q("\x01\x02\x1f"), "\"\\x01\\x02\\x1f\"");
	assert_string_equal(q("bell\a"), "\"bell\\x07\"");
	/* every single byte below 0x20 and DEL is escaped, never raw */
	for (int c = 1; c < 0x20; c++) {
		in[0] = (char)c;
		assert_no_controls(q(in));
		assert_true(q(in)[0] == '"');
	}
	/* NUL inside the n bytes */
	assert_string_equal(qn("a\0b", 3), "\"a\\x00b\"");
	/* C1 controls (CSI as U+009B) are escaped too */
	assert_string_equal(q("x\xc2\x9b"
			      "2J"),
			    "\"x\\xc2\\x9b2J\"");
	assert_string_equal(q("\xc2\xa0"), "\xc2\xa0"); /* U+00A0 is no control */
}

static void test_quote_invalid_utf8(void **state)
{
	(void)state;
	/* stray continuation, bytes never valid, cut sequences */
	assert_string_equal(q("\x80"), "\"\\x80\"");
	assert_string_equal(q("a\xff"
			      "b"),
			    "\"a\\xffb\"");
	assert_string_equal(q("\xfe"), "\"\\xfe\"");
	assert_string_equal(q("\xe2\x82"), "\"\\xe2\\x82\"");
	assert_string_equal(q("\xe2\x82x"), "\"\\xe2\\x82x\"");
	assert_string_equal(q("\xf0\x9f\x98"), "\"\\xf0\\x9f\\x98\"");
	/* overlong forms: '/' as 2, 3 and 4 bytes; NUL as C0 80 */
	assert_string_equal(q("\xc0\xaf"), "\"\\xc0\\xaf\"");
	assert_string_equal(q("\xc1\xbf"), "\"\\xc1\\xbf\"");
	assert_string_equal(q("\xe0\x80\xaf"), "\"\\xe0\\x80\\xaf\"");
	assert_string_equal(q("\xf0\x80\x80\xaf"), "\"\\xf0\\x80\\x80\\xaf\"");
	assert_string_equal(q("\xc0\x80"), "\"\\xc0\\x80\"");
	/* overlong newline must not come out as a newline */
	assert_string_equal(q("\xc0\x8a"), "\"\\xc0\\x8a\"");
	/* surrogates and code points past U+10FFFF */
	assert_string_equal(q("\xed\xa0\x80"), "\"\\xed\\xa0\\x80\"");
	assert_string_equal(q("\xf4\x90\x80\x80"), "\"\\xf4\\x90\\x80\\x80\"");
	assert_string_equal(q("\xf5\x80\x80\x80"), "\"\\xf5\\x80\\x80\\x80\"");
	/* the largest valid ones stay */
	assert_string_equal(q("\xf4\x8f\xbf\xbf"), "\xf4\x8f\xbf\xbf");
	assert_string_equal(q("\xed\x9f\xbf"), "\xed\x9f\xbf");
}

static void test_quote_255_byte_names(void **state)
{
	char name[256], out[LOG_QUOTE_SIZE(255)];

	(void)state;
	memset(name, 'u', 255);
	name[255] = '\0';
	assert_string_equal(log_quote_str(out, sizeof out, name), name);
	/* the worst case fits the documented size exactly */
	memset(name, '\x1b', 255);
	log_quote_str(out, sizeof out, name);
	assert_int_equal(strlen(out), 4 * 255 + 2);
	assert_int_equal(out[0], '"');
	assert_int_equal(out[strlen(out) - 1], '"');
	assert_null(strstr(out, "..."));
	assert_no_controls(out);
}

/* Cut at every buffer size: always NUL-terminated inside the buffer, quoted,
 * ending in `..."`, the kept part a prefix of the full rendering ending on a
 * whole escape. */
static void check_cuts(const char *in, size_t n)
{
	char full[LOG_QUOTE_SIZE(64)], out[LOG_QUOTE_SIZE(64) + 8];
	size_t flen;

	log_quote(full, sizeof full, in, n);
	flen = strlen(full);
	for (size_t len = 0; len <= flen + 2; len++) {
		memset(out, 'Z', sizeof out);
		log_quote(out, len, in, n);
		if (len == 0) {
			assert_int_equal(out[0], 'Z');
			continue;
		}
		assert_true(memchr(out, '\0', len) != NULL);
		if (len < 8) {
			assert_string_equal(out, "");
			continue;
		}
		if (len > flen) {
			assert_string_equal(out, full);
			continue;
		}
		size_t olen = strlen(out);
		assert_true(olen < len);
		assert_true(olen >= 5);
		assert_int_equal(out[0], '"');
		assert_memory_equal(out + olen - 4, "...\"", 4);
		/* the kept text is a prefix of the full rendering (minus its quote) */
		size_t kept = olen - 5;
		const char *body = full[0] == '"' ? full + 1 : full;
		assert_memory_equal(out + 1, body, kept);
		/* and does not end inside an escape: the next full char starts there */
		assert_true(body[kept] == '\\' || body[kept] == '"' ||
			    ((unsigned char)body[kept] & 0xc0) != 0x80);
		if (kept >= 1 && out[kept] == '\\') {
			/* a lone backslash at the end would be half an escape */
			size_t bs = 0;
			for (size_t i = kept; i >= 1 && out[i] == '\\'; i--)
				bs++;
			assert_int_equal(bs % 2, 0);
		}
		assert_no_controls(out);
	}
}

static void test_quote_truncation_safety(void **state)
{
	(void)state;
	check_cuts("plain-and-rather-long-user-name", 31);
	check_cuts("zz\nWARN source: x=y", 19);
	check_cuts("\x1b\x1b\x1b\x1b\x1b\x1b", 6);
	check_cuts("\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80", 12);
	check_cuts("\\\\\\\\\\\\\\\\", 8);
	check_cuts("\xff\xfe\xc0\xaf\xe2\x82", 6);
}

static void test_log_q_macro(void **state)
{
	char out[LOG_QUOTE_SIZE(300)];
	const char *name = "a b\n";

	(void)state;
	/* each use has its own buffer, valid for the whole call */
	snprintf(out, sizeof out, "user=%s dest=%s none=%s", LOG_Q(name, 255),
		 LOG_Q("x.org:25", 261), LOG_Q(NULL, 8));
	assert_string_equal(out, "user=\"a b\\n\" dest=x.org:25 none=-");
	/* sized for `max` bytes: a longer value is cut, never overflows */
	snprintf(out, sizeof out, "%s", LOG_Q("0123456789abcdefghij", 4));
	assert_string_equal(out, "\"0123456789abc...\"");
}

/* Undo log_quote(): strip the quotes, resolve the escapes. @return length. */
static size_t unquote(const char *q, char *out)
{
	size_t n = strlen(q), o = 0;
	const char *p = q, *end = q + n;

	if (n >= 2 && q[0] == '"' && q[n - 1] == '"') {
		p++;
		end--;
	}
	while (p < end) {
		if (*p != '\\') {
			out[o++] = *p++;
			continue;
		}
		p++;
		switch (*p) {
		case 'n':
			out[o++] = '\n';
			break;
		case 'r':
			out[o++] = '\r';
			break;
		case 't':
			out[o++] = '\t';
			break;
		case '\\':
		case '"':
			out[o++] = *p;
			break;
		case 'x': {
			char hexd[3] = {p[1], p[2], 0};
			out[o++] = (char)strtol(hexd, NULL, 16);
			p += 2;
			break;
		}
		default:
			fail_msg("unknown escape \\%c in %s", *p, q);
		}
		p++;
	}
	return o;
}

/* Strictly well-formed UTF-8 (what the output must be, whatever the input). */
static bool utf8_valid(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		size_t len;
		unsigned cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			len = 2, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			len = 3, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			len = 4, cp = c & 0x07;
		else
			return false;
		if (i + len > n)
			return false;
		for (size_t j = 1; j < len; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + j] & 0x3f);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

/* Random NUL-free binary, invalid UTF-8 and all: the output is one token
 * with no control byte, well-formed UTF-8, and it unescapes to the input. */
static void test_quote_random_binary_round_trips(void **state)
{
	char in[300], back[300], out[LOG_QUOTE_SIZE(300)];
	unsigned seed = 12345;

	(void)state;
	for (int round = 0; round < 5000; round++) {
		size_t n = (size_t)(rand_r(&seed) % 300);
		for (size_t i = 0; i < n; i++) {
			/* favour the interesting bytes: controls, quotes, high bytes */
			int r = rand_r(&seed) % 4;
			in[i] = (char)(r == 0	? 1 + rand_r(&seed) % 0x20
				       : r == 1 ? "\"\\= -"[rand_r(&seed) % 5]
						: 1 + rand_r(&seed) % 255);
		}
		log_quote(out, sizeof out, in, n);
		assert_no_controls(out);
		assert_true(utf8_valid((const unsigned char *)out, strlen(out)));
		assert_int_equal(unquote(out, back), n);
		assert_memory_equal(back, in, n);
		/* one token: blanks, quotes and `=` only inside quotes */
		if (strpbrk(out, " =\"") && n)
			assert_true(out[0] == '"' && out[strlen(out) - 1] == '"');
	}
}

/* ---- log_sanitize ---- */

static void test_sanitize_replaces_controls_only(void **state)
{
	char out[256];
	size_t n;

	(void)state;
	n = log_sanitize(out, sizeof out, "a=1 b=\"x y\" \\ ok", 16);
	assert_string_equal(out, "a=1 b=\"x y\" \\ ok");
	assert_int_equal(n, 16);
	log_sanitize(out, sizeof out, "zz\nWARN x: y\r\x1b[0m\x7f", 18);
	assert_string_equal(out, "zz\\x0aWARN x: y\\x0d\\x1b[0m\\x7f");
	log_sanitize(out, sizeof out, "b\xc3\xa9 \xff \xc0\x8a", 8);
	assert_string_equal(out, "b\xc3\xa9 \\xff \\xc0\\x8a");
	log_sanitize(out, sizeof out, "a\0b", 3);
	assert_string_equal(out, "a\\x00b");
}

static void test_sanitize_cuts_with_dots(void **state)
{
	char in[300], out[64];
	size_t n;

	(void)state;
	memset(in, '\n', sizeof in);
	for (size_t len = 8; len < sizeof out; len++) {
		n = log_sanitize(out, len, in, sizeof in);
		assert_true(n < len);
		assert_int_equal(strlen(out), n);
		assert_memory_equal(out + n - 3, "...", 3);
		assert_no_controls(out);
		/* whole escapes only */
		assert_int_equal((n - 3) % 4, 0);
	}
	/* exactly fitting text is not cut */
	n = log_sanitize(out, 8, "1234567", 7);
	assert_string_equal(out, "1234567");
	n = log_sanitize(out, 8, "12345678", 8);
	assert_string_equal(out, "1234...");
	assert_int_equal(log_sanitize(out, 4, "x", 1), 0);
}

/* ---- rate limiter ---- */

static void test_limit_first_logged_rest_counted(void **state)
{
	struct log_limit l;
	uint64_t f = 99;

	(void)state;
	log_limit_init(&l, 10000);
	assert_int_equal(log_limit_due(&l), UINT64_MAX);
	assert_true(log_limit_hit(&l, 1000, &f));
	assert_int_equal(f, 0);
	for (int i = 0; i < 999; i++)
		assert_false(log_limit_hit(&l, 1000 + (uint64_t)i, &f));
	assert_int_equal(log_limit_due(&l), 11000);
	/* not yet at the end of the interval */
	assert_int_equal(log_limit_flush(&l, 10999), 0);
	assert_int_equal(log_limit_flush(&l, 11000), 999);
	/* the report opened the next interval: quiet, nothing due */
	assert_int_equal(log_limit_due(&l), UINT64_MAX);
	assert_false(log_limit_hit(&l, 15000, &f));
	assert_int_equal(f, 0);
	assert_int_equal(log_limit_flush(&l, 21000), 1);
	/* an interval with nothing to report ends the episode */
	assert_int_equal(log_limit_flush(&l, 31000), 0);
	assert_true(log_limit_hit(&l, 31001, &f));
}

static void test_limit_flood_gives_one_line_per_interval(void **state)
{
	struct log_limit l;
	uint64_t f, lines = 0, total = 0;

	(void)state;
	log_limit_init(&l, 10000);
	/* 100 events a second for 60 s, the timer flushing when due */
	for (uint64_t t = 0; t < 60000; t += 10) {
		if (log_limit_due(&l) <= t) {
			uint64_t n = log_limit_flush(&l, t);
			assert_true(n > 0);
			lines++;
			total += n;
		}
		if (log_limit_hit(&l, t, &f))
			lines++, total++;
		assert_int_equal(f, 0);
	}
	total += log_limit_flush(&l, 70000);
	lines++;
	assert_int_equal(total, 6000);
	assert_in_range(lines, 6, 8);
}

static void test_limit_without_timer_reports_on_next_event(void **state)
{
	struct log_limit l;
	uint64_t f;

	(void)state;
	log_limit_init(&l, 1000);
	assert_true(log_limit_hit(&l, 0, &f));
	assert_false(log_limit_hit(&l, 500, &f));
	assert_false(log_limit_hit(&l, 600, &f));
	/* late: the report of 2 is due first and this one starts the next count */
	assert_false(log_limit_hit(&l, 5000, &f));
	assert_int_equal(f, 2);
	assert_int_equal(log_limit_due(&l), 6000);
	assert_int_equal(log_limit_flush(&l, 6000), 1);
	/* a quiet interval then: the episode is over */
	assert_int_equal(log_limit_flush(&l, 7000), 0);
	assert_true(log_limit_hit(&l, 8000, NULL));
	/* the interval edge: now == end is past it */
	assert_false(log_limit_hit(&l, 8999, NULL));
	assert_int_equal(log_limit_flush(&l, 9000), 1);
}

static void test_limit_zero_interval_is_one_ms(void **state)
{
	struct log_limit l;

	(void)state;
	log_limit_init(&l, 0);
	assert_true(log_limit_hit(&l, 5, NULL));
	assert_false(log_limit_hit(&l, 5, NULL));
	assert_int_equal(log_limit_flush(&l, 6), 1);
}

/* ---- timestamps ---- */

static void test_timestamp_rfc3339_ms_and_offset(void **state)
{
	char buf[64];

	(void)state;
	setenv("TZ", "UTC0", 1);
	tzset();
	assert_int_equal(log_timestamp(buf, sizeof buf, 1234), 29);
	assert_string_equal(buf, "1970-01-01T00:00:01.234+00:00");
	assert_int_equal(log_timestamp(buf, sizeof buf, 1796114430005LL), 29);
	assert_string_equal(buf, "2026-12-01T08:40:30.005+00:00");
	/* POSIX TZ: "IST-5:30" is 5h30 east of UTC */
	setenv("TZ", "IST-5:30", 1);
	tzset();
	log_timestamp(buf, sizeof buf, 0);
	assert_string_equal(buf, "1970-01-01T05:30:00.000+05:30");
	setenv("TZ", "NST3:30", 1);
	tzset();
	log_timestamp(buf, sizeof buf, 999);
	assert_string_equal(buf, "1969-12-31T20:30:00.999-03:30");
	assert_int_equal(log_timestamp(buf, 29, 0), 0);
	setenv("TZ", "UTC0", 1);
	tzset();
}

static void test_stderr_is_journal(void **state)
{
	struct stat st;
	char env[64];

	(void)state;
	assert_int_equal(fstat(STDERR_FILENO, &st), 0);
	unsetenv("JOURNAL_STREAM");
	assert_false(log_stderr_is_journal());
	snprintf(env, sizeof env, "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", env, 1);
	assert_true(log_stderr_is_journal());
	snprintf(env, sizeof env, "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino + 1);
	setenv("JOURNAL_STREAM", env, 1);
	assert_false(log_stderr_is_journal());
	setenv("JOURNAL_STREAM", "garbage", 1);
	assert_false(log_stderr_is_journal());
	snprintf(env, sizeof env, "%llu:%llux", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", env, 1);
	assert_false(log_stderr_is_journal());
	unsetenv("JOURNAL_STREAM");
}

/* ---- journald ---- */

static void test_journal_fields_from_key_values(void **state)
{
	struct log_field f[8];
	size_t n;

	(void)state;
	n = log_journal_fields("pool main exhausted until never pool=main client=127.0.0.1:5 "
			       "dest=\"a b:25\" user=\"x \\\" source=y\" source=ip-1 id=7",
			       f, 8);
	assert_int_equal(n, 6);
	assert_string_equal(f[0].name, "POOL");
	assert_int_equal(f[0].len, 4);
	assert_memory_equal(f[0].value, "main", 4);
	assert_string_equal(f[1].name, "CLIENT");
	assert_memory_equal(f[1].value, "127.0.0.1:5", f[1].len);
	assert_string_equal(f[2].name, "DEST");
	assert_int_equal(f[2].len, 6);
	assert_memory_equal(f[2].value, "a b:25", 6);
	/* an escaped quote does not end the value; the key inside is no key */
	assert_string_equal(f[3].name, "USER");
	assert_int_equal(f[3].len, 13);
	assert_string_equal(f[4].name, "SOURCE");
	assert_memory_equal(f[4].value, "ip-1", 4);
	assert_string_equal(f[5].name, "SESSION_ID");
	assert_int_equal(log_journal_fields("client=a client=b", f, 8), 1);
	assert_int_equal(log_journal_fields("no pairs here", f, 8), 0);
	assert_int_equal(log_journal_fields("client=a source=b", f, 1), 1);
	assert_int_equal(log_journal_fields("user=\"unterminated", f, 8), 1);
	assert_int_equal(log_journal_fields("", f, 8), 0);
}

static void test_journal_native_protocol(void **state)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct log_field f[2] = {{"CLIENT", "127.0.0.1:9", 11}, {"POOL", "main", 4}};
	char buf[4096];
	ssize_t n;
	int fd;

	(void)state;
	snprintf(sa.sun_path, sizeof sa.sun_path, "/tmp/sockpool-test-journal-%d", (int)getpid());
	unlink(sa.sun_path);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(
	    logsink__journal_native(sa.sun_path, 4, "pool", "WARN pool: pool main exhausted", f, 2),
	    0);
	n = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_string_equal(buf, "MESSAGE=WARN pool: pool main exhausted\n"
				 "PRIORITY=4\n"
				 "SYSLOG_IDENTIFIER=sockpool\n"
				 "SOCKPOOL_COMPONENT=pool\n"
				 "CLIENT=127.0.0.1:9\n"
				 "POOL=main\n");
	close(fd);
	unlink(sa.sun_path);
	/* nobody listening: an error the caller falls back on */
	assert_true(logsink__journal_native(sa.sun_path, 6, "x", "INFO x: y", NULL, 0) < 0);
}

/* ---- whole lines ---- */

/* Run fn with stderr going to a file; return what was written. */
static char *capture(void (*fn)(void))
{
	char path[] = "/tmp/sockpool-test-log-XXXXXX";
	int fd = mkstemp(path), saved = dup(STDERR_FILENO);
	static char out[16384];
	ssize_t n;

	assert_true(fd >= 0 && saved >= 0);
	unlink(path);
	dup2(fd, STDERR_FILENO);
	fn();
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = pread(fd, out, sizeof out - 1, 0);
	close(fd);
	assert_true(n >= 0);
	out[n] = '\0';
	return out;
}

static struct conf_server server_conf(void)
{
	struct conf_server sv;

	memset(&sv, 0, sizeof sv);
	sv.log_level = CONF_LOG_DEBUG;
	sv.log_target = CONF_LOG_TARGET_STDERR;
	sv.log_timestamps = false;
	sv.log_timestamps_set = true;
	return sv;
}

static void configure(const struct conf_server *sv)
{
	char err[CONF_ERR_MAX];

	assert_int_equal(log_configure(sv, err, sizeof err), 0);
}

static void log_hostile(void)
{
	char u[LOG_QUOTE_SIZE(64)];
	const char *name = "zz\nWARN source: source suspended source=default";

	log_warn("session", "user=%s authentication failed", log_quote_str(u, sizeof u, name));
	/* even unquoted, log_msg never lets a newline through */
	log_info("session", "raw=%s end", name);
	log_debug("session", "esc=%s", "\x1b[2J\r");
}

static void test_log_msg_one_line_each(void **state)
{
	struct conf_server sv = server_conf();
	char *out;

	(void)state;
	configure(&sv);
	out = capture(log_hostile);
	assert_string_equal(
	    out, "WARN session: user=\"zz\\nWARN source: source suspended "
		 "source=default\" authentication failed\n"
		 "INFO session: raw=zz\\x0aWARN source: source suspended source=default end\n"
		 "DEBUG session: esc=\\x1b[2J\\x0d\n");
}

static void log_one(void)
{
	log_warn("server", "hello x=%d", 1);
}

static void log_long(void)
{
	static char big[6000];

	memset(big, 'a', sizeof big - 1);
	log_warn("server", "%s", big);
}

static void test_log_msg_timestamps_and_level(void **state)
{
	struct conf_server sv = server_conf();
	char *out;

	(void)state;
	sv.log_timestamps = true;
	configure(&sv);
	out = capture(log_one);
	/* 2026-12-01T08:50:30.123+00:00 WARN server: hello x=1 */
	assert_int_equal(strlen(out), 29 + 1 + 23);
	assert_true(out[4] == '-' && out[10] == 'T' && out[19] == '.' && out[29] == ' ');
	assert_true(out[23] == '+' || out[23] == '-');
	assert_string_equal(out + 30, "WARN server: hello x=1\n");

	/* not set: on, unless stderr is the journal */
	sv.log_timestamps_set = false;
	unsetenv("JOURNAL_STREAM");
	configure(&sv);
	out = capture(log_one);
	assert_string_equal(out + 30, "WARN server: hello x=1\n");

	sv.log_timestamps_set = true;
	sv.log_timestamps = false;
	sv.log_level = CONF_LOG_ERROR;
	configure(&sv);
	assert_false(log_enabled(LOG_WARN));
	assert_string_equal(capture(log_one), "");
	sv.log_level = CONF_LOG_WARN;
	configure(&sv);
	assert_string_equal(capture(log_one), "WARN server: hello x=1\n");

	out = capture(log_long);
	assert_int_equal(out[strlen(out) - 1], '\n');
	assert_memory_equal(out + strlen(out) - 4, "...", 3);
	assert_null(memchr(out, '\n', strlen(out) - 1));
	assert_true(strlen(out) <= 4096 + 64);
}

static const char *access_dir;

static void log_access_two(void)
{
	log_access("id=%d client=127.0.0.1:1 user=%s", 1, "\"a\\nb\"");
}

static char *slurp(const char *path)
{
	static char buf[4096];
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return NULL;
	n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void test_access_log_file_and_reopen(void **state)
{
	struct conf_server sv = server_conf();
	char dir[] = "/tmp/sockpool-test-access-XXXXXX", path[128], moved[160], err[CONF_ERR_MAX];
	char *text;

	(void)state;
	assert_non_null(mkdtemp(dir));
	access_dir = dir;
	snprintf(path, sizeof path, "%s/access.log", dir);
	snprintf(moved, sizeof moved, "%s/access.log.1", dir);

	/* off: nothing anywhere */
	configure(&sv);
	assert_false(log_access_enabled());
	assert_string_equal(capture(log_access_two), "");

	/* on: with the log, whatever the level */
	sv.access_log = true;
	sv.log_level = CONF_LOG_ERROR;
	configure(&sv);
	assert_true(log_access_enabled());
	assert_string_equal(capture(log_access_two),
			    "INFO access: id=1 client=127.0.0.1:1 user=\"a\\nb\"\n");

	/* FILE: appended there, with a timestamp, nothing on stderr */
	sv.access_log_file = path;
	configure(&sv);
	assert_string_equal(capture(log_access_two), "");
	text = slurp(path);
	assert_non_null(text);
	assert_true(strlen(text) > 30);
	assert_string_equal(text + 30, "INFO access: id=1 client=127.0.0.1:1 user=\"a\\nb\"\n");

	/* logrotate moves it away; reopen makes a new one */
	assert_int_equal(rename(path, moved), 0);
	log_access_two();
	assert_int_equal(log_reopen(), 0);
	log_access_two();
	assert_int_equal(strlen(slurp(moved)), 2 * (30 + 49));
	assert_int_equal(strlen(slurp(path)), 30 + 49);

	/* a file that cannot be opened is refused and changes nothing */
	sv.access_log_file = "/nonexistent-dir/x.log";
	sv.log_level = CONF_LOG_DEBUG;
	assert_int_equal(log_configure(&sv, err, sizeof err), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent-dir/x.log"));
	assert_false(log_enabled(LOG_DEBUG));
	log_access_two();
	assert_int_equal(strlen(slurp(path)), 2 * (30 + 49));

	/* the reopen of a file that cannot be created keeps the old one */
	assert_int_equal(unlink(path), 0);
	assert_int_equal(chmod(dir, 0500), 0);
	if (geteuid() != 0) {
		assert_true(log_reopen() < 0);
	}
	assert_int_equal(chmod(dir, 0700), 0);

	sv = server_conf();
	configure(&sv);
	assert_false(log_access_enabled());
	unlink(path);
	unlink(moved);
	assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_quote_plain_values_stay_bare),
	    cmocka_unit_test(test_quote_empty_dash_and_null),
	    cmocka_unit_test(test_quote_blanks_quotes_and_equals),
	    cmocka_unit_test(test_quote_forged_line),
	    cmocka_unit_test(test_quote_control_bytes_del_and_esc),
	    cmocka_unit_test(test_quote_invalid_utf8),
	    cmocka_unit_test(test_quote_255_byte_names),
	    cmocka_unit_test(test_quote_truncation_safety),
	    cmocka_unit_test(test_log_q_macro),
	    cmocka_unit_test(test_quote_random_binary_round_trips),
	    cmocka_unit_test(test_sanitize_replaces_controls_only),
	    cmocka_unit_test(test_sanitize_cuts_with_dots),
	    cmocka_unit_test(test_limit_first_logged_rest_counted),
	    cmocka_unit_test(test_limit_flood_gives_one_line_per_interval),
	    cmocka_unit_test(test_limit_without_timer_reports_on_next_event),
	    cmocka_unit_test(test_limit_zero_interval_is_one_ms),
	    cmocka_unit_test(test_timestamp_rfc3339_ms_and_offset),
	    cmocka_unit_test(test_stderr_is_journal),
	    cmocka_unit_test(test_journal_fields_from_key_values),
	    cmocka_unit_test(test_journal_native_protocol),
	    cmocka_unit_test(test_log_msg_one_line_each),
	    cmocka_unit_test(test_log_msg_timestamps_and_level),
	    cmocka_unit_test(test_access_log_file_and_reopen),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
